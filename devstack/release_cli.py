"""`xiaodian terminal sign-release | verify-release`: the terminal's own signed release file.

sign-release    wrap a release directory's tarball (packaging/terminal/build.sh makes it)
                into xiaodian-agent_V_amd64.xdrel with the agent-signing key
verify-release  judge such a file as a terminal would (signature, hash, platform, version)

The file's layout and why: xiaodian/agent_release.py. The private key stays on the release
machine (`xiaodian pki agent-key`); terminals pin the public half (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from devstack.cli_guard import guarded
from xiaodian import agent_release, pki

ARCH = "amd64"  # Debian's name, as the .deb's; the terminal compares its own the same way
PYTHON = "3.11"  # Debian 12's python3, the interpreter every release's venv links to


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("terminal", help="the store terminal's signed release files")
    cmds = p.add_subparsers(dest="terminal_command", required=True, metavar="SUBCOMMAND")

    s = cmds.add_parser("sign-release", help="sign a release directory's tar.xz into an "
                        ".xdrel file (packaging/terminal/build.sh --release-file runs it)")
    s.add_argument("--key", type=Path, required=True, help="agent-signing.key")
    s.add_argument("--version", required=True, help="MAJOR.MINOR.PATCH")
    s.add_argument("--payload", type=Path, required=True, help="tar.xz of the release dir")
    s.add_argument("--schema", type=int, required=True,
                   help="edge.store_schema.SCHEMA_VERSION of the release's own source")
    s.add_argument("--arch", default=ARCH)
    s.add_argument("--python", default=PYTHON)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_guarded(_sign))

    v = cmds.add_parser("verify-release", help="judge a release file as a terminal would")
    v.add_argument("file", type=Path)
    v.add_argument("--pub", type=Path, action="append", required=True, help="trusted key")
    v.add_argument("--running", default="0.0.0", help="the terminal's version")
    v.set_defaults(func=_guarded(_verify))


def _guarded(handler: Any) -> Any:
    return guarded(handler, agent_release.ReleaseRefused)


def _sign(args: argparse.Namespace) -> int:
    agent_release.version_key(args.version)  # refused before any file is written
    key = pki.load_command_private_key(args.key)  # any Ed25519 private key file
    tmp = args.out.with_name(args.out.name + ".tmp")
    with args.payload.open("rb") as payload, tmp.open("wb") as out:
        m = agent_release.write(out, payload, args.version, arch=args.arch,
                                python=args.python, schema=args.schema, key=key)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(args.out)  # never a half-written file under the final name
    print(f"{args.out} version {m.version} schema {m.schema} payload {m.payload_size} bytes "
          f"sha256 {m.payload_sha256}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    release = agent_release.verify_file(args.file, agent_release.load_public_keys(args.pub))
    agent_release.judge(release.manifest, running=args.running, arch=ARCH, python=PYTHON)
    m = release.manifest
    print(f"ok: version {m.version} {m.arch}/python{m.python} schema {m.schema}, "
          f"signed by {release.key_id}")
    return 0

#!/usr/bin/env bash
# Builds the store terminal's package: dist/xiaodian-terminal_VERSION_amd64.deb.
#
#   packaging/terminal/build.sh [--version V] [--out DIR] [--release-file KEY]
#
# --release-file KEY  also writes DIR/xiaodian-agent_V_amd64.xdrel: the same release
#                     directory (venv/, VERSION) as a tar.xz, signed with the agent-signing
#                     KEY (`xiaodian pki agent-key`) for the self-update (docs/deploy.md).
# --overlay DIR       TESTS ONLY: copies DIR's files over the staged site-packages, so a test
#                     builds a release with a schema change or a broken agent from the same
#                     sources. Never for a shop's release.
#
# Needs dpkg-deb and a Python 3.11 with pip (the project's .venv); downloads the pinned
# wheels of requirements.txt once (into build/terminal-wheels, reused offline afterwards).
# The terminal installs it with no compiler and no internet: the wheels are inside.
# Layout and why: docs/deploy.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

version=""
out="$repo/dist"
release_key=""
overlay=""
while [ $# -gt 0 ]; do
    case "$1" in
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --release-file) release_key=$2; shift 2 ;;
        --overlay) overlay=$2; shift 2 ;;
        *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-$repo/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
if [ -z "$version" ]; then
    version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/xiaodian/__init__.py")
fi
# Debian versions and the release directory's name: digits, letters, . + ~ only.
case "$version" in
    *[!0-9A-Za-z.+~]*|"") echo "build.sh: bad version '$version'" >&2; exit 2 ;;
esac
arch=amd64
pyver=3.11  # Debian 12's python3; the wheels below are for it (cp311, glibc 2.36)

wheels="$repo/build/terminal-wheels"
mkdir -p "$wheels" "$out"
# Binary wheels only, for the terminal's Python whatever Python builds the package;
# downloaded once per requirements.txt, offline afterwards.
stamp="$wheels/.requirements.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
    --only-binary=:all: --python-version "$pyver" --implementation cp --abi cp311 \
    --platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
    -r "$here/requirements.txt" -d "$wheels"
echo "$want" >"$stamp"
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/xiaodian-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
rel="opt/xiaodian/releases/$version"
venv="$stage/$rel/venv"
site="$venv/lib/python$pyver/site-packages"
mkdir -p "$venv/bin" "$site"
# A virtual environment by hand (the same files `python3 -m venv` writes), so it is built
# at its final path whatever directory stages it: python is the system's, site-packages
# ours alone.
ln -s "/usr/bin/python$pyver" "$venv/bin/python"
ln -s python "$venv/bin/python3"
cat >"$venv/pyvenv.cfg" <<CFG
home = /usr/bin
include-system-site-packages = false
version = $pyver
CFG
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-index \
    --no-compile --find-links "$wheels" --only-binary=:all: --python-version "$pyver" \
    --implementation cp --abi cp311 --platform manylinux_2_36_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    --target "$site" -r "$here/requirements.txt"
rm -rf "$site/bin"  # console scripts of the dependencies: not used, wrong interpreter
# The terminal's packages only (not cloud_gateway, hw_sim, devstack), as in the checkout.
(cd "$repo" && git ls-files -co --exclude-standard -- xiaodian edge firmware_bridge |
    grep -v -E '(^|/)__pycache__/|\.pyc$' | while read -r f; do
        [ -f "$f" ] && printf '%s\0' "$f"
    done | tar --null -T - -cf -) | tar -xf - -C "$site"
echo "$version" >"$stage/$rel/VERSION"
if [ -n "$overlay" ]; then  # tests only (see the top)
    cp -r --no-preserve=ownership "$overlay/." "$site/"
fi
# The version the agent reports (its state message, the fleet page) is the package's.
sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$site/xiaodian/__init__.py"
# Byte-code compiled now: the release is read-only at run time (ProtectSystem=strict).
# Unchecked hashes: dpkg sets file times, and the paths in tracebacks are the final ones.
"$PYTHON" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
    -s "$stage" -p / "$site" >/dev/null

install -D -m 0644 "$here/systemd/xiaodian-agent.service" \
    "$stage/usr/lib/systemd/system/xiaodian-agent.service"
install -D -m 0644 "$here/systemd/xiaodian-agent-retry.timer" \
    "$stage/usr/lib/systemd/system/xiaodian-agent-retry.timer"
install -D -m 0644 "$here/systemd/xiaodian-kiosk.service" \
    "$stage/usr/lib/systemd/system/xiaodian-kiosk.service"
for unit in xiaodian-update.path xiaodian-update.service; do
    install -D -m 0644 "$here/systemd/$unit" "$stage/usr/lib/systemd/system/$unit"
done
install -D -m 0644 "$here/udev/60-xiaodian.rules" "$stage/usr/lib/udev/rules.d/60-xiaodian.rules"
install -D -m 0644 "$here/journald/xiaodian.conf" \
    "$stage/usr/lib/systemd/journald.conf.d/60-xiaodian.conf"
install -D -m 0640 "$here/edge.toml" "$stage/etc/xiaodian/edge.toml"
install -D -m 0644 "$repo/docs/deploy.md" "$stage/usr/share/doc/xiaodian-terminal/deploy.md"

mkdir -p "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/g" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" \
    "$here/debian/control.in" >"$stage/DEBIAN/control"
install -m 0644 "$here/debian/conffiles" "$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    sed -e "s/@VERSION@/$version/g" "$here/debian/$script" >"$stage/DEBIAN/$script"
    chmod 0755 "$stage/DEBIAN/$script"
done
chmod 0755 "$stage"
chmod -R u+rwX,go+rX,go-w "$stage/opt" "$stage/usr"
chmod 0755 "$stage/etc/xiaodian"

if [ -n "$release_key" ]; then
    # The self-update's file: the release directory alone (no units, no /etc), owned by
    # root in the archive, names sorted so the same sources make the same payload.
    # The schema it writes is its own source's (with any overlay), read before signing.
    schema=$(sed -n 's/^SCHEMA_VERSION = \([0-9][0-9]*\)$/\1/p' "$site/edge/store_schema.py")
    [ -n "$schema" ] || { echo "build.sh: no SCHEMA_VERSION in edge/store_schema.py" >&2; exit 1; }
    tar --sort=name --owner=0 --group=0 --numeric-owner -C "$stage/$rel" -cJf \
        "$stage/payload.tar.xz" venv VERSION
    PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m xiaodian terminal sign-release \
        --key "$release_key" --version "$version" --schema "$schema" \
        --payload "$stage/payload.tar.xz" --out "$out/xiaodian-agent_${version}_$arch.xdrel" \
        >/dev/null
    rm -f "$stage/payload.tar.xz"
fi

deb="$out/xiaodian-terminal_${version}_$arch.deb"
# xz for the shops (smallest download); the tests ask for gzip (several times faster).
dpkg-deb --root-owner-group "-Z${DEB_COMPRESS:-xz}" --build "$stage" "$deb" >/dev/null
echo "$deb"

"""The device's half of a firmware update: receive into fw/stage, verify, install, confirm.

Everything the host says arrives as FW_OFFER / FW_CHUNK / FW_COMMIT (fwmsg.py); `handle`
answers with the frames to send. Nothing the running firmware uses is touched until an
install: the image is appended to fw/stage/image.part (its length is the resume offset, so
a power cut or a pulled cable costs at most the chunks not yet written), then checked
(SHA-256 of the whole image, its manifest's hardware, version and body hash, and the XSG2
Ed25519 signature over the statement naming them, by a key in fwkeys.json: fwsig.py),
unpacked into the inactive slot, and only then does fwslots.write_pointer switch, in one
rename.

Chunks are taken only at the offset the device expects. An out-of-order chunk (ahead of
it: one before it was lost) is dropped and answered with FW_STATUS, which tells the host
where to go on from; a duplicate (behind it) and a chunk of another image (wrong tag) are
dropped silently.
"""

import binascii
import hashlib
import json
import os
import struct

import edverify
import fwmsg
import fwsig
import fwslots

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HARDWARE = "xd-fridge-1"  # this board; an image for anything else is refused
MAX_IMAGE = 256 * 1024  # what one slot may hold
STAGE = "stage"
PART = "image.part"
OFFER = "offer.json"
BLOCK = 1024  # bytes hashed or copied at a time (little RAM)
# the files of the loader itself: never in an image, never replaced over the link
# (and the trusted keys: written at manufacture, never by an update)
LOADER_FILES = ("fwboot.py", "fwslots.py", "fwboot.mpy", "fwslots.mpy", fwsig.KEYS_FILE)
SIG_V1_SIZE = 76  # the XSIG trailer (the terminal's whole-image signature), before XSG2


def _hex(b: bytes) -> str:
    return binascii.hexlify(b).decode()


class Stager:
    def __init__(self, root: str, running: "tuple[int, int, int]", trial: bool) -> None:
        self.root = root
        self.running = tuple(running)
        self.trial = trial  # this boot runs a new image that is not confirmed yet
        self.healthy = False  # set by the controller when the trial passed its self-check
        self.dir = fwslots.fw_dir(root) + "/" + STAGE
        self.offer: dict[str, Any] | None = None
        self.next_offset = 0
        self.installed = False  # an install switched the pointer: restart now
        pointer = fwslots.read_pointer(root)
        self.rolled_back = str(pointer.get("rolled_back_sha256", "")) if pointer.get(
            "rolled_back") else ""
        if trial or self.rolled_back:
            # The staged image is the one running now, or the one that just failed: keep
            # neither, or a late install (a retry the host sent before it heard "installed")
            # would install it once more.
            self._drop()
        else:
            self._resume()

    # -- state ------------------------------------------------------------------------------

    def _resume(self) -> None:
        try:
            with open(self.dir + "/" + OFFER) as f:
                offer = json.load(f)
            size = os.stat(self.dir + "/" + PART)[6]
        except (OSError, ValueError):
            return
        if isinstance(offer, dict) and size <= int(offer.get("size", -1)):
            self.offer = offer
            self.next_offset = size

    def _drop(self) -> None:
        self.offer = None
        self.next_offset = 0
        for name in (OFFER, PART):
            try:  # noqa: SIM105 - MicroPython has no contextlib
                os.remove(self.dir + "/" + name)
            except OSError:
                pass

    def _sha(self) -> bytes:
        if self.offer is None:
            return bytes(32)
        return binascii.unhexlify(self.offer["sha256"])

    def state(self) -> int:
        if self.trial:
            return fwmsg.STATE_HEALTHY if self.healthy else fwmsg.STATE_TRIAL
        if self.offer is None:
            return fwmsg.STATE_IDLE
        if self.next_offset >= int(self.offer["size"]):
            return fwmsg.STATE_COMPLETE
        return fwmsg.STATE_RECEIVING

    def status(self, now_ms: int) -> "tuple[int, bytes]":
        size = int(self.offer["size"]) if self.offer is not None else 0
        return fwmsg.FW_STATUS, fwmsg.pack_status(
            now_ms, self.state(), self._sha(), self.next_offset, size)

    def _result(self, now_ms: int, sha: bytes, code: int) -> "tuple[int, bytes]":
        return fwmsg.FW_RESULT, fwmsg.pack_result(now_ms, sha, code)

    # -- frames -----------------------------------------------------------------------------

    def handle(self, now_ms: int, msg_type: int, payload: bytes) -> "list[tuple[int, bytes]]":
        msg = fwmsg.decode(msg_type, payload)
        if msg is None:
            return [self._result(now_ms, bytes(32), fwmsg.RESULT_BAD_MANIFEST)]
        if msg_type == fwmsg.FW_CHUNK:
            return self._chunk(now_ms, msg)
        if msg_type == fwmsg.FW_OFFER:
            return self._offer(now_ms, msg)
        action = msg["action"]
        if action == "install":
            return [self._install(now_ms, msg["sha256"])]
        if action == "confirm":
            return [self._confirm(now_ms, msg["sha256"])]
        if self.offer is not None and msg["sha256"] == self._sha():
            self._drop()
        return [self._result(now_ms, msg["sha256"], fwmsg.RESULT_ABORTED), self.status(now_ms)]

    def _offer(self, now_ms: int, msg: "dict[str, Any]") -> "list[tuple[int, bytes]]":
        sha = msg["sha256"]
        refusal = self._refuse(msg["hardware"], tuple(msg["version"]), msg["size"])
        if refusal is None and self.trial:
            refusal = fwmsg.RESULT_BUSY  # confirm or roll back the trial first
        if refusal is None and self.rolled_back and _hex(sha) == self.rolled_back:
            refusal = fwmsg.RESULT_ROLLED_BACK  # that one failed here: send another
        if refusal is not None:
            return [self._result(now_ms, sha, refusal)]
        if self.offer is None or self._sha() != sha:
            self._drop()  # another image was staged: start over (offer.json goes first)
            fwslots.ensure_dir(fwslots.fw_dir(self.root))
            fwslots.ensure_dir(self.dir)
            with open(self.dir + "/" + PART, "wb"):
                pass
            offer = {"sha256": _hex(sha), "size": msg["size"], "version": msg["version"],
                     "hardware": msg["hardware"]}
            with open(self.dir + "/" + OFFER + ".tmp", "w") as f:
                json.dump(offer, f)
            os.rename(self.dir + "/" + OFFER + ".tmp", self.dir + "/" + OFFER)
            self.offer = offer
            self.next_offset = 0
            self.rolled_back = ""
        return [self._result(now_ms, sha, fwmsg.RESULT_ACCEPTED), self.status(now_ms)]

    def _refuse(self, hardware: str, version: "tuple[Any, ...]", size: int) -> "int | None":
        if hardware != HARDWARE:
            return fwmsg.RESULT_WRONG_HARDWARE
        if size > MAX_IMAGE:
            return fwmsg.RESULT_TOO_LARGE
        if version <= self.running:
            return fwmsg.RESULT_DOWNGRADE
        return None

    def _chunk(self, now_ms: int, msg: "dict[str, Any]") -> "list[tuple[int, bytes]]":
        if self.offer is None or msg["tag"] != fwmsg.tag_of(self._sha()):
            return []
        data = msg["data"]
        size = int(self.offer["size"])
        if msg["offset"] < self.next_offset:
            # Written already and answered then. Silent, so the host's go-back-N does not
            # take the echoes of its own resend for a new loss.
            return []
        if msg["offset"] == self.next_offset and self.next_offset + len(data) <= size:
            with open(self.dir + "/" + PART, "ab") as f:
                f.write(data)
            self.next_offset += len(data)
        return [self.status(now_ms)]

    def _install(self, now_ms: int, sha: bytes) -> "tuple[int, bytes]":
        if self.trial:
            return self._result(now_ms, sha, fwmsg.RESULT_BUSY)
        if self.offer is None or self._sha() != sha:
            return self._result(now_ms, sha, fwmsg.RESULT_UNKNOWN_IMAGE)
        if self.next_offset < int(self.offer["size"]):
            return self._result(now_ms, sha, fwmsg.RESULT_INCOMPLETE)
        try:
            code = self._verify_and_unpack(sha)
        except OSError:
            code = fwmsg.RESULT_IO_ERROR
        self._drop()  # installed: it is in the slot; bad: the host offers it again from 0
        if code != fwmsg.RESULT_INSTALLED:
            return self._result(now_ms, sha, code)
        self.installed = True
        return self._result(now_ms, sha, code)

    def _verify_and_unpack(self, sha: bytes) -> int:
        path = self.dir + "/" + PART
        if _file_sha(path, 0, -1) != sha:
            return fwmsg.RESULT_BAD_HASH
        with open(path, "rb") as f:
            head = f.read(7)
            if len(head) < 7 or head[:4] != b"XDFW" or head[4] != 1:
                return fwmsg.RESULT_BAD_MANIFEST
            mlen = struct.unpack_from("<H", head, 5)[0]
            try:  # ValueError covers bad JSON, UTF-8 and hex in both interpreters
                manifest = json.loads(f.read(mlen))
                files = [(str(n), int(s)) for n, s in manifest["files"]]
                version = tuple(int(v) for v in manifest["version"])
                body_sha = binascii.unhexlify(str(manifest["sha256"]))
                hardware = str(manifest["hardware"])
            except (ValueError, KeyError, TypeError, IndexError):
                return fwmsg.RESULT_BAD_MANIFEST
        if any(s < 0 for _, s in files):
            return fwmsg.RESULT_BAD_MANIFEST
        offer = self.offer or {}
        if hardware != HARDWARE or hardware != offer.get("hardware"):
            return fwmsg.RESULT_WRONG_HARDWARE
        if version != tuple(offer.get("version", ())):
            return fwmsg.RESULT_BAD_MANIFEST  # not the version it was offered as
        if version <= self.running:
            return fwmsg.RESULT_DOWNGRADE
        for name, _ in files:
            if not _good_name(name) or name in LOADER_FILES:
                return fwmsg.RESULT_BAD_MANIFEST
        start = 7 + mlen
        body_size = sum(s for _, s in files)
        if _file_sha(path, start, body_size) != body_sha:
            return fwmsg.RESULT_BAD_HASH
        if not self._signed(path, start + body_size, version, hardware, body_size):
            return fwmsg.RESULT_DEVICE_BAD_SIGNATURE
        # Unpack into the slot nobody boots. A cut from here on leaves boot.json as it was.
        pointer = fwslots.read_pointer(self.root)
        target = fwslots.other(str(pointer.get("active", "")))
        slot = fwslots.slot_dir(self.root, target)
        fwslots.clear_dir(slot)
        at = start
        with open(path, "rb") as src:
            src.seek(at)
            for name, size in files:
                with open(slot + "/" + name, "wb") as out:
                    left = size
                    while left > 0:
                        block = src.read(min(BLOCK, left))
                        if not block:
                            return fwmsg.RESULT_BAD_MANIFEST
                        out.write(block)
                        left -= len(block)
        fwslots.write_pointer(self.root, {
            "active": str(pointer.get("active", "")), "trial": target, "tries": 0,
            "sha256": _hex(sha), "version": list(version),
        })
        return fwmsg.RESULT_INSTALLED

    def _signed(self, path: str, signed_len: int, version: "tuple[int, ...]", hardware: str,
                size: int) -> bool:
        """The XSG2 trailer ends the image and is a trusted key's signature of the statement
        built from what this device read: the hash of header, manifest and body, and the
        manifest's version, hardware and size."""
        if os.stat(path)[6] != signed_len + SIG_V1_SIZE + fwsig.TRAILER_SIZE:
            return False
        with open(path, "rb") as f:
            f.seek(signed_len + SIG_V1_SIZE)
            trailer = f.read(fwsig.TRAILER_SIZE)
        if trailer[:4] != fwsig.MAGIC:
            return False
        keys = [k for k in fwsig.read_keys(self.root) if fwsig.key_id(k) == trailer[4:12]]
        if not keys:
            return False  # no key file, or not signed by a key this board trusts
        try:
            said = fwsig.statement(_file_sha(path, 0, signed_len), version, hardware, size)
        except ValueError:
            return False
        return edverify.verify(keys[0], said, trailer[12:])

    def _confirm(self, now_ms: int, sha: bytes) -> "tuple[int, bytes]":
        if self.installed:
            return self._result(now_ms, sha, fwmsg.RESULT_BUSY)  # restarting on it now
        if not self.trial:
            failed = self.rolled_back and _hex(sha) == self.rolled_back
            return self._result(now_ms, sha, fwmsg.RESULT_ROLLED_BACK if failed
                                else fwmsg.RESULT_UNKNOWN_IMAGE)
        if not self.healthy:
            return self._result(now_ms, sha, fwmsg.RESULT_BUSY)  # not before the self-check
        running = str(fwslots.read_pointer(self.root).get("sha256", ""))
        if running and running != _hex(sha):
            return self._result(now_ms, sha, fwmsg.RESULT_UNKNOWN_IMAGE)
        fwslots.confirm(self.root)
        self.trial = False
        return self._result(now_ms, sha, fwmsg.RESULT_CONFIRMED)

    def boot_report(self, now_ms: int) -> "list[tuple[int, bytes]]":
        """What the host should hear after it attaches: a rollback, and the status."""
        out = []
        if self.rolled_back:
            sha = binascii.unhexlify(self.rolled_back)
            out.append(self._result(now_ms, sha, fwmsg.RESULT_ROLLED_BACK))
        if self.trial or self.offer is not None:
            out.append(self.status(now_ms))
        return out


NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-."


def _good_name(name: str) -> bool:
    """A plain file name: letters, digits, _ - . only, not starting with a dot, <= 64."""
    if not name or len(name) > 64 or name[0] == ".":
        return False
    return all(c in NAME_CHARS for c in name)


def _file_sha(path: str, start: int, length: int) -> bytes:
    """SHA-256 of `length` bytes of a file from `start` (-1: to the end), a block at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left != 0:
            block = f.read(BLOCK if left < 0 else min(BLOCK, left))
            if not block:
                break
            h.update(block)
            if left > 0:
                left -= len(block)
    return h.digest()

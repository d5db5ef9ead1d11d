# The device's update code (fwstage, fwslots) on its own, for tests, under micropython or
# CPython: micropython fw_device_driver.py MODE ROOT FIRMWARE_DIR BRIDGE_DIR [CUT_AT]
#   serve   frames on stdin -> Stager -> frames on stdout; exits 75 after an install
#   install install what fw/stage holds; with CUT_AT=k, stop dead before the k-th change
#           to the flash (print CUT, wait to be killed)
#   select  what the loader would boot: print {"slot", "trial", "files": {name: sha256}}
import sys

mode, root, fw_dir, bridge = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
sys.path[:0] = [fw_dir, bridge]

import binascii  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import codec  # noqa: E402
import fwmsg  # noqa: E402
import fwslots  # noqa: E402
import fwstage  # noqa: E402

RUNNING = (1, 0, 0)
out = sys.stdout.buffer


def cut_points(limit):
    # Every change to the flash goes through these; the k-th one never happens.
    count = [0]
    real_open, real_rename, real_remove, real_mkdir = open, os.rename, os.remove, os.mkdir

    def step():
        count[0] += 1
        if count[0] == limit:
            out.write(b"CUT\n")
            out.flush()
            sys.stdin.buffer.read(1)  # killed here

    def w_open(path, m="r", *a):
        if "w" in m or "a" in m:
            step()
        return real_open(path, m, *a)

    def w_rename(a, b):
        step()
        real_rename(a, b)

    def w_remove(p):
        step()
        real_remove(p)

    def w_mkdir(p):
        step()
        real_mkdir(p)

    fwstage.open = w_open
    fwslots.open = w_open
    fake = Os()
    fake.rename, fake.remove, fake.mkdir = w_rename, w_remove, w_mkdir
    fake.stat, fake.listdir = os.stat, os.listdir
    fwstage.os = fwslots.os = fake


class Os:
    pass


def serve():
    trial = fwslots.select(root)[1]
    st = fwstage.Stager(root, RUNNING, trial)
    dec = codec.FrameDecoder()
    seq = 0
    while True:
        b = sys.stdin.buffer.read(1)
        if not b:
            return
        for f in dec.feed(b):
            for t, p in st.handle(0, f.type, f.payload):
                out.write(codec.encode_frame(t, seq, p, codec.REPLY))
                seq += 1
            out.flush()
            if st.installed:
                sys.exit(75)


def show():
    slot, trial = fwslots.select(root)
    d = fwslots.slot_dir(root, slot)
    files = {}
    for n in fwslots.list_files(d):
        if n.endswith(".mpy"):
            with open(d + "/" + n, "rb") as f:
                files[n] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()
    print(json.dumps({"slot": slot, "trial": trial, "files": files}))


if mode == "serve":
    serve()
elif mode == "install":
    if len(sys.argv) > 5:
        cut_points(int(sys.argv[5]))
    st = fwstage.Stager(root, RUNNING, False)
    replies = st.handle(0, fwmsg.FW_COMMIT, fwmsg.pack_commit(
        binascii.unhexlify(st.offer["sha256"]), "install"))
    print(json.dumps({"result": fwmsg.decode(replies[0][0], replies[0][1])["result"]}))
else:
    show()

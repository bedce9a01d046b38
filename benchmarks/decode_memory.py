"""What several visitors' big uploads cost the server's memory at once: N 40-megapixel PNGs decoded
for the Classify page (``inference.decode_upload``) by N threads released together, with the
process's big-decode slot (``inference._turn``) and without it.

    python benchmarks/decode_memory.py [--visitors 2] [--repeats 2]

Each measurement runs in a fresh Python process (its peak, VmHWM, is the process's own), which
first reads the files, then reports how far the decodes raised its peak. The PNGs are
``server_memory.upload_files``' (a PNG decodes whole: 4 bytes a pixel in PIL). Prints one line per
run; writes nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from server_memory import BIG_FILES, upload_files

CHILD = r"""
import contextlib, sys, threading
from pathlib import Path
from cifar_app.store import inference
if sys.argv[2] == "without":
    inference._turn = lambda *ims: contextlib.nullcontext()
datas = [p.read_bytes() for p in sorted(Path(sys.argv[1]).glob("big-*.png"))][: int(sys.argv[3])]
def peak():
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024
before = peak()
start = threading.Barrier(len(datas))
def decode(data):
    start.wait()
    inference.decode_upload(data)
threads = [threading.Thread(target=decode, args=(d,)) for d in datas]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(f"{peak() - before:.0f}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=2, help=f"PNGs decoded at once (1 to {BIG_FILES})")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not 1 <= args.visitors <= BIG_FILES:
        raise SystemExit(f"error: --visitors must be 1 to {BIG_FILES}")
    with tempfile.TemporaryDirectory() as folder:
        upload_files(args.visitors, Path(folder))
        for _ in range(args.repeats):
            for slot in ("with", "without"):
                mb = subprocess.run([sys.executable, "-c", CHILD, folder, slot, str(args.visitors)],
                                    check=True, capture_output=True, text=True).stdout.strip()
                print(f"{args.visitors} PNGs of 40 MP decoded at once, {slot} the slot: peak +{mb} MiB",
                      flush=True)


if __name__ == "__main__":
    main()

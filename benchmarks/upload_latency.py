"""How long an upload takes to classify, as the Classify page does it, per step and per model.

    python benchmarks/upload_latency.py [--repeats 7]

Makes a 12-megapixel JPEG (4000x3000) and a 4000x4000 PNG with photo-like content (a colour field
upscaled, plus fine noise so neither compresses unrealistically well; both under the 20 MiB cap),
and a 32x32 PNG for scale. For each: the upload's bytes -> model input and preview
(``decode_upload``: ``upload_ms``), of which ``pixel_decode_ms`` is PIL decoding the file (at a
reduced scale for a JPEG) and ``after_decode_ms`` the rest (reduce, crop, resize, preview); then
one forward pass per shipped reference model (``model_ms``, the four normalizations). Medians of
``--repeats`` after one warm-up, one torch thread. Writes benchmarks/results/upload_latency.json.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_file import write_result

from cifar_app.store.inference import PREVIEW_MAX_SIDE, _open, classify, decode_upload, load_model
from cifar_app.store.runstore import RunStore

ROOT = Path(__file__).resolve().parent.parent


def photo_like(width: int, height: int, seed: int = 0, noise: int = 12) -> Image.Image:
    """A smooth picture with texture: random 8x6 colour field upscaled bicubic, plus pixel noise
    uniform in +-``noise`` grey levels."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC)
    grain = rng.integers(-noise, noise + 1, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(base, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 6}))
    return buf.getvalue()


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/upload_latency.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    store = RunStore(ROOT / "runs-none-here")  # only the shipped reference runs
    models = {s.norm: load_model(store.get(s.id)) for s in store.summaries() if s.reference}
    images = {"JPEG 4000x3000 (12 MP)": encode(photo_like(4000, 3000), "JPEG"),
              "PNG 4000x4000 (16 MP)": encode(photo_like(4000, 4000, 1, noise=2), "PNG"),
              "PNG 32x32": encode(photo_like(32, 32, 2), "PNG")}
    rows = []
    for name, data in images.items():
        image32, _ = decode_upload(data)
        total = median_ms(lambda d=data: decode_upload(d), args.repeats)
        decode = median_ms(lambda d=data: _open(d, work_side=PREVIEW_MAX_SIDE), args.repeats)
        row = {"image": name, "bytes": len(data), "upload_ms": total, "pixel_decode_ms": decode,
               "after_decode_ms": round(total - decode, 1),
               "model_ms": {norm: median_ms(lambda m=m, x=image32: classify([x], m), args.repeats)
                            for norm, m in sorted(models.items())}}
        row["after_decode_ms_per_model"] = {norm: round(row["after_decode_ms"] + ms, 1)
                                            for norm, ms in row["model_ms"].items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_result(args.out, {"torch_threads": 1, "repeats": args.repeats, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

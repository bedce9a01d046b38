import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cifar_app.store import inference
from cifar_app.store.inference import ImageError, classify, classify_each, decode_image, load_model


def png_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def odd_images() -> dict[str, bytes]:
    rgb = Image.new("RGB", (40, 30), (200, 10, 10))
    gif = io.BytesIO()
    frames = [Image.new("P", (16, 16), i) for i in (1, 2)]
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    sixteen = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    return {
        "rgba": png_bytes(Image.new("RGBA", (50, 50), (0, 0, 255, 128))),
        "grayscale": png_bytes(Image.new("L", (33, 33), 90)),
        "palette": png_bytes(Image.new("P", (20, 20), 3)),
        "sixteen-bit": png_bytes(sixteen),
        "cmyk": png_bytes(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG"),
        "exif-rotated": png_bytes(Image.new("RGB", (60, 20), (0, 200, 0)), "JPEG", exif=exif),
        "animated-gif": gif.getvalue(),
        "webp": png_bytes(rgb, "WEBP"),
        "bmp": png_bytes(rgb, "BMP"),
        "tiny": png_bytes(Image.new("RGB", (1, 1), (5, 5, 5))),
        "panorama": png_bytes(Image.new("RGB", (400, 50), (9, 9, 9))),
    }


@pytest.mark.parametrize("kind", list(odd_images()))
def test_every_odd_image_kind_becomes_32x32_rgb(kind):
    arr = decode_image(odd_images()[kind])
    assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8


def test_alpha_is_composited_over_white_and_exif_rotation_applied():
    clear = decode_image(png_bytes(Image.new("RGBA", (32, 32), (0, 0, 0, 0))))
    assert (clear == 255).all()
    exif = Image.Exif()
    exif[0x0112] = 6
    tall = Image.new("RGB", (64, 16), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 0, 32, 16))  # left half white
    rotated = decode_image(png_bytes(tall, "PNG", exif=exif))
    # after rotating 90 degrees clockwise the white half is on top; panorama => padded, not cropped
    assert rotated[10, 16].mean() > 200 and rotated[20, 16].mean() < 60


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size (the decoder must refuse before allocating)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("data,match", [
    (b"", "empty"),
    (b"hello, I am text", "not an image"),
    (png_bytes(Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))[:2000],
     "damaged or truncated"),
    (bomb_png(30000, 30000), "limit|too large"),
])
def test_bad_input_raises_the_clear_error(data, match):
    with pytest.raises(ImageError, match=match):
        decode_image(data)


def test_a_huge_file_is_refused_before_decoding(monkeypatch, tmp_path):
    monkeypatch.setattr(inference, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big.png"
    big.write_bytes(b"\0" * 5000)
    with pytest.raises(ImageError, match="limit"):
        decode_image(big)
    with pytest.raises(ImageError, match="limit"):
        decode_image(big.read_bytes())


def test_classify_returns_top_k_and_a_bad_image_only_fails_itself(trained_store):
    run = trained_store.list()[0]
    loaded = load_model(run)
    good = odd_images()["rgba"]
    [pred] = classify([good], loaded, top_k=3)
    assert len(pred.top_k) == 3 and pred.image32.shape == (32, 32, 3)
    probs = [p for _, p in pred.top_k]
    assert probs == sorted(probs, reverse=True) and abs(pred.probs.sum() - 1) < 1e-4
    results = classify_each([good, b"junk", good], run)
    assert isinstance(results[1], ImageError)
    assert results[0].top_k == results[2].top_k
    with pytest.raises(ImageError, match="image 2"):
        classify([good, b"junk"], loaded)


# ------------------------------------------------------------------ bounded work for any upload

EXTREME = {"40000x2": (40000, 2), "2x40000": (2, 40000), "30000x30": (30000, 30),
           "30x30000": (30, 30000), "6000x6000": (6000, 6000)}


def extreme_png(size: tuple[int, int]) -> bytes:
    im = Image.new("RGB", size, (20, 120, 220))
    return png_bytes(im)


PEAK_SCRIPT = """
import sys
from cifar_app.store.inference import decode_image, preview_image

def hwm_mb():  # peak resident memory of this process since exec (ru_maxrss would include the parent's)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) // 1024

data = open(sys.argv[1], "rb").read()
before = hwm_mb()
x = decode_image(data); p = preview_image(data)
print(hwm_mb() - before, x.shape, p.shape)
"""


@pytest.mark.parametrize("name", list(EXTREME))
def test_an_extreme_shape_costs_little_memory_to_decode_and_preview(tmp_path, name):
    """A 323-byte 40000x2 PNG used to be padded to 40000x40000 (4.8 GB). Decoding and the preview
    now raise the peak by little more than the decoded image itself, whatever the aspect ratio."""
    import subprocess
    import sys

    path = tmp_path / f"{name}.png"
    path.write_bytes(extreme_png(EXTREME[name]))
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    extra_mb = int(out.stdout.split()[0])
    w, h = EXTREME[name]
    decoded_mb = w * h * 3 / 2**20
    assert extra_mb < 50 + 3 * decoded_mb, out.stdout  # 6000x6000: 103 MB decoded; bounded beyond
    assert "(32, 32, 3)" in out.stdout
    preview_shape = out.stdout.split(")", 1)[1]
    assert max(int(v) for v in preview_shape.replace("(", "").replace(")", "").split(",")) <= 640


PREDICT_SCRIPT = """
import sys
from cifar_app.cli import main

rc = main(sys.argv[1:])
line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print("VmHWM", int(line.split()[1]) // 1024, file=sys.stderr)
sys.exit(rc)
"""


def predict_peak_mb(path, runs_dir) -> tuple[float, str]:
    """Peak resident memory (MB) of a whole ``predict`` process since it started (VmHWM; the
    rusage of a child would also count the test process's memory inherited at fork), and its output."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", PREDICT_SCRIPT, "predict", "ref-batch", str(path),
                          "--runs-dir", str(runs_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    peak = int(out.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return peak, out.stdout


@pytest.mark.parametrize("name", ["40000x2", "2x40000"])
def test_predict_on_an_extreme_shape_peaks_under_one_gigabyte(tmp_path, name):
    """The whole ``predict`` process, torch included, stays at about 1 GB or less, and the extreme
    image adds next to nothing to what a 32x32 image costs (padding it used to take 4.8 GB)."""
    path = tmp_path / f"{name}.png"
    path.write_bytes(extreme_png(EXTREME[name]))
    small = tmp_path / "small.png"
    small.write_bytes(extreme_png((32, 32)))
    peak, output = predict_peak_mb(path, tmp_path)
    baseline, _ = predict_peak_mb(small, tmp_path)
    assert name in output
    assert peak < 1200 and peak - baseline < 100, f"peak {peak:.0f} MB, 32x32: {baseline:.0f} MB"


def old_to_cifar_image(im: Image.Image) -> np.ndarray:
    """The conversion as it was before work was bounded (pad/crop at full size, then resize)."""
    from PIL import ImageOps

    im = inference._to_rgb(ImageOps.exif_transpose(im) or im)
    w, h = im.size
    if max(w, h) <= inference.CROP_MAX_ASPECT * min(w, h):
        im = ImageOps.fit(im, (min(w, h),) * 2, Image.Resampling.BICUBIC)
    else:
        a = np.asarray(im)
        edge = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).mean(axis=0).astype(np.uint8)
        im = ImageOps.pad(im, (max(w, h),) * 2, color=tuple(int(c) for c in edge))
    return np.asarray(im.resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=3.0), dtype=np.uint8)


@pytest.mark.parametrize("size", [(32, 32), (40, 32), (31, 33), (64, 48), (120, 100), (150, 60),
                                  (60, 150), (191, 191), (180, 30)])
def test_small_images_convert_exactly_as_before(size):
    rng = np.random.default_rng(sum(size))
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        data = png_bytes(im, fmt)
        with Image.open(io.BytesIO(data)) as reference:
            expected = old_to_cifar_image(reference)
        np.testing.assert_array_equal(decode_image(data), expected)


def test_large_images_still_match_the_full_size_conversion_closely():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((3000, 2250), Image.Resampling.BICUBIC)  # smooth content
    data = png_bytes(im)
    with Image.open(io.BytesIO(data)) as reference:
        expected = old_to_cifar_image(reference).astype(int)
    assert np.abs(decode_image(data).astype(int) - expected).mean() < 2.0


@pytest.mark.parametrize("size, fmt, decodes", [
    ((32, 32), "PNG", 1), ((150, 60), "JPEG", 1), ((1000, 800), "JPEG", 2), ((1000, 800), "PNG", 1),
    ((4000, 3000), "JPEG", 1), ((3000, 40), "PNG", 1)])
def test_decode_upload_gives_the_same_input_and_preview_decoding_once_where_it_can(
        monkeypatch, size, fmt, decodes):
    """The Classify page decodes an upload once for both the model input and the preview; a JPEG
    whose two reduced scales differ is decoded twice, so the model input is never different."""
    rng = np.random.default_rng(size[0])
    small = rng.integers(0, 256, (max(2, size[1] // 40), max(2, size[0] // 40), 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), fmt)
    expected = decode_image(data), inference.preview_image(data)
    loads = []
    real_load = inference._load
    monkeypatch.setattr(inference, "_load", lambda im: loads.append(im.size) or real_load(im))
    image32, preview = inference.decode_upload(data)
    np.testing.assert_array_equal(image32, expected[0])
    np.testing.assert_array_equal(preview, expected[1])
    assert len(loads) == decodes, loads
    assert max(preview.shape[:2]) <= inference.PREVIEW_MAX_SIDE


@pytest.mark.parametrize("entry", ["decode_image", "preview_image", "decode_upload"])
def test_a_big_decode_waits_its_turn_and_a_small_one_does_not(monkeypatch, entry):
    """PIL holds 160 MB while it decodes a 40-megapixel PNG: two visitors uploading one each held
    twice that. A decode of more than ``BIG_DECODE_PIXELS`` holds the process's one slot while its
    full image lives; a small one does not wait; the slot is free again after a damaged file."""
    held = []
    for name in ("_load", "_model_input", "_preview"):  # until the full image is reduced
        real = getattr(inference, name)
        monkeypatch.setattr(inference, name, lambda *a, _real=real, **k: held.append(
            inference._BIG_DECODE.locked()) or _real(*a, **k))
    side = int(inference.BIG_DECODE_PIXELS ** 0.5) + 1
    ramp = np.broadcast_to(np.linspace(0, 255, side, dtype=np.uint8), (side, side))
    big, small = png_bytes(Image.fromarray(ramp).convert("RGB")), png_bytes(Image.new("RGB", (640, 480)))
    getattr(inference, entry)(big)
    assert held and all(held) and not inference._BIG_DECODE.locked()
    held.clear()
    getattr(inference, entry)(small)
    assert held and not any(held)
    with pytest.raises(ImageError, match="damaged or truncated"):
        getattr(inference, entry)(big[: len(big) // 2])
    assert not inference._BIG_DECODE.locked()


@pytest.mark.parametrize("fmt", ["JPEG", "MPO"])
def test_a_big_photo_is_decoded_small_and_does_not_wait(monkeypatch, fmt):
    """A phone's JPEG is decoded at a fraction of its size (``Image.draft``); one that PIL opens as
    MPO (a JPEG carrying more pictures, e.g. a gain map) was decoded whole: 48 MB for 12 MP, and
    it took the big-decode slot."""
    loads = []
    real_load = inference._load
    monkeypatch.setattr(inference, "_load", lambda im: loads.append((im.size, inference._BIG_DECODE.locked()))
                        or real_load(im))
    im = Image.new("RGB", (4000, 3000), (10, 200, 30))
    data = png_bytes(im, fmt, **({"save_all": True, "append_images": [im.copy()]} if fmt == "MPO" else {}))
    assert Image.open(io.BytesIO(data)).format == fmt
    inference.decode_upload(data)
    assert loads and all(w * h <= 1_000_000 and not locked for (w, h), locked in loads), loads

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cifar_app import inference
from cifar_app.inference import ImageError, classify, classify_each, decode_image, load_model


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

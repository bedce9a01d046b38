import torch
import torch.nn.functional as F

from cifar_app.augment import augment_batch, cutout, random_crop, random_flip


def _images(n=64):
    return torch.arange(n * 3 * 32 * 32, dtype=torch.float32).reshape(n, 3, 32, 32) + 1  # no zeros


def test_augment_keeps_shape_and_dtype():
    x = _images()
    out = augment_batch(x, crop_pad=4, flip=True, cutout_size=8, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_flip_mirrors_some_images_and_leaves_the_others():
    x = _images()
    out = random_flip(x, torch.Generator().manual_seed(0))
    flipped = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_crop_is_a_shifted_window_of_the_zero_padded_image():
    x = _images(32)
    out = random_crop(x, 4, torch.Generator().manual_seed(1))
    padded = F.pad(x, (4, 4, 4, 4))
    shifts = set()
    for o, p in zip(out, padded):
        found = [(dy, dx) for dy in range(9) for dx in range(9)
                 if torch.equal(o, p[:, dy:dy + 32, dx:dx + 32])]
        assert found, "crop is not a window of the padded image"
        shifts.add(found[0])
    assert len(shifts) > 5


def test_cutout_zeroes_at_most_one_square_per_image():
    x = _images(16)
    out = cutout(x, 8, torch.Generator().manual_seed(2))
    for o in out:
        zero = (o == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 0 < zero.sum() <= 64
        assert zero.sum() == len(rows) * len(cols)  # a rectangle (clipped square)
        assert len(rows) <= 8 and len(cols) <= 8


def test_no_padding_means_no_change():
    x = _images(4)
    assert torch.equal(random_crop(x, 0), x)

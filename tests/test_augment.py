import pytest
import torch
import torch.nn.functional as F

from cifar_app.core.augment import augment_batch, cutout, random_crop, random_flip


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


def test_mixup_blends_each_image_with_its_partner():
    from cifar_app.core.augment import mix_batch

    x = _images(8)
    perm = torch.tensor([3, 2, 1, 0, 7, 6, 5, 4])
    out, lam = mix_batch(x, "mixup", 0.3, perm)
    assert lam == 0.3 and torch.allclose(out, 0.3 * x + 0.7 * x[perm])


@pytest.mark.parametrize("lam,box", [(0.75, (16, 16)), (0.75, (0, 0)), (0.5, (31, 5)), (1.0, (10, 10))])
def test_cutmix_pastes_a_rectangle_of_the_partner_and_weighs_the_labels_by_area(lam, box):
    from cifar_app.core.augment import mix_batch

    x = _images(8)
    perm = torch.roll(torch.arange(8), 1)
    out, own = mix_batch(x, "cutmix", lam, perm, box)
    pasted = (out != x).all(1)  # (N, H, W): every pixel differs between partners
    assert torch.equal(pasted, (out == x[perm]).all(1))  # each pixel is the image's or the partner's
    assert (pasted == pasted[0]).all()  # one rectangle, the same for the batch
    rows, cols = pasted[0].any(1).nonzero(), pasted[0].any(0).nonzero()
    if len(rows):
        assert pasted[0].sum() == len(rows) * len(cols)  # a rectangle
    assert own == pytest.approx(1 - pasted[0].float().mean().item())  # clipping at a border counts
    if box == (16, 16):
        assert own == pytest.approx(lam)


def test_progressive_resizing_grows_to_full_size_by_the_halfway_epoch():
    from cifar_app.core.augment import progressive_side, resize_batch

    sides = [progressive_side(e, 20, 16) for e in range(1, 21)]
    assert sides[0] == 16 and sides[9:] == [32] * 11 and sides[8] < 32
    assert sides == sorted(sides) and all(s % 2 == 0 for s in sides)
    assert [progressive_side(e, 20, 32) for e in range(1, 21)] == [32] * 20
    assert [progressive_side(e, 1, 16) for e in (1,)] == [32]  # one epoch: at full size
    assert resize_batch(_images(2), 20).shape == (2, 3, 20, 20)

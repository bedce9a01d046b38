import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_app.core.data import CLASSES, DataError, channel_stats, dataset_info, dataset_status, load_cifar10


def test_image_tree_loads_as_uint8_tensors_in_a_fixed_shuffled_order(image_tree):
    data = load_cifar10(image_tree)
    assert data.train_x.shape == (60, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (30, 3, 32, 32)
    assert data.train_y.dtype == torch.int64 and sorted(set(data.train_y.tolist())) == list(range(10))
    assert data.classes == CLASSES
    assert data.train_y[:10].tolist() != sorted(data.train_y[:10].tolist())  # not grouped by class
    again = load_cifar10(image_tree)
    assert torch.equal(again.train_x, data.train_x) and torch.equal(again.train_y, data.train_y)


def test_pixels_and_labels_match_the_files(image_tree):
    data = load_cifar10(image_tree)
    # find the image of a known file among the decoded ones
    img = np.asarray(Image.open(image_tree / "test" / "cat" / "0000.png"))
    matches = [i for i in range(len(data.test_x))
               if np.array_equal(data.test_x[i].permute(1, 2, 0).numpy(), img)]
    assert len(matches) == 1 and data.test_y[matches[0]] == CLASSES.index("cat")


def test_second_load_uses_the_cache_and_a_changed_file_invalidates_it(image_tree):
    assert "cached" not in load_cifar10(image_tree).source
    assert (image_tree / ".cifar_app_cache.npz").exists()
    assert "cached" in load_cifar10(image_tree).source
    target = image_tree / "train" / "dog" / "0000.png"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(target)
    os.utime(target, (time.time() + 5, time.time() + 5))
    data = load_cifar10(image_tree)
    assert "cached" not in data.source
    assert any(np.all(data.train_x[i, :, 0, 0].numpy() == [1, 2, 3]) for i in range(len(data.train_x)))


@pytest.mark.parametrize("cached", [False, True], ids=["first load", "from the cache"])
def test_the_test_split_alone_leaves_the_training_images_out(image_tree, cached):
    """What the dashboard's server loads: its pages show and evaluate on the test split, and the
    training split's 150 MB stayed in its memory (the processes that train load their own)."""
    full = load_cifar10(image_tree)
    if not cached:
        (image_tree / ".cifar_app_cache.npz").unlink()
    data = load_cifar10(image_tree, train=False)
    assert data.train_x.shape == (0, 3, 32, 32) and data.train_y.shape == (0,)
    assert data.train_x.dtype == torch.uint8 and data.train_y.dtype == torch.int64
    assert torch.equal(data.test_x, full.test_x) and torch.equal(data.test_y, full.test_y)
    assert data.test_names == full.test_names and data.source.endswith("(test split only)")
    assert ("cached" in data.source) == cached
    assert (image_tree / ".cifar_app_cache.npz").exists() == cached  # the test split alone writes none
    assert torch.equal(load_cifar10(image_tree).train_x, full.train_x)  # a full load writes it


def test_the_test_split_alone_decodes_no_training_image(image_tree, monkeypatch):
    """A first load of the test split alone (the server's) decoded both splits, for the cache:
    the training split's 150 MB (twice, with a copy) in the server for a moment."""
    from cifar_app.core import data as module

    real = module._decode
    monkeypatch.setattr(module, "_decode", lambda path: pytest.fail(f"decoded {path}") if "/train/" in
                        path.as_posix() else real(path))
    assert len(load_cifar10(image_tree, train=False).test_x) == 30


@pytest.mark.parametrize("damage", ["truncated in the images", "truncated in the index", "garbage", "empty"])
def test_a_damaged_cache_is_decoded_again(image_tree, damage):
    first = load_cifar10(image_tree)
    cache = image_tree / ".cifar_app_cache.npz"
    raw = cache.read_bytes()
    cache.write_bytes({"truncated in the images": raw[:len(raw) // 3], "truncated in the index": raw[:-40],
                       "garbage": os.urandom(len(raw)), "empty": b""}[damage])
    data = load_cifar10(image_tree)
    assert "cached" not in data.source and torch.equal(data.train_x, first.train_x)
    assert torch.equal(data.test_x, first.test_x) and "cached" in load_cifar10(image_tree).source


def test_dataset_info_counts_and_names_what_a_load_gives_without_decoding(image_tree, monkeypatch):
    data = load_cifar10(image_tree)
    from cifar_app.core import data as module

    monkeypatch.setattr(module, "_decode", lambda path: pytest.fail(f"decoded {path}"))
    (image_tree / ".cifar_app_cache.npz").unlink()
    info = dataset_info(image_tree)
    assert (info.kind, info.train, info.test) == ("image folders", 60, 30)
    assert info.test_names == data.test_names  # the predictions CSV names each row's file by it
    (image_tree / "train" / "truck").rename(image_tree / "train" / "lorry")
    with pytest.raises(DataError, match="lorry"):
        dataset_info(image_tree)
    with pytest.raises(DataError, match="No CIFAR-10 found"):
        dataset_info(image_tree / "nowhere")


def test_tree_one_folder_down_any_size_and_mode_is_converted(tmp_path, image_tree):
    nested = tmp_path / "outer"
    nested.mkdir()
    image_tree.rename(nested / "cifar10")
    Image.new("L", (64, 48), 200).save(nested / "cifar10" / "train" / "cat" / "big.png")
    Image.new("RGBA", (20, 20), (5, 5, 5, 0)).save(nested / "cifar10" / "train" / "cat" / "small.png")
    data = load_cifar10(nested)
    assert data.train_x.shape == (62, 3, 32, 32)


def test_missing_data_gives_one_clear_error(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "nowhere")
    msg = str(err.value)
    assert "nowhere" in msg and "does not exist" in msg
    assert "CIFAR_APP_DATA" in msg and "--data" in msg and "download" in msg.lower()
    assert dataset_status(tmp_path / "nowhere")["found"] is False


def test_wrong_class_folders_are_named(image_tree):
    (image_tree / "train" / "truck").rename(image_tree / "train" / "lorry")
    with pytest.raises(DataError, match="lorry"):
        load_cifar10(image_tree)


def test_corrupt_image_file_is_named(image_tree):
    (image_tree / "train" / "frog" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="0001.png"):
        load_cifar10(image_tree)


def test_broken_torchvision_folder_is_a_clear_error(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could not be read"):
        load_cifar10(tmp_path)


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataError, match="offline"):
        load_cifar10(tmp_path / "empty", download=True)


def test_channel_stats_are_per_channel_in_unit_range():
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    x[:, 0] = 255
    x[:2, 2] = 255
    mean, std = channel_stats(x)
    assert torch.allclose(mean, torch.tensor([1.0, 0.0, 0.5]))
    assert std[0] == 0 and std[2] > 0.4

"""Dataset and loaders: RGB decoding, per-sample reproducible augmentation, sharding, streaming."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data import augment
from kaggle_planet.data.loader import ImageDataset, make_loader, read_image

CPU = torch.device("cpu")
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(10):
        path = tmp_path / f"img_{i}.png"  # lossless, so pixel values survive the round trip
        cv2.imwrite(str(path), rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8))
        files.append(str(path))
    return files


def test_read_image_returns_rgb(tmp_path):
    bgr = np.zeros((4, 5, 3), dtype=np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), bgr)
    rgb = read_image(path)
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(KagglePlanetError, match="broken.jpg: cannot read image"):
        read_image(bad)
    dataset = ImageDataset([str(tmp_path / "missing.jpg")], None, augment.build_transform("none", 8, MEAN, STD, train=False))
    with pytest.raises(KagglePlanetError, match="missing.jpg"):
        dataset[0]


def test_items_are_normalised_tensors_with_targets_and_index(image_files):
    targets = np.eye(10, 3, dtype=np.int64)
    dataset = ImageDataset(image_files, targets, augment.build_transform("none", 16, MEAN, STD, train=False))
    image, target, index = dataset[4]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert index == 4 and target.tolist() == targets[4].tolist()
    # independent reference: resize + normalise by hand
    expected = cv2.resize(read_image(image_files[4]), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    expected = (expected - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    unlabelled = ImageDataset(image_files, None, dataset.transform)
    assert unlabelled[0][1].numel() == 0


def test_augmentation_is_a_function_of_seed_epoch_and_index(image_files):
    def dataset(seed):
        return ImageDataset(image_files, None, augment.build_transform("heavy", 16, MEAN, STD, train=True), seed=seed)

    a, b = dataset(1), dataset(1)
    # the same (index, epoch) gives the same draw whatever was drawn before, in any order
    first = a[(3, 0)][0]
    a[(5, 0)], a[(3, 1)]
    torch.testing.assert_close(a[(3, 0)][0], first)
    torch.testing.assert_close(b[(3, 0)][0], first)
    assert not torch.equal(a[(3, 1)][0], first)  # another epoch, another augmentation
    assert not torch.equal(dataset(2)[(3, 0)][0], first)  # another seed too


def _batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [(images, index) for images, _, index in loader]


def test_loader_results_do_not_depend_on_worker_count(image_files):
    transform = augment.build_transform("heavy", 16, MEAN, STD, train=True)
    dataset = ImageDataset(image_files, np.zeros((10, 2)), transform, seed=5)
    serial = make_loader(dataset, 3, train=True, device=CPU, num_workers=0, seed=5)
    parallel = make_loader(dataset, 3, train=True, device=CPU, num_workers=2, seed=5)
    for epoch in (0, 1):
        for (x0, i0), (x1, i1) in zip(_batches(serial, epoch), _batches(parallel, epoch), strict=True):
            assert i0.tolist() == i1.tolist()
            torch.testing.assert_close(x0, x1)
    order0 = torch.cat([i for _, i in _batches(serial, 0)]).tolist()
    order1 = torch.cat([i for _, i in _batches(serial, 1)]).tolist()
    assert order0 != order1  # reshuffled each epoch
    assert len(order0) == 9  # the last partial batch is dropped in training
    assert not serial.pin_memory and parallel.persistent_workers


def test_evaluation_loader_in_order_and_shards_cover_everything(image_files):
    dataset = ImageDataset(image_files, None, augment.build_transform("none", 8, MEAN, STD, train=False))
    loader = make_loader(dataset, 4, train=False, device=CPU, num_workers=0)
    assert torch.cat([i for _, _, i in loader]).tolist() == list(range(10))
    shards = [
        torch.cat([i for _, _, i in make_loader(dataset, 4, train=False, device=CPU, num_workers=0, rank=r, world=3)]).tolist()
        for r in range(3)
    ]
    assert set().union(*shards) == set(range(10))
    assert len({len(s) for s in shards}) == 1  # equal shares (padded), as DDP needs

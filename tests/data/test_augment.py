"""Augmentation presets: output contract, determinism, D4 group membership, real change."""

import warnings

import numpy as np
import pytest
import torch

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data.augment import PRESETS, build_transform, reseed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# mean 0 / std 1 makes Normalize a plain x / 255, so pixels can be compared exactly.
IDENTITY_MEAN = (0.0, 0.0, 0.0)
IDENTITY_STD = (1.0, 1.0, 1.0)


def random_image(size=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def dihedral_group(img):
    """The 8 symmetries of the square, computed with numpy as the reference."""
    rotations = [np.rot90(img, k, axes=(0, 1)) for k in range(4)]
    return rotations + [np.flip(r, axis=1) for r in rotations]


def to_uint8(tensor):
    """Undo ToTensorV2 + x/255 normalisation: (3, H, W) float -> (H, W, 3) uint8."""
    return np.rint(tensor.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("train", [True, False])
def test_each_preset_gives_float_chw_tensor(preset, train):
    transform = build_transform(preset, 48, IMAGENET_MEAN, IMAGENET_STD, train=train, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecated albumentations arguments
        out = transform(image=random_image(80))["image"]
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (3, 48, 48)
    assert torch.isfinite(out).all()


def test_building_presets_emits_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for preset in PRESETS:
            build_transform(preset, 32, IMAGENET_MEAN, IMAGENET_STD, train=True)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_eval_transform_is_resize_and_normalise_only(preset):
    img = random_image(64, seed=3)
    a = build_transform(preset, 64, IMAGENET_MEAN, IMAGENET_STD, train=False)
    b = build_transform(preset, 64, IMAGENET_MEAN, IMAGENET_STD, train=False)
    outs = [a(image=img)["image"] for _ in range(3)] + [b(image=img)["image"]]
    # Reference: same-size resize is the identity, then the ImageNet normalisation by hand.
    expected = (img.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN, np.float32)) / np.array(
        IMAGENET_STD, np.float32
    )
    for out in outs:
        np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_d4_output_is_always_a_dihedral_transform_and_covers_the_group():
    img = random_image(32, seed=1)  # random pixels: no two symmetries coincide
    group = dihedral_group(img)
    transform = build_transform("d4", 32, IDENTITY_MEAN, IDENTITY_STD, train=True, seed=7)
    seen = set()
    for _ in range(80):
        out = to_uint8(transform(image=img)["image"])
        matches = [i for i, g in enumerate(group) if np.array_equal(out, g)]
        assert len(matches) == 1, "d4 output is not one of the 8 symmetries of the input"
        seen.add(matches[0])
    assert seen == set(range(8))


def test_same_seed_gives_same_sequence_and_reseed_changes_it():
    img = random_image(64, seed=2)

    def draws(transform):
        return [transform(image=img)["image"] for _ in range(4)]

    first = draws(build_transform("heavy", 48, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=11))
    second = draws(build_transform("heavy", 48, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=11))
    for x, y in zip(first, second, strict=True):
        assert torch.equal(x, y)
    other = build_transform("heavy", 48, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=11)
    reseed(other, 12)
    assert not all(torch.equal(x, y) for x, y in zip(first, draws(other), strict=True))


def test_heavy_changes_images_beyond_the_dihedral_group():
    img = random_image(64, seed=4)
    group = dihedral_group(img)
    transform = build_transform("heavy", 64, IDENTITY_MEAN, IDENTITY_STD, train=True, seed=0)
    outs = [to_uint8(transform(image=img)["image"]) for _ in range(10)]
    for out in outs:
        assert not any(np.array_equal(out, g) for g in group)
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_light_is_random_but_mild():
    img = random_image(64, seed=5)
    transform = build_transform("light", 64, IDENTITY_MEAN, IDENTITY_STD, train=True, seed=0)
    outs = [transform(image=img)["image"] for _ in range(12)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_none_train_equals_eval():
    img = random_image(50, seed=6)
    train = build_transform("none", 40, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=0)
    evaluate = build_transform("none", 40, IMAGENET_MEAN, IMAGENET_STD, train=False)
    assert torch.equal(train(image=img)["image"], evaluate(image=img)["image"])


def test_unknown_preset_lists_valid_names():
    with pytest.raises(KagglePlanetError) as err:
        build_transform("medium", 32, IMAGENET_MEAN, IMAGENET_STD, train=True)
    message = str(err.value)
    assert "medium" in message and "\n" not in message
    for name in PRESETS:
        assert name in message


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size_is_refused(size):
    with pytest.raises(KagglePlanetError, match="image_size"):
        build_transform("none", size, IMAGENET_MEAN, IMAGENET_STD, train=False)


def test_a_saved_pipeline_is_applied_then_resized_and_normalised(tmp_path):
    import albumentations as A

    path = tmp_path / "flip.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path), data_format="yaml")
    img = random_image(32)
    out = build_transform(str(path), 32, IDENTITY_MEAN, IDENTITY_STD, train=True, seed=0)(image=img)["image"]
    np.testing.assert_array_equal(to_uint8(out), img[:, ::-1])  # the user's transform ran, nothing else moved pixels
    small = build_transform(str(path), 16, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=0)(image=random_image(50))["image"]
    assert small.shape == (3, 16, 16) and small.dtype == torch.float32
    # evaluation never applies the training pipeline
    np.testing.assert_array_equal(to_uint8(build_transform(str(path), 32, IDENTITY_MEAN, IDENTITY_STD, train=False)(image=img)["image"]), img)
    json_path = tmp_path / "flip.json"
    A.save(A.Compose([A.VerticalFlip(p=1.0)]), str(json_path), data_format="json")
    np.testing.assert_array_equal(to_uint8(build_transform(str(json_path), 32, IDENTITY_MEAN, IDENTITY_STD, train=True)(image=img)["image"]), img[::-1])


def test_a_broken_pipeline_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("transform: {__class_fullname__: NoSuchTransform}\n")
    with pytest.raises(KagglePlanetError, match=r"augment: .*bad.yaml: not an albumentations pipeline") as info:
        build_transform(str(bad), 32, IMAGENET_MEAN, IMAGENET_STD, train=True)
    assert "\n" not in str(info.value)
    with pytest.raises(KagglePlanetError, match="pipeline file not found"):
        build_transform(str(tmp_path / "none.yml"), 32, IMAGENET_MEAN, IMAGENET_STD, train=True)


def test_affine_preset_never_flips_or_turns():
    """A left-right asymmetric pattern keeps its handedness under every draw of the flip-free preset."""
    img = np.zeros((48, 48, 3), dtype=np.uint8)
    img[8:40, 8:16] = 255  # a bar on the left
    for seed in range(20):
        out = to_uint8(build_transform("affine", 48, IDENTITY_MEAN, IDENTITY_STD, train=True, seed=seed)(image=img)["image"])
        bar = out.astype(float).mean(axis=2) > 128  # colour changes lift the background, not above the bar
        # a flip would put the bar on the right (~0), a quarter turn would spread it across (~0.5)
        assert bar[:, :24].sum() > 0.8 * bar.sum() > 0, seed


@pytest.mark.parametrize("shape", [(5, 7, 3), (6, 6, 1), (4, 9)])
def test_fast_d4_equals_albumentations_d4_for_every_group_element(shape):
    import albumentations.augmentations.geometric.functional as F

    from kaggle_planet.data.augment import FastD4

    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    for element in ("e", "r90", "r180", "r270", "v", "hvt", "h", "t"):
        expected = F.d4(img, element)
        got = FastD4(p=1.0).apply(img, element)
        np.testing.assert_array_equal(got, expected, err_msg=element)

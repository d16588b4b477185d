"""The dataset seam: one in-memory record type, one registry, one entry point.

Every dataset the tool can search on (CIFAR, user ``.npz`` files, the embedded
synthetic task, ...) is reduced to the same thing: uint8 image tensors plus
labels plus the per-channel normalisation constants.  Keeping images as uint8
NCHW is deliberate -- it is 4x smaller than float32, so whole training sets fit
in GPU memory and augmentation can run there (``nas_cli.data.loader``) instead
of in per-sample Python worker processes.

Builders are looked up by ``dataset.name`` in :data:`DATASETS`; adding a
dataset means one module with a registered builder plus one YAML file.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch

from nas_cli.errors import ConfigError, DataError
from nas_cli.registry import Registry

#: Modules whose import registers builders.  Imported lazily by
#: :func:`load_dataset` so that ``base`` itself has no import cycle with them.
BUILDER_MODULES: tuple[str, ...] = (
    "nas_cli.data.synthetic",
    "nas_cli.data.cifar",
    "nas_cli.data.npz",
    "nas_cli.data.imagenet16",
)


@dataclass
class ArrayDataset:
    """A complete image-classification dataset held in (CPU) memory.

    Images are uint8 in NCHW order with values in [0, 255]; ``mean``/``std``
    are per channel in the [0, 1] pixel scale (i.e. already divided by 255),
    which is what ``ToTensor -> Normalize`` style pipelines expect.
    ``crop_padding`` travels with the data because the right random-crop
    padding depends on the image size (4 for 32x32 CIFAR, 2 for 16x16
    ImageNet16), not on the training recipe.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int = 4
    class_names: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image; what a network's stem needs to know."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_x.shape[0])

    def validate(self) -> "ArrayDataset":
        """Check the invariants the loader relies on; return ``self`` for chaining.

        Problems are reported as a one-line :class:`DataError` naming the
        dataset and the offending field, because a bad array discovered later
        (inside a CUDA kernel, or as a silently wrong loss) is far harder to
        trace back to the file it came from.
        """
        where = f"dataset '{self.name}'"
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise DataError(f"{where}: num_classes must be an integer >= 2, got {self.num_classes!r}")
        shape: tuple[int, ...] | None = None
        for split in ("train", "test"):
            x = getattr(self, f"{split}_x")
            y = getattr(self, f"{split}_y")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise DataError(f"{where}: {split}_x/{split}_y must be torch tensors")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(
                    f"{where}: {split}_x must be a uint8 tensor of shape (N, C, H, W), "
                    f"got {x.dtype} with shape {tuple(x.shape)}"
                )
            if x.device.type != "cpu" or y.device.type != "cpu":
                raise DataError(f"{where}: {split} arrays must be on the CPU (the loader moves them)")
            if shape is None:
                shape = tuple(x.shape[1:])
            elif tuple(x.shape[1:]) != shape:
                raise DataError(
                    f"{where}: train images are {shape} but test images are {tuple(x.shape[1:])}"
                )
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(
                    f"{where}: {split}_y must be an int64 vector with one label per image "
                    f"({x.shape[0]}), got {y.dtype} with shape {tuple(y.shape)}"
                )
            if x.shape[0] == 0:
                raise DataError(f"{where}: the {split} split is empty")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                raise DataError(
                    f"{where}: {split} labels span [{lo}, {hi}] but num_classes={self.num_classes}"
                )
        assert shape is not None
        channels = shape[0]
        for field in ("mean", "std"):
            v = getattr(self, field)
            if len(v) != channels:
                raise DataError(f"{where}: {field} has {len(v)} entries but images have {channels} channels")
        if any(not s > 0 for s in self.std):
            raise DataError(f"{where}: std must be positive per channel, got {self.std}")
        if self.crop_padding < 0:
            raise DataError(f"{where}: crop_padding must be >= 0, got {self.crop_padding}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise DataError(
                f"{where}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        return self


DatasetBuilder = Callable[[Mapping[str, Any]], ArrayDataset]

#: name -> builder(dataset config node) -> ArrayDataset
DATASETS: Registry[DatasetBuilder] = Registry("dataset")


def cfg_get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read an optional key from a dict or an omegaconf DictConfig alike.

    Both support ``.get``; a missing key or an explicit ``null`` falls back to
    the default so YAML files can leave dataset-specific keys out.
    """
    value = cfg.get(key, default)
    return default if value is None else value


def default_crop_padding(image_size: int) -> int:
    """Random-crop padding proportional to the image (4 px at 32, 2 px at 16)."""
    return max(0, int(image_size) // 8)


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std (population, [0, 1] scale) of uint8 NCHW images.

    Computed from exact integer histograms, so the constants are bit-identical
    across machines (float reductions depend on SIMD width and summation
    order).  The std is floored at one grey level so a constant channel cannot
    turn normalisation into a division by zero.
    """
    levels = np.arange(256, dtype=np.int64)
    mean, std = [], []
    for ch in range(x.shape[1]):
        hist = np.bincount(x[:, ch].reshape(-1), minlength=256).astype(np.int64)
        count = int(hist.sum())
        m = int((hist * levels).sum()) / count
        var = int((hist * levels**2).sum()) / count - m * m
        mean.append(m / 255.0)
        std.append(float(np.sqrt(max(var, 1.0))) / 255.0)
    return tuple(mean), tuple(std)


def from_arrays(name: str, cfg: Mapping[str, Any], train_x: np.ndarray, train_y: np.ndarray,
                test_x: np.ndarray, test_y: np.ndarray, num_classes: int,
                mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                class_names: list[str] | None = None) -> ArrayDataset:
    """The one way a builder turns its arrays (uint8 NCHW images, int64 labels) into an ArrayDataset.

    Shared so every source gets the same defaults: normalisation constants from the
    training images when the source has none (:func:`channel_stats`), and the random-crop
    padding ``dataset.crop_padding`` or else proportional to the image size
    (:func:`default_crop_padding`: 4 px for 32x32 CIFAR, 2 px for 16x16 ImageNet16).
    """
    if mean is None or std is None:
        mean, std = channel_stats(train_x)
    return ArrayDataset(
        name=name,
        train_x=torch.from_numpy(train_x),
        train_y=torch.from_numpy(train_y),
        test_x=torch.from_numpy(test_x),
        test_y=torch.from_numpy(test_y),
        num_classes=int(num_classes),
        mean=tuple(mean),
        std=tuple(std),
        crop_padding=int(cfg_get(cfg, "crop_padding", default_crop_padding(train_x.shape[2]))),
        class_names=class_names,
    )


def load_dataset(cfg: Mapping[str, Any]) -> ArrayDataset:
    """Build and validate the dataset named by ``cfg["name"]``.

    ``cfg`` is the ``dataset`` config node (DictConfig or plain dict).
    """
    for module in BUILDER_MODULES:
        importlib.import_module(module)
    name = cfg_get(cfg, "name")
    if not name:
        raise ConfigError(f"dataset.name is required; choose one of: {', '.join(DATASETS.names())}")
    builder = DATASETS.get(str(name))
    return _limit(builder(cfg).validate(), cfg_get(cfg, "limit_train"), cfg_get(cfg, "limit_test"))


def _limit(ds: ArrayDataset, train: int | None, test: int | None) -> ArrayDataset:
    """The first ``train`` / ``test`` images (``dataset.limit_*``: quick real-data runs)."""
    import dataclasses

    for key, n in (("limit_train", train), ("limit_test", test)):
        if n is not None and int(n) < 1:
            raise ConfigError(f"dataset.{key} must be a positive number of images or null, got {n}")
    if train is None and test is None:
        return ds
    tr = slice(None) if train is None else slice(0, int(train))
    te = slice(None) if test is None else slice(0, int(test))
    return dataclasses.replace(ds, train_x=ds.train_x[tr], train_y=ds.train_y[tr], test_x=ds.test_x[te],
                               test_y=ds.test_y[te])

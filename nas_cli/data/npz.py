"""User-provided datasets as one ``.npz`` file.

The lowest-friction way to search on your own images: save four arrays with
``numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)`` and set
``dataset.name=npz dataset.path=...``.  To accept arrays as people actually
have them, images may be NHWC or NCHW (told apart by which axis has 1 or 3
channels), 3-D greyscale (N, H, W), uint8, any integer type within 0..255, or
float in [0, 1].  Optional keys: ``mean``, ``std`` (per channel, [0, 1]
scale; computed from the training images when absent) and ``class_names``.
The file is opened with ``allow_pickle=False`` so it cannot run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nas_cli.data.base import DATASETS, ArrayDataset, cfg_get, from_arrays
from nas_cli.errors import DataError

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CHANNEL_COUNTS = (1, 3)


def to_nchw_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """Convert one image array to uint8 NCHW, or raise a DataError saying why not."""
    if x.ndim == 3:  # greyscale (N, H, W)
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{what}: expected images of shape (N, H, W, C) or (N, C, H, W), got {x.shape}")
    nchw = x.shape[1] in _CHANNEL_COUNTS
    nhwc = x.shape[3] in _CHANNEL_COUNTS
    if nchw and nhwc:  # e.g. (N, 3, W, 3): prefer the reading that gives square images
        nchw, nhwc = x.shape[2] == x.shape[3], x.shape[1] == x.shape[2]
    if nchw == nhwc:
        raise DataError(
            f"{what}: cannot tell the channel axis of shape {x.shape}; "
            "store (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
        )
    if nhwc:
        x = x.transpose(0, 3, 1, 2)
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0):
            raise DataError(f"{what}: float images must lie in [0, 1]")
        x = np.rint(x * 255.0)
    elif np.issubdtype(x.dtype, np.integer) and x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{what}: integer images must lie in 0..255")
    elif x.dtype != np.uint8:
        raise DataError(f"{what}: unsupported image dtype {x.dtype}")
    # A fresh C-contiguous copy: torch.from_numpy needs writable memory, and
    # the npz member arrays must not stay referenced.
    return np.array(x, dtype=np.uint8, order="C", copy=True)


def to_labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """Labels as int64 (N,); accepts (N, 1) columns and integral floats."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{what}: expected {n} integer labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise DataError(f"{what}: labels must be integers, got {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0, found {y.min()}")
    return y


@DATASETS.register("npz")
def build_npz(cfg: Mapping[str, Any]) -> ArrayDataset:
    """Builder for ``dataset.name=npz``; reads ``dataset.path``."""
    path_value = cfg_get(cfg, "path")
    if not path_value:
        raise DataError("dataset.path is not set; point it at an .npz file with x_train, y_train, x_test, y_test")
    path = Path(str(path_value)).expanduser()
    if not path.is_file():
        raise DataError(f"npz dataset file {path} not found; check dataset.path=")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"{path} lacks key(s) {', '.join(missing)}; it must hold {', '.join(REQUIRED_KEYS)} "
            f"(has: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    train_x = to_nchw_uint8(arrays["x_train"], f"{path}: x_train")
    test_x = to_nchw_uint8(arrays["x_test"], f"{path}: x_test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{path}: x_train images are {train_x.shape[1:]} but x_test are {test_x.shape[1:]}")
    train_y = to_labels(arrays["y_train"], train_x.shape[0], f"{path}: y_train")
    test_y = to_labels(arrays["y_test"], test_x.shape[0], f"{path}: y_test")

    names = [str(s) for s in arrays["class_names"].reshape(-1)] if "class_names" in arrays else None
    seen = int(max(train_y.max(initial=0), test_y.max(initial=0))) + 1
    num_classes = int(cfg_get(cfg, "num_classes", len(names) if names else seen))
    if ("mean" in arrays) != ("std" in arrays):
        raise DataError(f"{path}: provide both 'mean' and 'std' or neither (they are computed then)")
    mean = std = None  # computed from the training images when absent
    if "mean" in arrays:
        mean = tuple(float(v) for v in arrays["mean"].reshape(-1))
        std = tuple(float(v) for v in arrays["std"].reshape(-1))
    return from_arrays("npz", cfg, train_x, train_y, test_x, test_y, num_classes, mean, std, names)

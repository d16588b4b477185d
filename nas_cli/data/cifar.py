"""CIFAR-10 / CIFAR-100 from the official python-pickle layout.

We read the pickles ourselves instead of using ``torchvision.datasets.CIFAR10``
because torchvision insists on md5-checking the extracted files, which rejects
re-encoded or trimmed copies (the shared development copy, small test
fixtures) even though their layout is exactly the official one.  torchvision is
still used for the one thing it is good at here: downloading and extracting
the official archive, whose tarball md5 *is* checked.

Layout (training.md section 3): ``cifar-10-batches-py/{data_batch_1..5,
test_batch, batches.meta}`` and ``cifar-100-python/{train, test, meta}``; each
data file is a dict with ``data`` (N x 3072 uint8, R, G, B planes of 32x32,
row-major) and ``labels`` (CIFAR-100: ``fine_labels``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from nas_cli.data.base import DATASETS, ArrayDataset, cfg_get, from_arrays
from nas_cli.errors import DataError

_IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Everything that differs between CIFAR-10 and CIFAR-100."""

    name: str
    title: str
    subdir: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    url: str
    archive: str
    archive_md5: str
    #: NAS-Bench-201's constants (nasbench201.md §5), chosen by ``dataset.normalization=nb201``
    nb201_mean: tuple[float, ...] = ()
    nb201_std: tuple[float, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return self.train_files + self.test_files + (self.meta_file,)


CIFAR10 = CifarLayout(
    name="cifar10",
    title="CIFAR-10",
    subdir="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    meta_file="batches.meta",
    label_key="labels",
    names_key="label_names",
    num_classes=10,
    # DARTS-space constants (training.md section 3).
    mean=(0.49139968, 0.48215827, 0.44653124),
    std=(0.24703233, 0.24348505, 0.26158768),
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    archive="cifar-10-python.tar.gz",
    archive_md5="c58f30108f718f92721af3b95e74349a",
    nb201_mean=(125.3 / 255, 123.0 / 255, 113.9 / 255),
    nb201_std=(63.0 / 255, 62.1 / 255, 66.7 / 255),
)

CIFAR100 = CifarLayout(
    name="cifar100",
    title="CIFAR-100",
    subdir="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    meta_file="meta",
    label_key="fine_labels",
    names_key="fine_label_names",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    archive="cifar-100-python.tar.gz",
    archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
    nb201_mean=(129.3 / 255, 124.1 / 255, 112.4 / 255),
    nb201_std=(68.2 / 255, 65.4 / 255, 70.4 / 255),
)

# The only globals a CIFAR pickle legitimately references (numpy arrays pickled
# by numpy 1.x or 2.x, and Python 3's encoding of bytes at protocol 2).
# Refusing anything else means a hostile file cannot execute code on load.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict[str, Any]:
    """Load one CIFAR pickle with ``encoding="latin1"``; normalise keys to ``str``.

    latin1 is what the Python 2 era files need (their byte strings decode
    1:1); keys still come back as ``bytes`` when a file was written with
    Python 3 bytes keys at protocol >= 3, so both are accepted.
    """
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    except Exception as e:  # truncated, garbage, or disallowed content
        raise DataError(
            f"{path} is not a valid CIFAR pickle ({type(e).__name__}: {e}); delete it and re-download"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a valid CIFAR pickle (holds {type(obj).__name__}, expected dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _read_split(directory: Path, files: tuple[str, ...], layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate data files into (N, 3, 32, 32) uint8 and (N,) int64 arrays."""
    xs, ys = [], []
    for fname in files:
        path = directory / fname
        d = _read_pickle(path)
        if "data" not in d or layout.label_key not in d:
            raise DataError(
                f"{path} lacks the '{'data' if 'data' not in d else layout.label_key}' entry "
                f"of a {layout.title} data file"
            )
        data = d["data"]
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _PIXELS:
            shape = getattr(data, "shape", type(data).__name__)
            raise DataError(f"{path}: 'data' must be an N x {_PIXELS} array, got {shape}")
        if data.dtype != np.uint8:
            raise DataError(f"{path}: 'data' must be uint8, got {data.dtype}")
        try:
            labels = np.asarray(d[layout.label_key], dtype=np.int64).reshape(-1)
        except (TypeError, ValueError):
            raise DataError(f"{path}: '{layout.label_key}' is not a list of integers") from None
        if labels.shape[0] != data.shape[0]:
            raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
        if labels.size and (labels.min() < 0 or labels.max() >= layout.num_classes):
            raise DataError(
                f"{path}: labels span [{labels.min()}, {labels.max()}], "
                f"expected 0..{layout.num_classes - 1}"
            )
        xs.append(data)
        ys.append(labels)
    # concatenate copies, so the tensors own writable memory (torch warns on read-only numpy).
    x = np.concatenate(xs).reshape(-1, *_IMAGE_SHAPE)
    return x, np.concatenate(ys)


def _read_class_names(directory: Path, layout: CifarLayout) -> list[str] | None:
    d = _read_pickle(directory / layout.meta_file)
    names = d.get(layout.names_key)
    if not isinstance(names, (list, tuple)) or len(names) != layout.num_classes:
        return None
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _missing(directory: Path, layout: CifarLayout) -> list[str]:
    return [f for f in layout.files if not (directory / f).is_file()]


def find_directory(root: Path, layout: CifarLayout) -> tuple[Path | None, Path, str]:
    """Locate the batch directory: ``root/<subdir>`` or ``root`` itself.

    Returns ``(complete_dir or None, best_guess_dir, first_missing_file)``; the
    best guess is the candidate holding the most files, so the error message
    points where the user most likely put them.
    """
    candidates = [root / layout.subdir, root]
    best, best_missing = candidates[0], _missing(candidates[0], layout)
    for cand in candidates:
        miss = _missing(cand, layout)
        if not miss:
            return cand, cand, ""
        if len(miss) < len(best_missing):
            best, best_missing = cand, miss
    return None, best, best_missing[0]


def download(root: Path, layout: CifarLayout) -> None:
    """Fetch and unpack the official archive into ``root`` (tarball md5 is checked)."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(
            layout.url, download_root=str(root), filename=layout.archive, md5=layout.archive_md5
        )
    except Exception as e:  # URLError, HTTP errors, md5 mismatch, disk full ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"downloading {layout.title} from {layout.url} into {root} failed ({msg}); "
            f"download it manually and set dataset.root= to the folder containing {layout.subdir}"
        ) from None


def load_cifar(cfg: Mapping[str, Any], layout: CifarLayout) -> ArrayDataset:
    """Read (downloading first if allowed and needed) one CIFAR variant."""
    root_value = cfg_get(cfg, "root")
    if not root_value:
        raise DataError(f"dataset.root is not set; point it at a directory containing {layout.subdir}")
    root = Path(str(root_value)).expanduser()
    directory, guess, first_missing = find_directory(root, layout)
    if directory is None and bool(cfg_get(cfg, "download", False)):
        download(root, layout)
        directory, guess, first_missing = find_directory(root, layout)
        if directory is None:
            raise DataError(
                f"{layout.title} download finished but '{first_missing}' is still missing in {guess}"
            )
    if directory is None:
        raise DataError(
            f"{layout.title} file '{first_missing}' not found in {guess}; set dataset.download=true "
            f"to fetch it, or point dataset.root= at a directory containing {layout.subdir}"
        )
    train_x, train_y = _read_split(directory, layout.train_files, layout)
    test_x, test_y = _read_split(directory, layout.test_files, layout)
    norm = cfg_get(cfg, "normalization", "darts")
    if norm not in ("darts", "nb201"):
        raise DataError(f"dataset.normalization must be darts or nb201 for {layout.title}, got '{norm}'")
    mean, std = (layout.nb201_mean, layout.nb201_std) if norm == "nb201" else (layout.mean, layout.std)
    return from_arrays(layout.name, cfg, train_x, train_y, test_x, test_y, layout.num_classes, mean, std,
                       _read_class_names(directory, layout))


#: the registered variants: one layout record each, one loader for all
LAYOUTS = (CIFAR10, CIFAR100)
for _layout in LAYOUTS:
    DATASETS.add(_layout.name, partial(load_cifar, layout=_layout))

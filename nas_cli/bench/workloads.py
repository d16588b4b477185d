"""The benchmark workloads: which config each one composes, at which sizes, against which target.

A workload is configuration (overrides on top of ``conf/config.yaml``) plus a *kind* that says
which seam it drives (``search``: the search stepper; ``eval``: ``EvalTrainer.train_step``).
Adding a workload is one :func:`_add` call; the CLI, the table and the JSON pick it up by name.

Sizes: ``full`` holds the paper's sizes (the default on CUDA, or with ``--full``); ``small`` the
CPU sizes that keep a CPU run under a minute.  Dataset sizes are applied only when the composed
dataset is the embedded synthetic one, so ``dataset=cifar10 dataset.root=...`` works unchanged.
User overrides always come last and win.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from omegaconf import DictConfig

from nas_cli.errors import ConfigError
from nas_cli.registry import Registry

#: the device the issue's targets were set for
TARGET_DEVICE = "H100"
#: settings that select the eager reference path (``--compare``)
EAGER_OVERRIDES = ("runtime.fused=false", "runtime.cuda_graphs=false", "runtime.batchnorm=native",
                   "runtime.depthwise=native", "runtime.pointwise=native", "runtime.mixing=native", "runtime.conv1x1=conv",
                   "runtime.hard_forward=selected",
                   "runtime.compile=false")


@dataclass(frozen=True)
class Workload:
    name: str
    #: which seam is timed (a key of nas_cli.bench.prepare.PREPARERS)
    kind: str
    description: str
    #: selects method / space / regularisers on every device
    overrides: tuple[str, ...]
    #: paper sizes (default on CUDA, or --full)
    full: tuple[str, ...]
    #: CPU sizes (default on CPU)
    small: tuple[str, ...]
    #: synthetic-dataset sizes for full / small runs (skipped for real datasets)
    data_full: tuple[str, ...]
    data_small: tuple[str, ...]
    #: the issue's H100 step-time target (seconds)
    target_step_s: float
    #: the issue's H100 peak-memory target (GB), where one was set
    target_mem_gb: float | None = None


WORKLOADS: Registry[Workload] = Registry("benchmark workload")
#: table order (the registry itself iterates alphabetically)
ORDER: list[str] = []


def _add(w: Workload) -> None:
    WORKLOADS.add(w.name, w)
    ORDER.append(w.name)


_SEARCH_DATA_FULL = ("dataset.num_train=8192", "dataset.num_test=256")
_SEARCH_DATA_SMALL = ("dataset.num_train=512", "dataset.num_test=64", "dataset.image_size=16")
# arch steps from the first step on; the stepper is called with do_arch=True regardless
_SEARCH_COMMON = ("objective.warmup_epochs=0",)


def _search(name: str, method: str, space: str, description: str, batch: int, target_s: float,
            target_mem_gb: float | None = None) -> None:
    """A search-step workload: ``method`` on ``space`` at the paper batch size (demo sizes on CPU)."""
    _add(Workload(
        name=name, kind="search", description=description,
        overrides=(f"method={method}", f"search_space={space}", *_SEARCH_COMMON),
        full=("search_space.preset=paper", f"search.batch_size={batch}"),
        small=("search_space.preset=demo", "search.batch_size=32"),
        data_full=_SEARCH_DATA_FULL, data_small=_SEARCH_DATA_SMALL,
        target_step_s=target_s, target_mem_gb=target_mem_gb))


for _method in ("pcdarts", "gaea_pcdarts"):
    _search(f"{_method}_search", _method, "darts",
            f"{_method} search step: first-order arch step + weight step (DARTS space)", 256, 0.10, 10.0)

_add(Workload(
    name="eval_step", kind="eval",
    description="DARTS-space evaluation network training step (aux head, drop-path, cutout)",
    overrides=("train.auxiliary_weight=0.4", "train.drop_path=0.3", "train.cutout=16"),
    # the paper's 600-epoch CIFAR-10 retraining (50,000 images: 234,000 steps) compiles the whole
    # network under runtime.compile_scope=auto; the benchmark's smaller synthetic set would not reach
    # that threshold, so the full-size step names the scope the paper run takes (a user override wins)
    full=("train.init_channels=36", "train.layers=20", "train.batch_size=128", "runtime.compile_scope=model"),
    small=("train.init_channels=8", "train.layers=5", "train.batch_size=32"),
    # the CIFAR auxiliary head needs 32x32 inputs (8x8 at its cell), so CPU runs keep 32 px
    data_full=_SEARCH_DATA_FULL, data_small=("dataset.num_train=256", "dataset.num_test=64"),
    target_step_s=0.025))

for _method, _target in (("gaea_darts", 0.02), ("gdas", 0.015)):
    _search(f"nb201_{_method}", _method, "nb201", f"NAS-Bench-201 {_method} search step", 64, _target)


def select(names: Sequence[str] | None) -> list[Workload]:
    """The workloads named (``None``/empty: all, in table order); unknown names are a ConfigError."""
    if not names:
        return [WORKLOADS.get(n) for n in ORDER]
    chosen = [WORKLOADS.get(n) for n in names]
    if len({w.name for w in chosen}) != len(chosen):
        raise ConfigError("--workloads names a workload twice")
    return chosen


def _compose(overrides: Sequence[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` in-process; Hydra/OmegaConf errors become one-line ConfigErrors."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from nas_cli.cli import CONF_DIR  # also registers the schemas and resolvers

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        why = _first_line(exc)
        if exc.__cause__ is not None:  # e.g. "Error merging override k=v" <- "Value 'v' could not be converted"
            why += f": {_first_line(exc.__cause__)}"
        if "Could not override" in why:
            raise InapplicableOverride(f"bad override: {why}") from None
        raise ConfigError(f"bad override: {why}") from None


class InapplicableOverride(ConfigError):
    """An override names a key this workload's config does not have (e.g. ``search_space.layers``
    for an NB201 workload): with all workloads selected, the workload is skipped, not the run."""


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def compose_workload(w: Workload, device: str, full: bool, user: Sequence[str] = (),
                     extra: Sequence[str] = ()) -> DictConfig:
    """The config one workload runs with on ``device`` (already resolved: "cpu", "cuda", "cuda:N").

    Order: workload overrides, sizes, synthetic-data sizes (only for the synthetic dataset),
    ``extra`` (e.g. the eager-reference settings of --compare), then the user's overrides.
    """
    from nas_cli.config import validate

    small = device == "cpu" and not full
    sizes = w.small if small else w.full
    head = [*w.overrides, *sizes, f"runtime.device={device}"]
    tail = [*extra, *user]
    probe = _compose([*head, *tail])
    if str(probe.dataset.name) == "synthetic":
        cfg = _compose([*head, *(w.data_small if small else w.data_full), *tail])
    else:
        cfg = probe
    validate(cfg)
    from nas_cli.runtime.preflight import check_device_settings

    check_device_settings(cfg)  # a setting this device cannot run: one line before any workload runs
    from nas_cli.bench.prepare import PREPARERS

    PREPARERS.get(w.kind).check(cfg)
    return cfg

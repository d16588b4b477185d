"""Build one workload through the project's own seams and return a zero-argument step.

The step does exactly what the training loops do per iteration, data included: it draws the
next batch from the run's :class:`~nas_cli.data.BatchStream` (GPU-resident crop/flip/cutout) and
calls the search stepper (``build_search_stepper(run)(Batch(x, y), next_arch, do_arch=True)``) or
``EvalTrainer.train_step(x, y)``.  Nothing is re-implemented here, so the benchmark times the code
the search and the trainer actually run, and follows it when the fast paths land behind the seams.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig

from nas_cli.registry import Registry

#: the published genotype the eval workload trains by default (GAEA paper, CIFAR-10)
DEFAULT_GENOTYPE = "GAEA_PCDARTS_cifar10"


@dataclass
class Prepared:
    """A ready-to-time workload."""

    step: Callable[[], Any]
    device: torch.device
    #: images pushed through forward + backward per step (weight batch + architecture batch)
    images_per_step: int
    #: human-readable sizes actually used (from the built objects, so user overrides show)
    sizes: str
    #: name of the step executor ("eager", "cuda_graph", ...)
    stepper: str
    info: dict[str, Any] = field(default_factory=dict)
    #: keeps the temporary output directory alive while the workload runs
    keep: Any = None


@dataclass(frozen=True)
class Preparer:
    """How a workload kind is checked (cheap, before anything runs) and built."""

    check: Callable[[DictConfig], None]
    build: Callable[[DictConfig, str], Prepared]


PREPARERS: Registry[Preparer] = Registry("benchmark workload kind")


def prepare_search(cfg: DictConfig, genotype: str) -> Prepared:
    """One search step of ``run_search``'s inner loop, in its first architecture-updating epoch."""
    from nas_cli.objectives import Batch
    from nas_cli.stages.search import begin_epoch, build_run
    from nas_cli.stages.stepper import build_search_stepper

    tmp = tempfile.TemporaryDirectory(prefix="nas-bench-")
    run = build_run(cfg, Path(tmp.name))
    # the loop's per-epoch state for its first epoch with architecture steps
    begin_epoch(run, min(int(cfg.objective.warmup_epochs), int(cfg.search.epochs) - 1))
    stepper = build_search_stepper(run)
    batches = run.train_stream.forever()

    def next_arch() -> Batch:
        return Batch(*run.arch_stream.sample())

    def step() -> Any:
        return stepper(Batch(*next(batches)), next_arch, True)

    sp = cfg.search_space
    depth = f"L={sp.layers}" if "layers" in sp else f"N={sp.cells_per_stage}"
    bs, abs_ = run.train_stream.batch_size, run.arch_stream.batch_size
    px = int(run.test_data.x.shape[-1])
    return Prepared(step, run.device, bs + abs_, f"C={sp.init_channels} {depth} {px}px b{bs}+{abs_}",
                    str(getattr(stepper, "name", type(stepper).__name__)),
                    {"space": str(sp.name), "method": str(cfg.method.name), "objective": str(cfg.objective.name),
                     "batch": bs, "arch_batch": abs_, "image_size": px,
                     "extra_memory_bytes": run.objective.extra_memory_bytes(),
                     "channels_last": bool(run.execution["channels_last"]),
                     **({"hard_forward": run.hard_forward} if run.hard_forward else {})}, keep=tmp)


def prepare_eval(cfg: DictConfig, genotype: str) -> Prepared:
    """One ``EvalTrainer.train_step`` in the middle epoch (drop-path p * e / E with e = E // 2)."""
    from nas_cli.spaces.genotypes import get_genotype
    from nas_cli.stages.train_eval import EvalJob, EvalTrainer

    tmp = tempfile.TemporaryDirectory(prefix="nas-bench-")
    trainer = EvalTrainer(cfg, EvalJob(genotype, get_genotype(genotype), int(cfg.seed)), Path(tmp.name))
    t = cfg.train
    _, p = trainer.begin_epoch(int(t.epochs) // 2)  # lr, drop-path (device tensor under graphs), train mode
    batches = trainer.stream.forever()

    def step() -> Any:
        return trainer.train_step(*next(batches))

    bs, px = trainer.stream.batch_size, trainer.image_shape[-1]
    sizes = (f"C={t.init_channels} L={t.layers} {px}px b{bs} aux{float(t.auxiliary_weight):g} "
             f"dp{p:.2g}/{float(t.drop_path):g} cutout{t.cutout}")
    return Prepared(step, trainer.device, bs, sizes, "cuda_graph" if trainer.graphs else "eager",
                    {"genotype": genotype, "params": trainer.params, "batch": bs, "image_size": px,
                     "drop_path_now": p, "channels_last": trainer.channels_last,
                     "branch_streams": trainer.branch_streams, "compile_scope": trainer.compile_scope}, keep=tmp)


def _no_check(cfg: DictConfig) -> None:
    """Search configs are fully checked by nas_cli.config.validate already."""


def _check_eval(cfg: DictConfig) -> None:
    from nas_cli.stages.train_eval import validate_train

    validate_train(cfg)


PREPARERS.add("search", Preparer(_no_check, prepare_search))
PREPARERS.add("eval", Preparer(_check_eval, prepare_eval))

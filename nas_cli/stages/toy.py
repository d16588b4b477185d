"""``stage=toy``: the bilevel testbed (:mod:`nas_cli.testbed`) as a ``nas-search`` run.

``nas-search experiment=toy/<problem>`` selects this stage through the preset's defaults
list (``override /stage: toy``), so no code branches on problem names: the stage compares
``stage.objectives`` x ``stage.optimizers`` on the preset's problem, prints the results
table and writes the run directory

* ``summary.json`` -- ``stage: toy``, ``kind: comparison``, one row per pair (what
  ``nas-report``'s ``comparison`` kind reads);
* ``metrics/<optimizer>-<objective>.jsonl`` -- per-step series (upper/training loss, weight
  on the planted op, op weights, seconds per step);
* ``upper_loss_<problem>.png`` / ``.svg`` -- upper-level loss per step, one panel per optimizer;
* ``objectives_<problem>.md`` / ``.csv`` / ``.tex`` -- the printed table (``nas-report <run dir>``
  rebuilds the same table and figure under ``report/``).

Choosing a group on the command line narrows the comparison to it: ``objective=f2ba``
runs F2BA only, ``optimizer=exp_grad`` only EG, as one would expect from ``nas-search``;
without them the preset compares every objective with Adam and EG.  Every other override
(``objective.lambda0=10``, ``experiment.steps=100``, ``seed=1``) applies to every pair.
The image data pipeline is never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from nas_cli.config import StageConfig, register_schema
from nas_cli.errors import ConfigError
from nas_cli.report.objectives import DEFAULT_OBJECTIVES, DEFAULT_OPTIMIZERS, compare
from nas_cli.runtime.console import console
from nas_cli.runtime.io import atomic_write_json, atomic_write_jsonl

#: config groups that, chosen on the command line, select a single pair member
SELECTING_GROUPS = ("objective", "optimizer")
#: group choices the stage re-composes per pair (never passed through to every pair)
_RECOMPOSED = ("experiment", *SELECTING_GROUPS)


@dataclass
class ToyStageConfig(StageConfig):
    """Keys of ``stage=toy``."""

    #: objectives compared when ``objective=`` is not given on the command line
    objectives: List[str] = field(default_factory=lambda: list(DEFAULT_OBJECTIVES))
    #: architecture optimizers compared when ``optimizer=`` is not given on the command line
    optimizers: List[str] = field(default_factory=lambda: list(DEFAULT_OPTIMIZERS))
    #: weight-only steps at the initial architecture before the hypergradient check (closed-form problems)
    settle_steps: int = 300
    #: record the per-step series every N steps (the last step always)
    log_every: int = 1


register_schema("stage", "toy", ToyStageConfig)


def _key(override: str) -> str:
    """Config key of a command-line override (``+a.b=1`` -> ``a.b``, ``~objective`` -> ``objective``)."""
    return override.lstrip("+~").split("=", 1)[0].split("@", 1)[0]


def command_line_overrides() -> list[str]:
    """The task overrides of the running ``nas-search`` (empty outside a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return list(HydraConfig.get().overrides.task)


def plan(cfg: DictConfig, overrides: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(objectives, optimizers, overrides applied to every pair) for a toy run.

    A group chosen in ``overrides`` (``objective=f2ba``) means that one choice; otherwise the
    stage's list.  Group choices are dropped from the pass-through overrides because every
    pair is composed with its own."""
    chosen = {_key(o) for o in overrides}
    objectives = [str(cfg.objective.name)] if "objective" in chosen else [str(o) for o in cfg.stage.objectives]
    optimizers = [str(cfg.optimizer.name)] if "optimizer" in chosen else [str(o) for o in cfg.stage.optimizers]
    if not objectives or not optimizers:
        raise ConfigError("stage.objectives and stage.optimizers must not be empty")
    return objectives, optimizers, [o for o in overrides if _key(o) not in _RECOMPOSED]


def run_toy(cfg: DictConfig, out_dir: Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the comparison of ``cfg.experiment.problem``; ``overrides`` are the command line's
    (default: the running Hydra app's), re-applied to each pair's composed config."""
    from nas_cli.report import Run, emit
    from nas_cli.report.objectives import build_comparison
    from nas_cli.testbed import PROBLEMS

    ex = cfg.get("experiment") or {}
    if "problem" not in ex:
        raise ConfigError("stage=toy needs a testbed preset: nas-search experiment=toy/<problem> "
                          f"(one of: {', '.join(PROBLEMS.names())})")
    problem = str(ex["problem"])
    PROBLEMS.get(problem)
    st = cfg.stage
    if int(st.settle_steps) < 0 or int(st.log_every) < 1:
        raise ConfigError("stage.settle_steps must be >= 0 and stage.log_every >= 1")
    objectives, optimizers, passthrough = plan(cfg, command_line_overrides() if overrides is None else overrides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").unlink(missing_ok=True)  # a rerun stopped midway must not look complete
    ex_dict = OmegaConf.to_container(cfg.experiment, resolve=True)
    assert isinstance(ex_dict, dict)
    threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.runtime.num_threads or 1))  # tiny full-batch problems: one thread is fastest
    console.rule(f"testbed {problem}: {len(objectives)} objective(s) x {len(optimizers)} optimizer(s)")
    t0 = time.perf_counter()
    try:
        rows, histories = compare(problem, objectives, optimizers, None, passthrough, int(st.settle_steps),
                                  progress=True, experiment=ex_dict, log_every=int(st.log_every))
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        rel = f"metrics/{row['optimizer']}-{row['objective']}.jsonl"
        atomic_write_jsonl(out_dir / rel, histories[(row["optimizer"], row["objective"])])
        row["series"] = rel
    ref = PROBLEMS.get(problem)(ex_dict)  # the problem's answers (its data depend on experiment.* only)
    summary = {
        "status": "complete", "stage": "toy", "kind": "comparison", "problem": problem, "seed": int(cfg.seed),
        "tag": cfg.tag, "op_names": ref.op_names, "planted": ref.op_names[ref.planted],
        "optimum_upper_loss": ref.optimum(float(cfg.search.weight_decay)),
        "objectives": objectives, "optimizers": optimizers, "overrides": passthrough,
        "steps": max(int(h[-1]["step"]) for h in histories.values()),
        "device": "cpu", "wall_seconds": time.perf_counter() - t0, "experiment": ex_dict, "rows": rows,
    }
    # the table and upper-loss figure exactly as nas-report builds them from this run directory
    for rep in build_comparison([Run(out_dir, summary)], out_dir):
        emit(rep, out_dir)
    atomic_write_json(out_dir / "summary.json", summary)  # last: a summary marks a complete run
    return summary


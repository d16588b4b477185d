"""Stages 2 and 3 of the DARTS-space protocol and the pipeline chaining all three (training.md §1).

* ``eval`` (stage 2): train every candidate genotype from scratch on the training set
  minus a held-out part (``stage.val_portion``), optionally eliminate all but the
  ``stage.keep_top_k`` best after ``stage.prune_at_epoch`` epochs ([P] C.1.3), and
  select the best by held-out accuracy.  The test set is never read in stage 2.
* ``retrain`` (stage 3): train the selected genotype with ``stage.retrain_seeds`` seeds
  on the full training set; report test error mean ± std, best seed, params.
* ``pipeline``: search with ``stage.search_seeds`` seeds -> eval -> retrain, in
  ``search/seed<k>/``, ``eval/<candidate>/``, ``retrain/seed<k>/``.

Every stage reads only the previous stage's *files* and every job resumes from
its own checkpoint, so any stage can be re-run or resumed alone and finished
jobs are never redone.  Independent jobs run concurrently, one per GPU
(:mod:`nas_cli.runtime.jobs`).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import DictConfig, OmegaConf

from nas_cli.config import StageConfig, register_schema
from nas_cli.errors import ConfigError
from nas_cli.runtime.console import console
from nas_cli.runtime.distributed import env_world
from nas_cli.runtime.io import atomic_write_json, read_jsonl
from nas_cli.runtime.jobs import Job, run_jobs
from nas_cli.runtime.preflight import check_device_settings
from nas_cli.spaces.genotypes import Genotype, get_genotype
from nas_cli.stages.train_eval import EvalJob, job_fingerprint, train_eval_network, validate_train


@dataclass
class ProtocolStageConfig(StageConfig):
    """Keys of the ``eval``, ``retrain`` and ``pipeline`` stages (one schema: the pipeline uses them all)."""

    #: stage 2 input: a directory holding finished search run dirs (searched recursively for summary.json)
    search_dir: Optional[str] = None
    #: stage 2 input: explicit genotypes (published names like darts_v2, or genotype.json / text files)
    archs: List[str] = field(default_factory=list)
    #: pipeline: number of stage-1 search seeds (seed, seed+1, ...)
    search_seeds: int = 5
    #: stage 2: fraction of the training set held out to rank candidates (the test set is never used)
    val_portion: float = 0.1
    #: stage 2 early elimination: train all candidates this many epochs, continue only the best (null = off)
    prune_at_epoch: Optional[int] = 20
    keep_top_k: int = 3
    #: stage 2 ranking metric on the held-out split: val_acc (higher is better) or val_loss (lower)
    metric: str = "val_acc"
    #: stage 3 input: a genotype name/path; default: the selection of stage.eval_dir (or the pipeline's eval/)
    arch: Optional[str] = None
    eval_dir: Optional[str] = None
    #: stage 3: number of training seeds (seed, seed+1, ...)
    retrain_seeds: int = 10
    #: concurrent jobs: auto (one per visible GPU, in-process on CPU), none, or a worker count
    jobs: str = "auto"


# The search stage accepts (and ignores) these keys too, so a preset such as experiment=demo can size
# the pipeline without knowing which stage runs.
for _name in ("search", "eval", "retrain", "pipeline"):
    register_schema("stage", _name, ProtocolStageConfig)

METRICS = {"val_acc": True, "val_loss": False}  # metric -> higher is better


def _validate_stage(cfg: DictConfig) -> None:
    st = cfg.stage
    validate_train(cfg)
    check_device_settings(cfg)  # before any header or directory: a wrong device setting leaves nothing
    if st.metric not in METRICS:
        raise ConfigError(f"stage.metric must be one of {', '.join(METRICS)}, got '{st.metric}'")
    if not 0 < float(st.val_portion) < 1:
        raise ConfigError(f"stage.val_portion must be in (0, 1), got {st.val_portion}")
    if st.prune_at_epoch is not None and int(st.prune_at_epoch) < 1:
        raise ConfigError(f"stage.prune_at_epoch must be >= 1 or null, got {st.prune_at_epoch}")
    for key in ("keep_top_k", "retrain_seeds", "search_seeds"):
        if int(st[key]) < 1:
            raise ConfigError(f"stage.{key} must be >= 1, got {st[key]}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "arch"


# ---------------------------------------------------------------------------- candidates

def collect_candidates(cfg: DictConfig, search_dir: Path | None = None) -> list[tuple[str, Genotype]]:
    """(name, genotype) from finished search runs under ``search_dir`` and/or ``stage.archs``.

    Identical genotypes are trained once (the first name wins).
    """
    found: list[tuple[str, Genotype]] = []
    root = search_dir or (Path(cfg.stage.search_dir).expanduser() if cfg.stage.search_dir else None)
    if root is not None:
        if not root.is_dir():
            raise ConfigError(f"stage.search_dir {root} is not a directory")
        for path in sorted(root.rglob("summary.json")):
            s = json.loads(path.read_text())
            if s.get("stage") != "search" or s.get("status") != "complete":
                continue
            rel = path.parent.relative_to(root)
            name = _slug(str(rel)) if str(rel) != "." else _slug(f"seed{s.get('seed', 0)}")
            found.append((name, Genotype.from_json(s["genotype"])))
        if not found:
            raise ConfigError(f"no finished search runs (summary.json with stage=search) under {root}")
    for spec in cfg.stage.archs:
        found.append((_slug(Path(str(spec)).stem if Path(str(spec)).suffix else str(spec)), get_genotype(str(spec))))
    if not found:
        raise ConfigError("stage 2 has no candidates: set stage.search_dir=<dir of search runs> or stage.archs=[...]")
    unique: dict[Genotype, str] = {}
    names: set[str] = set()
    out = []
    for name, geno in found:
        if geno in unique:
            console.print(f"[dim]{name}: same genotype as {unique[geno]}; trained once[/]")
            continue
        base, i = name, 1
        while name in names:
            i += 1
            name = f"{base}-{i}"
        unique[geno] = name
        names.add(name)
        out.append((name, geno))
    return out


# ---------------------------------------------------------------------------- selection

def metric_at(rows: list[dict[str, Any]], metric: str, epoch: int | None = None) -> float | None:
    """The metric in the row of ``epoch`` (None = the last row)."""
    if not rows:
        return None
    row = rows[-1] if epoch is None else next((r for r in rows if r["epoch"] == epoch), None)
    return None if row is None else row.get(metric)


def rank_candidates(records: dict[str, list[dict[str, Any]]], metric: str,
                    epoch: int | None = None) -> list[tuple[str, float]]:
    """Candidates ordered best first by a *validation* metric (``val_acc``/``val_loss``) at ``epoch``.

    Only held-out metrics are accepted: stage-2 selection must never see the test set.
    """
    if metric not in METRICS:
        raise ConfigError(f"stage 2 ranks by a held-out metric ({', '.join(METRICS)}), not '{metric}'")
    higher = METRICS[metric]
    scored = []
    for name, rows in records.items():
        v = metric_at(rows, metric, epoch)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise ConfigError(f"candidate {name} has no {metric} at epoch {epoch or 'last'}")
        scored.append((name, float(v)))
    return sorted(scored, key=lambda t: (-t[1] if higher else t[1], t[0]))


# ---------------------------------------------------------------------------- job functions
# (module-level so worker subprocesses can import them by name)

def search_job(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    from nas_cli.stages.search import run_search

    return run_search(cfg, out_dir)


def eval_job(cfg: DictConfig, out_dir: Path, job: dict[str, Any], until: int | None = None) -> dict[str, Any]:
    return train_eval_network(cfg, EvalJob.from_json(job), out_dir, until=until)


def _rows(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / "metrics.jsonl"
    return read_jsonl(path) if path.is_file() else []


# ---------------------------------------------------------------------------- stage 2

def run_eval_stage(cfg: DictConfig, out_dir: Path,
                   candidates: list[tuple[str, Genotype]] | None = None) -> dict[str, Any]:
    """Stage 2: train candidates on train minus hold-out; select by held-out metric; write selection.json."""
    _validate_stage(cfg)
    out_dir = Path(out_dir)
    st = cfg.stage
    cands = candidates if candidates is not None else collect_candidates(cfg)
    epochs = int(cfg.train.epochs)
    jobs = {name: EvalJob(name, geno, int(cfg.seed), float(st.val_portion), False, "eval") for name, geno in cands}
    fps = {name: job_fingerprint(cfg, j)[0] for name, j in jobs.items()}
    prune = st.prune_at_epoch
    k = int(st.keep_top_k)
    early = prune is not None and int(prune) < epochs and len(jobs) > k
    console.rule(f"stage 2: evaluate {len(jobs)} candidate(s)"
                 + (f", keep top {k} after epoch {prune}" if early else ""))

    def launch(names: list[str], until: int | None) -> None:
        run_jobs([Job(f"eval/{n}", "nas_cli.stages.protocol:eval_job", cfg, out_dir / n,
                      {"job": jobs[n].to_json(), "until": until}) for n in names], st.jobs, cfg.runtime.device)

    survivors = list(jobs)
    first_round: list[tuple[str, float]] = []
    if early:
        launch(survivors, int(prune))
        first_round = rank_candidates({n: _rows(out_dir / n) for n in survivors}, st.metric, int(prune))
        survivors = [n for n, _ in first_round[:k]]
    launch(survivors, None)
    final = rank_candidates({n: _rows(out_dir / n) for n in survivors}, st.metric, None)
    best = final[0][0]
    summaries = {n: json.loads((out_dir / n / "summary.json").read_text()) for n in survivors}
    selection = {
        "status": "complete", "stage": "eval", "kind": "stage", "search_space": "darts",
        "dataset": cfg.dataset.name, "metric": st.metric, "val_portion": float(st.val_portion),
        "epochs": epochs, "prune_at_epoch": prune if early else None, "keep_top_k": k if early else None,
        "selected": best, "genotype": jobs[best].genotype.to_json(),
        "ranking": [{"name": n, st.metric: v, "params": summaries[n]["params"]} for n, v in final],
        "eliminated": [{"name": n, st.metric: v} for n, v in first_round[k:]] if early else [],
        "candidates": {n: {"fingerprint": fps[n], "genotype": jobs[n].genotype.to_json()} for n in jobs},
        "gpu_hours": sum(json.loads((out_dir / n / "summary.json").read_text())["gpu_hours"] for n in survivors),
    }
    if env_world().is_main:  # under torchrun every rank computes this; rank 0 writes it
        atomic_write_json(out_dir / "selection.json", selection)
        atomic_write_json(out_dir / "summary.json", selection)
    console.print(f"[green]stage 2 selected[/] {best} ({st.metric} {final[0][1]:.4f}); "
                  f"ranking: {', '.join(f'{n} {v:.4f}' for n, v in final)}")
    return selection


# ---------------------------------------------------------------------------- stage 3

def _retrain_input(cfg: DictConfig, eval_dir: Path | None) -> tuple[str, Genotype]:
    st = cfg.stage
    if st.arch:
        spec = str(st.arch)
        return _slug(Path(spec).stem if Path(spec).suffix else spec), get_genotype(spec)
    d = eval_dir or (Path(st.eval_dir).expanduser() if st.eval_dir else None)
    if d is None:
        raise ConfigError("stage 3 needs a genotype: stage.arch=<name or file> or stage.eval_dir=<stage-2 dir>")
    sel = d / "selection.json"
    if not sel.is_file():
        raise ConfigError(f"{sel} not found: run stage 2 (stage=eval) first or set stage.arch")
    data = json.loads(sel.read_text())
    return data["selected"], Genotype.from_json(data["genotype"])


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), as the papers report ± std."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_retrain_stage(cfg: DictConfig, out_dir: Path, eval_dir: Path | None = None) -> dict[str, Any]:
    """Stage 3: the chosen genotype with several seeds on the full training set; test error mean ± std."""
    _validate_stage(cfg)
    out_dir = Path(out_dir)
    name, geno = _retrain_input(cfg, eval_dir)
    seeds = [int(cfg.seed) + i for i in range(int(cfg.stage.retrain_seeds))]
    console.rule(f"stage 3: retrain {name} with {len(seeds)} seed(s)")
    run_jobs([Job(f"retrain/seed{s}", "nas_cli.stages.protocol:eval_job", cfg, out_dir / f"seed{s}",
                  {"job": EvalJob(name, geno, s, 0.0, True, "retrain").to_json(), "until": None})
              for s in seeds], cfg.stage.jobs, cfg.runtime.device)
    runs = [json.loads((out_dir / f"seed{s}" / "summary.json").read_text()) for s in seeds]
    errors = [r["test_error"] for r in runs]
    mean, std = mean_std(errors)
    summary = {
        "status": "complete", "stage": "retrain", "kind": "stage", "search_space": "darts",
        "dataset": cfg.dataset.name, "arch": name, "genotype": geno.to_json(), "seeds": seeds,
        "test_errors": errors, "test_error_mean": mean, "test_error_std": std, "test_error_best": min(errors),
        "params": runs[0]["params"], "multiply_adds": runs[0]["multiply_adds"], "epochs": int(cfg.train.epochs),
        "gpu_hours": sum(r["gpu_hours"] for r in runs), "cpu_hours": sum(r["cpu_hours"] for r in runs),
    }
    if env_world().is_main:
        atomic_write_json(out_dir / "summary.json", summary)
    console.print(f"[green]stage 3[/] {name}: test error {mean:.2f} ± {std:.2f} % (best {min(errors):.2f}), "
                  f"{summary['params'] / 1e6:.2f}M params")
    return summary


# ---------------------------------------------------------------------------- pipeline

def _search_cfg(cfg: DictConfig, seed: int) -> DictConfig:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    data["seed"] = seed
    data["stage"] = {"name": "search"}
    return OmegaConf.create(data)


def run_pipeline(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Search (``stage.search_seeds`` seeds) -> stage 2 -> stage 3, each from the previous stage's files."""
    _validate_stage(cfg)
    out_dir = Path(out_dir)
    st = cfg.stage
    seeds = [int(cfg.seed) + i for i in range(int(st.search_seeds))]
    console.rule(f"stage 1: search {cfg.method.name} with {len(seeds)} seed(s)")
    run_jobs([Job(f"search/seed{s}", "nas_cli.stages.protocol:search_job", _search_cfg(cfg, s),
                  out_dir / "search" / f"seed{s}") for s in seeds], st.jobs, cfg.runtime.device)
    searches = [json.loads((out_dir / "search" / f"seed{s}" / "summary.json").read_text()) for s in seeds]
    cands = collect_candidates(cfg, out_dir / "search")  # plus stage.archs, e.g. a published baseline
    selection = run_eval_stage(cfg, out_dir / "eval", cands)
    retrain = run_retrain_stage(cfg, out_dir / "retrain", eval_dir=out_dir / "eval")
    hours = [s.get("search_gpu_hours", 0.0) or s.get("search_cpu_hours", 0.0) for s in searches]
    summary = {
        "status": "complete", "stage": "pipeline", "kind": "stage", "search_space": cfg.search_space.name,
        "dataset": cfg.dataset.name, "method": cfg.method.name, "tag": cfg.tag, "search_seeds": seeds,
        "search_hours_per_run": statistics.fmean(hours), "search_on_gpu": any(s.get("search_gpu_hours") for s in searches),
        "selected": selection["selected"], "genotype": selection["genotype"],
        "test_error_mean": retrain["test_error_mean"], "test_error_std": retrain["test_error_std"],
        "test_error_best": retrain["test_error_best"], "params": retrain["params"],
        "retrain_seeds": retrain["seeds"],
    }
    if env_world().is_main:
        atomic_write_json(out_dir / "summary.json", summary)
        from nas_cli.report import print_report

        print_report(out_dir)  # tables + plots in <run dir>/report/
    return summary

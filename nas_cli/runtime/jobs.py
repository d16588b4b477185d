"""Job parallelism: independent runs (search seeds, stage-2 candidates, retrain seeds) side by side.

A :class:`Job` names a function ``"module:function"`` called as
``fn(cfg, out_dir, **kwargs)``.  :func:`run_jobs` runs a list of them

* **in this process, one after another** when there is at most one worker
  (CPU, a single GPU, or under ``torchrun`` where each job already spans all
  ranks) -- no subprocess overhead, exceptions propagate as usual; or
* **in worker subprocesses**, one per slot, each slot pinned to one GPU with
  ``CUDA_VISIBLE_DEVICES`` (``stage.jobs=auto`` = one slot per visible GPU).

Workers receive the resolved config as JSON and write their own output files;
the parent only reads those files afterwards, so a killed pipeline resumes by
rerunning it (every job resumes from its own checkpoint).  Each worker's
output goes to ``<out_dir>/job.log``.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from nas_cli.errors import ConfigError, UserError
from nas_cli.runtime.console import console
from nas_cli.runtime.io import atomic_write_json


@dataclass
class Job:
    name: str
    fn: str
    cfg: DictConfig
    out_dir: Path
    kwargs: dict[str, Any] = field(default_factory=dict)


class JobFailed(UserError):
    """A worker subprocess exited with an error (its log names the cause)."""

    exit_code = 5


def _resolve_fn(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def visible_gpus() -> list[str]:
    """GPU ids as CUDA_VISIBLE_DEVICES values (respecting an existing mask)."""
    if not torch.cuda.is_available():
        return []
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask:
        ids = [m.strip() for m in mask.split(",") if m.strip()]
        return ids[: torch.cuda.device_count()]
    return [str(i) for i in range(torch.cuda.device_count())]


def plan_slots(setting: Any, device_spec: str) -> list[str | None]:
    """One entry per concurrent worker: the GPU it gets (None = inherit). [] means run in-process.

    ``setting``: "auto" (one worker per visible GPU when running on CUDA, else in-process),
    an int N (N workers; GPUs assigned round-robin), or 1/0/"none" (in-process).
    """
    from nas_cli.runtime.distributed import env_world

    if env_world().enabled:
        return []
    spec = str(device_spec).lower()
    gpus = visible_gpus() if spec in ("auto", "cuda") else []
    s = str(setting).lower()
    if s == "auto":
        n = len(gpus) if len(gpus) > 1 else 0
    elif s in ("none", "0", "1", "sequential"):
        n = 0
    else:
        try:
            n = int(s)
        except ValueError:
            raise ConfigError(f"stage.jobs must be auto, none or a number of workers, got '{setting}'") from None
        if n < 1:
            raise ConfigError(f"stage.jobs must be >= 1, got {n}")
        n = 0 if n == 1 else n
    if n == 0:
        return []
    return [gpus[i % len(gpus)] if gpus else None for i in range(n)]


def _worker_cfg(cfg: DictConfig, gpu: str | None) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    if gpu is not None and str(data.get("runtime", {}).get("device", "auto")).startswith("cuda"):
        data["runtime"]["device"] = "cuda"  # the worker sees exactly one GPU
    return data


def _run_subprocess(job: Job, gpu: str | None) -> Any:
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = out / ".job_spec.json", out / ".job_result.json"
    result_path.unlink(missing_ok=True)
    atomic_write_json(spec_path, {"name": job.name, "fn": job.fn, "cfg": _worker_cfg(job.cfg, gpu),
                                  "out_dir": str(out), "kwargs": job.kwargs})
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    with open(out / "job.log", "ab") as log:
        proc = subprocess.run([sys.executable, "-m", "nas_cli.runtime.jobs", str(spec_path)], env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = (out / "job.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise JobFailed(f"job {job.name} failed (exit {proc.returncode}); see {out / 'job.log'}: "
                        + " | ".join(tail))
    return json.loads(result_path.read_text()) if result_path.is_file() else None


def run_jobs(jobs: Sequence[Job], setting: Any = "auto", device_spec: str = "auto") -> list[Any]:
    """Run ``jobs``; returns their results in order (a worker's result is its JSON return value)."""
    slots = plan_slots(setting, device_spec)
    if not slots or len(jobs) <= 1 and all(s is None for s in slots):
        return [_resolve_fn(j.fn)(j.cfg, Path(j.out_dir), **j.kwargs) for j in jobs]
    free: Queue[str | None] = Queue()
    for s in slots:
        free.put(s)
    lock = threading.Lock()

    def one(job: Job) -> Any:
        gpu = free.get()
        try:
            with lock:
                console.print(f"[cyan]job[/] {job.name} -> {'GPU ' + gpu if gpu is not None else 'worker'}"
                              f" ({job.out_dir})")
            return _run_subprocess(job, gpu)
        finally:
            free.put(gpu)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures = [pool.submit(one, j) for j in jobs]
        errors = [f.exception() for f in futures]
        first = next((e for e in errors if e is not None), None)
        if first is not None:
            raise first
        return [f.result() for f in futures]


def _worker_main(spec_path: str) -> int:
    from nas_cli.runtime.console import error_line

    spec = json.loads(Path(spec_path).read_text())
    import nas_cli.cli  # noqa: F401  (registers resolvers/schemas used by plugin code)

    cfg = OmegaConf.create(spec["cfg"])
    out = Path(spec["out_dir"])
    try:
        result = _resolve_fn(spec["fn"])(cfg, out, **spec["kwargs"])
    except UserError as exc:
        error_line(str(exc))
        return exc.exit_code
    atomic_write_json(out / ".job_result.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))

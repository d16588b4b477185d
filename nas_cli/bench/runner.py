"""Run one workload variant, in this process or in a fresh one, and return its result row.

Fresh subprocesses are the default: each workload then starts with an empty CUDA caching
allocator, untouched cuDNN/autotuning caches and its own peak counters, so one workload's
memory cannot inflate another's.  The child is ``python -m nas_cli.bench.worker SPEC OUT``;
it writes its row atomically to OUT.  A failing workload becomes a row with ``error`` set, so
the rest of the table is still measured.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas_cli.bench.measure import time_steps
from nas_cli.bench.prepare import DEFAULT_GENOTYPE, PREPARERS
from nas_cli.bench.workloads import TARGET_DEVICE, WORKLOADS, compose_workload
from nas_cli.runtime.compile import take_fallbacks


@dataclass
class RunSpec:
    """Everything a (child) process needs to measure one workload variant."""

    workload: str
    #: resolved device: "cpu", "cuda", "cuda:N"
    device: str
    steps: int
    warmup: int
    full: bool = False
    #: user overrides (applied last)
    overrides: list[str] = field(default_factory=list)
    #: overrides of this variant (e.g. the eager reference of --compare), before the user's
    extra: list[str] = field(default_factory=list)
    variant: str = "default"
    genotype: str = DEFAULT_GENOTYPE

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunSpec":
        return cls(**d)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def run_in_process(spec: RunSpec) -> dict[str, Any]:
    """Compose, build, time; the result row (see docs in nas_cli/bench/__init__.py)."""
    w = WORKLOADS.get(spec.workload)
    cfg = compose_workload(w, spec.device, spec.full, spec.overrides, spec.extra)
    gc.collect()
    if torch.cuda.is_available() and spec.device.startswith("cuda"):
        torch.cuda.empty_cache()
    take_fallbacks()  # forget an earlier workload's
    prep = PREPARERS.get(w.kind).build(cfg, spec.genotype)
    try:
        timing, peak_gb, mem_kind = time_steps(prep.step, prep.device, spec.steps, spec.warmup)
    finally:
        if prep.keep is not None:
            prep.keep.cleanup()
    rt = cfg.runtime
    return {
        "workload": w.name, "variant": spec.variant, "description": w.description,
        "device": device_name(prep.device), "sizes": prep.sizes, "full_size": spec.full or spec.device != "cpu",
        "dataset": str(cfg.dataset.name), "steps": spec.steps, "warmup": spec.warmup,
        **timing.as_dict(),
        "images_per_step": prep.images_per_step, "images_per_s": prep.images_per_step / timing.median,
        "peak_mem_gb": peak_gb, "peak_mem_kind": mem_kind,
        "target_device": TARGET_DEVICE, "target_step_s": w.target_step_s, "target_mem_gb": w.target_mem_gb,
        "precision": str(rt.precision), "fused": bool(rt.fused),
        "channels_last": None,  # what auto resolved to, from prep.info below
        # a bare `runtime.cuda_graphs=false` override arrives as the bool False, hence lower()
        "cuda_graphs": str(rt.cuda_graphs).lower(), "batchnorm": str(rt.batchnorm).lower(),
        "depthwise": str(rt.depthwise).lower(),
        "pointwise": str(rt.pointwise).lower(),
        "mixing": str(rt.mixing).lower(), "conv1x1": str(rt.conv1x1).lower(), "compile": str(rt.compile).lower(),
        "stepper": prep.stepper,
        "overrides": [*spec.extra, *spec.overrides], **prep.info, "error": None,
        # functions torch.compile gave up on: those ran eagerly, so the timing is not the compiled step's
        "compile_fallbacks": take_fallbacks(),
    }


def _child_env() -> dict[str, str]:
    """The child must import this very nas_cli (a worktree checkout, not some installed copy)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("MPLBACKEND", "Agg")
    return env


def error_row(spec: RunSpec, message: str) -> dict[str, Any]:
    w = WORKLOADS.get(spec.workload)
    return {"workload": spec.workload, "variant": spec.variant, "error": message,
            "target_device": TARGET_DEVICE, "target_step_s": w.target_step_s, "target_mem_gb": w.target_mem_gb,
            "overrides": [*spec.extra, *spec.overrides]}


def run_in_subprocess(spec: RunSpec) -> dict[str, Any]:
    """Measure ``spec`` in a fresh interpreter; failures come back as an error row."""
    with tempfile.TemporaryDirectory(prefix="nas-bench-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "row.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        proc = subprocess.run([sys.executable, "-m", "nas_cli.bench.worker", str(spec_path), str(out_path)],
                              env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode == 0 and out_path.is_file():
            return json.loads(out_path.read_text())
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {proc.returncode}"
        row = error_row(spec, why.removeprefix("error: "))
        row["error_log"] = proc.stderr.splitlines()[-60:]  # the child's traceback, for the JSON only
        return row

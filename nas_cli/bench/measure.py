"""Timing and peak-memory measurement of a zero-argument step.

Every timed step ends with a device synchronisation before the clock is read, so asynchronous
CUDA work is charged to the step that queued it.  Warm-up steps (cuDNN autotuning, CUDA-graph
capture, allocator growth) are excluded from the times (on CUDA not from the memory peak).

Memory: on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` before the
warm-up steps (so a CUDA graph's capture, whose activations stay reserved for every replay, counts) (model, optimizer state and the device-resident dataset included, as
they are live).  On CPU the peak resident-set growth over the timed steps: Linux's ``VmHWM`` is
reset through ``/proc/self/clear_refs`` and compared with ``VmRSS`` before the first timed step;
where that is unavailable the reading is ``None``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

GB = 1e9


@dataclass
class Timing:
    times: list[float]
    #: wall time of the untimed warm-up steps (eager warm-up, graph capture, compilation)
    warmup_s: float = 0.0

    @property
    def median(self) -> float:
        return float(statistics.median(self.times))

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.times))

    def as_dict(self) -> dict[str, Any]:
        return {"step_s_median": self.median, "step_s_mean": self.mean, "step_s_min": min(self.times),
                "step_s_max": max(self.times), "step_times_s": list(self.times), "warmup_s": self.warmup_s}


class CudaPeak:
    kind = "cuda_max_allocated"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)

    def read_gb(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / GB


class RssDeltaPeak:
    """Peak RSS growth of this process since :meth:`start` (Linux); ``None`` elsewhere."""

    kind = "cpu_peak_rss_delta"
    _status = Path("/proc/self/status")

    def __init__(self) -> None:
        self.base_kb: int | None = None

    def _field_kb(self, name: str) -> int | None:
        try:
            for line in self._status.read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def start(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.base_kb = None
            return
        self.base_kb = self._field_kb("VmRSS")

    def read_gb(self) -> float | None:
        hwm = self._field_kb("VmHWM")
        if self.base_kb is None or hwm is None:
            return None
        return max(hwm - self.base_kb, 0) * 1024 / GB


def memory_probe(device: torch.device) -> CudaPeak | RssDeltaPeak:
    return CudaPeak(device) if device.type == "cuda" else RssDeltaPeak()


def time_steps(step: Callable[[], Any], device: torch.device, steps: int, warmup: int) -> tuple[Timing, float | None, str]:
    """Run ``warmup`` untimed then ``steps`` timed steps; returns (timing, peak GB or None, memory kind)."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    probe = memory_probe(device)
    if device.type == "cuda":
        # the peak spans warm-up too: a CUDA graph's activations live in its private pool, allocated
        # while it is captured (a warm-up step), and stay reserved for every replay
        probe.start()
    t_warm = time.perf_counter()
    for _ in range(warmup):
        step()
    sync()
    warmup_s = time.perf_counter() - t_warm
    if device.type != "cuda":
        probe.start()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return Timing(times, warmup_s), probe.read_gb(), probe.kind

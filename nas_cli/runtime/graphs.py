"""Whole-step CUDA-graph replay.

NAS training steps are launch-bound on modern GPUs: tens of thousands of small
kernels per step, each paying Python dispatch and launch latency.  Capturing
the *entire* step (forward, backward, gradient clipping, optimizer update) in
one CUDA graph and replaying it removes that overhead without changing a single
arithmetic operation: the graph replays exactly the kernels the eager step ran.

What makes a step capturable (and what the callers guarantee):

* static shapes: the batch is copied into fixed input buffers before replay;
* no host synchronisation (``.item()``, ``.tolist()``, data-dependent Python
  branches) inside the step;
* nothing Python-side that changes between steps may be baked into the graph:
  learning rates and drop-path probabilities live in device tensors that are
  updated in place (see :func:`device_lr`), never Python floats;
* optimizer state (momentum buffers, Adam moments) exists before capture, so
  the "first step" branches are not what gets recorded.  :class:`GraphedStep`
  therefore runs ``warmup`` ordinary eager steps first (they are real training
  steps, not thrown away), the last one on a side stream as CUDA graphs require.

Random numbers drawn inside a graph (drop-path masks) come from the CUDA
generator, whose Philox offset PyTorch advances on every replay, so every
replay draws fresh numbers -- from the same distribution as the eager path,
though not bit-identical to it.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import Tensor

StepFn = Callable[..., Sequence[Tensor]]


class GraphedStep:
    """Call ``fn(*inputs)`` eagerly ``warmup`` times, then capture it once and replay the graph.

    ``fn`` takes tensors and returns a sequence of tensors (the step's outputs,
    e.g. loss and number correct).  On replay the inputs are copied into the
    captured buffers and the *same* output tensors are returned each time:
    consume them (e.g. accumulate on device) before the next call.

    ``pool`` shares the graph memory pool with other :class:`GraphedStep`
    objects that are never replayed concurrently (e.g. the weight-only and the
    weight+architecture search steps), so their temporaries occupy the same memory.
    """

    def __init__(self, fn: StepFn, warmup: int = 2, pool: Any = None) -> None:
        self.fn = fn
        self.warmup = max(int(warmup), 0)
        self.pool = pool
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_in: list[Tensor] = []
        self.static_out: tuple[Tensor, ...] = ()

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return tuple(warm_call(lambda: self.fn(*inputs), side_stream=self.calls == self.warmup))
        if self.graph is None:
            self._capture(inputs)
        assert self.graph is not None
        for buf, x in zip(self.static_in, inputs):
            buf.copy_(x, non_blocking=True)
        self.graph.replay()
        return self.static_out

    def _capture(self, inputs: Sequence[Tensor]) -> None:
        # input buffers live outside the graph pool: they persist across replays of any graph
        self.static_in = [x.detach().clone() for x in inputs]
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.static_out = tuple(self.fn(*self.static_in))
        self.graph = graph
        # Capture records kernels without running them: the replay in __call__ performs this step.


def warm_call(fn: Callable[[], Any], side_stream: bool) -> Any:
    """Run an eager warm-up step; the last one before a capture runs on a side stream, so
    lazy per-stream initialisation (cuBLAS/cuDNN workspaces) does not happen inside the capture."""
    if not side_stream:
        return fn()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = fn()
    torch.cuda.current_stream().wait_stream(side)
    return out


def device_lr(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Hold every param group's learning rate in a 0-dim device tensor (updated in place by
    ``set_lr``), so a captured optimizer step reads the current value on each replay."""
    for g in opt.param_groups:
        lr = g["lr"]
        if not (isinstance(lr, Tensor) and _same_device(lr.device, device)):
            g["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:0`` are the same device for our purposes (torch.device compares them unequal).

    Getting this wrong replaces a captured graph's lr tensor with a fresh one every step: the graph
    then reads freed memory."""
    if a.type != b.type:
        return False
    current = torch.cuda.current_device() if a.type == "cuda" else 0
    return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)


def graph_weight_optimizer(params: Any, lr: float, momentum: float, weight_decay: float, nesterov: bool,
                           device: torch.device) -> torch.optim.Optimizer:
    """SGD whose step is capturable with a changing learning rate.

    The fused CUDA kernel accepts the learning rate as a device tensor (the
    foreach implementation converts it to a Python number, a host sync that a
    graph cannot contain); the update rule is the same SGD with momentum and
    weight decay as the reference optimizer.
    """
    opt = torch.optim.SGD(params, lr=torch.tensor(float(lr), device=device), momentum=momentum,
                          weight_decay=weight_decay, nesterov=nesterov, fused=True)
    return opt


def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Switch optimizers that keep a step counter (Adam) to their capturable variant."""
    for g in opt.param_groups:
        if "capturable" in g:
            g["capturable"] = True

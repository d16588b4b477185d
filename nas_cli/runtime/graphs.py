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
  updated in place (see :func:`weight_sgd`), never Python floats;
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

import gc
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from nas_cli.errors import ConfigError

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
        # no Python garbage collection inside the capture: a collection there can free CUDA objects of
        # earlier runs in this process (their graphs, events), calls a capture must not contain
        # (torch.cuda.graph collects once on entry)
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                self.static_out = tuple(self.fn(*self.static_in))
        finally:
            if gc_was_enabled:
                gc.enable()
        self.graph = graph
        # Capture records kernels without running them: the replay in __call__ performs this step.


class GraphedForward:
    """An inference forward ``fn(x, weights) -> output`` replayed from CUDA graphs, one per input shape.

    A search validates on the whole architecture split every epoch (GAEA PC-DARTS on CIFAR-10: 98
    eval-mode forwards of 256 images); eagerly those are host-bound like the training step was.
    ``weights`` (a dict of tensors, e.g. the epoch's selected architecture) is copied into static
    buffers with ``x``, so a new selection replays the same graph.  At most ``max_graphs`` shapes get
    a graph (full batches and the last partial one); others run eagerly.  As with
    :class:`GraphedStep`, the returned tensor is reused: consume it before the next call.
    """

    def __init__(self, fn: Callable[[Tensor, dict[str, Tensor]], Tensor], max_graphs: int = 3) -> None:
        self.fn = fn
        self.max_graphs = max_graphs
        self.graphs: dict[tuple[Any, ...], GraphedStep] = {}
        self._pool = torch.cuda.graph_pool_handle()

    def __call__(self, x: Tensor, weights: dict[str, Tensor]) -> Tensor:
        names = tuple(weights)
        key = (tuple(x.shape), x.dtype, tuple((k, tuple(weights[k].shape), weights[k].dtype) for k in names))
        step = self.graphs.get(key)
        if step is None:
            if len(self.graphs) >= self.max_graphs:
                return self.fn(x, dict(weights))
            step = self.graphs[key] = GraphedStep(
                lambda xs, *ws: (self.fn(xs, dict(zip(names, ws))),), warmup=1, pool=self._pool)
        return step(x, *(weights[k] for k in names))[0]


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


#: why a machine without CUDA cannot replay steps (the reason every resolver gives)
NO_CUDA = "CUDA graphs need a CUDA device"


def graphs_enabled(mode: Any, why_not: str | None) -> bool:
    """Resolve ``runtime.cuda_graphs`` (auto / true / false) against the reason, if any, that this
    run cannot be captured: ``true`` with a reason is a one-line config error, ``auto`` falls back."""
    mode = str(mode).lower()  # a bare `false` override arrives as the bool False
    if mode == "false":
        return False
    if why_not is not None and mode == "true":
        raise ConfigError(f"runtime.cuda_graphs=true but {why_not}; use runtime.cuda_graphs=auto or false")
    return why_not is None


def weight_sgd(params: Any, lr: float, momentum: float, weight_decay: float, nesterov: bool,
               device: torch.device, graphs: bool) -> torch.optim.Optimizer:
    """The weights' SGD (momentum, weight decay, nesterov): the reference optimizer, or for
    graph-replayed steps the same update capturable with a changing learning rate.

    The capturable form is the fused CUDA kernel with the learning rate in a 0-dim device tensor
    (``set_lr`` updates it in place; the foreach implementation would turn a tensor lr into a Python
    number, a host sync a graph cannot contain).  It is used only with graphs: the fused kernel
    rejects steps where some parameters get their first gradient later than others (GDAS runs one
    op per edge), which the reference implementation handles.
    """
    if graphs:
        return torch.optim.SGD(params, lr=torch.tensor(float(lr), device=device), momentum=momentum,
                               weight_decay=weight_decay, nesterov=nesterov, fused=True)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``opt.load_state_dict(state)`` that keeps each tensor learning rate the *same* tensor.

    ``load_state_dict`` replaces param-group values with the checkpoint's (a tensor lr may come
    back as a new tensor, even on the CPU); a captured step reads the lr tensor it was recorded
    with, so the loaded value is copied into the existing tensor instead."""
    lrs = [g["lr"] for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, lr in zip(opt.param_groups, lrs):
        if isinstance(lr, Tensor):
            lr.fill_(float(g["lr"]))
            g["lr"] = lr


def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Switch optimizers that keep a step counter (Adam) to their capturable variant."""
    for g in opt.param_groups:
        if "capturable" in g:
            g["capturable"] = True

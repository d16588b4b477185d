"""``runtime.compile``: compile the network's forward (and its backward) with ``torch.compile``.

CUDA-graph replay removes launch overhead, but the search and evaluation steps still run
thousands of small memory-bound kernels: BatchNorm statistics and normalisation, ReLUs,
the architecture-weighted sums, pooling.  Inductor fuses chains of those into a few
generated kernels (convolutions stay cuDNN calls), which removes both kernels and memory
traffic.  The arithmetic is the same function; floating-point results differ only by
summation order (the equivalence tests state tolerances).

What it composes with:

* CUDA graphs -- the compiled forward/backward are ordinary kernel launches, so the whole
  step (compiled network + optimizers) is still captured once by :mod:`nas_cli.runtime.graphs`;
  the first eager warm-up step pays the compilation;
* ``nn.Module.compile`` compiles in place: parameter names, the state_dict and checkpoints
  are unchanged, so a run can resume with or without compilation.

``auto`` compiles the *evaluation network* on CUDA only: there it was measured 1.4x faster per
step (H200, fp32, ~100 s of one-off compilation, nothing next to a 600-epoch training), while the
fused search supernets gained nothing (NAS-Bench-201) or took minutes to compile (PC-DARTS).  The
search supernet is compiled only with ``runtime.compile=true``.  Evaluation passes (validation,
test, candidate scoring) always run eagerly (:func:`run_eagerly`): they use other batch sizes and
eval-mode BN, and would otherwise each compile again.

What it refuses: one-hot sampling (GDAS, RS-WS) picks the ops to run on the host every
step -- each new sample would be a new graph to compile.  ``auto`` then stays uncompiled,
``true`` is a one-line ConfigError.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from contextlib import nullcontext
from typing import Any, ContextManager

import torch
from torch import nn

from nas_cli.errors import ConfigError

#: values of runtime.compile
CHOICES = ("auto", "true", "false")


#: the logger Dynamo reports a frame it could not compile to, when errors are suppressed
DYNAMO_FRAME_LOGGER = "torch._dynamo.convert_frame"


class FallbackLog(logging.Filter):
    """The functions ``torch.compile`` gave up on and ran eagerly: one line each, and their tracebacks.

    Why: ``runtime.compile=auto`` must never stop a run, so it suppresses compilation errors -- and then
    the failing part of the network runs uncompiled, slower, with nothing in the run's output to say so
    (a benchmark of the twenty-first session timed such a network and took it for a slow variant).
    Dynamo logs each suppressed failure as a warning that starts ``WON'T CONVERT <function> <file> line
    <n>``, with a traceback of about 150 lines, once per function it retries inside a failed one (one
    cause: thousands of lines on stderr).  As a filter on Dynamo's logger this keeps the header and the
    error's first lines (:func:`take_fallbacks`) and the whole record (:attr:`tracebacks`, which a run
    writes to a file) and drops the record, so the run prints one line instead (other records pass)."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[str] = []
        #: entry -> the record as Dynamo would have printed it (message and traceback)
        self.tracebacks: dict[str, str] = {}
        self._format = logging.Formatter("%(message)s")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("WON'T CONVERT"):
            return True
        where = message.split("\n", 1)[0].removeprefix("WON'T CONVERT").strip()
        if "_dynamo" in where:  # nn.Module.compile's wrapper frame: it names no module
            where = "a compiled module's forward"
        exc = record.exc_info[1] if record.exc_info else None
        lines = [ln.strip() for ln in (str(exc) if exc is not None else "").splitlines()
                 if ln.strip() and not ln.startswith(("Set TORCHDYNAMO", "For even more"))]
        why = " ".join(lines[:2]) or (type(exc).__name__ if exc is not None else "unknown error")
        entry = f"{where}: {why}"[:300]
        if entry not in self.entries:
            self.entries.append(entry)
        if entry not in self.tracebacks:  # format a repeat's traceback (Dynamo's retries) only once
            self.tracebacks[entry] = self._format.format(record)
        return False


FALLBACKS = FallbackLog()


def watch_fallbacks() -> None:
    """Collect Dynamo's suppressed compilation failures in :data:`FALLBACKS`, instead of printing them
    (idempotent)."""
    logger = logging.getLogger(DYNAMO_FRAME_LOGGER)
    if FALLBACKS not in logger.filters:
        logger.addFilter(FALLBACKS)


def take_fallbacks() -> list[str]:
    """The failures collected since the last call (and forget them; their tracebacks stay readable
    through :func:`fallback_tracebacks`)."""
    entries, FALLBACKS.entries = FALLBACKS.entries, []
    return entries


def fallback_tracebacks(entries: list[str]) -> str:
    """Dynamo's full report (message and traceback) of each failure in ``entries``, separated by rules:
    what a run writes to ``compile_fallbacks.log`` rather than to the terminal."""
    rule = "\n" + "-" * 78 + "\n"
    return rule.join(FALLBACKS.tracebacks.get(e, e) for e in entries) + "\n"


def fallback_text(entries: list[str]) -> str:
    """One line for a batch of failures: Dynamo retries the functions inside a failed one, so one cause
    often yields many entries."""
    more = f" and {len(entries) - 1} more function(s)" if len(entries) > 1 else ""
    return f"torch.compile failed on {entries[0]}{more}"


def compile_enabled(mode: Any, why_not: str | None, device: torch.device, auto: bool = True) -> bool:
    """Whether to compile: ``false`` never; ``true`` always (a blocker is a ConfigError);
    ``auto`` when ``auto`` is true (the caller's measured default), the device is CUDA (on CPU
    compilation costs minutes and gains little) and nothing blocks it."""
    mode = str(mode).lower()
    if mode not in CHOICES:
        raise ConfigError(f"runtime.compile must be one of {', '.join(CHOICES)}, got '{mode}'")
    if mode == "false":
        return False
    if why_not is not None:
        if mode == "true":
            raise ConfigError(f"runtime.compile=true is not possible here: {why_not} (use runtime.compile=false)")
        return False
    return mode == "true" or (auto and device.type == "cuda")


def run_eagerly() -> ContextManager[Any]:
    """Run compiled modules eagerly inside this block (evaluation passes: other shapes and modes)."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else nullcontext()


def toolchain_blocker(device: torch.device) -> str | None:
    """Why Inductor cannot build kernels for ``device`` on this machine (None: it can).

    GPU kernels need Triton, and Triton compiles its kernel launcher with the host's C compiler."""
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if not (os.environ.get("CC") or any(shutil.which(c) for c in ("cc", "gcc", "clang"))):
        return "no C compiler found (set CC)"
    return None


#: Inductor options that would capture CUDA graphs inside the step (runtime.cuda_graphs captures it whole)
_GRAPH_OPTIONS = ("triton.cudagraphs", "triton.cudagraph_trees")


def flat_compile_options(options: Any) -> dict[str, Any]:
    """``runtime.compile_options`` as Inductor's dotted names: Hydra turns
    ``+runtime.compile_options.triton.x=1`` into a nested mapping, ``torch.compile`` wants ``triton.x``.
    ConfigError for a name that ``torch._inductor.config`` does not have."""
    import torch._inductor.config as inductor_config

    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any, mapping: Any) -> None:
        for key, value in dict(mapping).items():
            name = f"{prefix}{key}"
            if not hasattr(node, str(key)):
                raise ConfigError(f"runtime.compile_options: '{name}' is not an Inductor option (torch._inductor.config)")
            target = getattr(node, str(key))
            if hasattr(value, "items") and not isinstance(target, dict):
                walk(f"{name}.", target, value)  # a sub-config such as ``triton``
            else:
                flat[name] = value

    walk("", inductor_config, options or {})
    return flat


def check_compile_options(options: Any, backend: str) -> None:
    """ConfigError unless ``runtime.compile_options`` names Inductor options that leave CUDA graphs to
    ``runtime.cuda_graphs``."""
    if not options:
        return
    if backend != "inductor":
        raise ConfigError(f"runtime.compile_options are Inductor options; runtime.compile_backend is '{backend}'")
    for key, value in flat_compile_options(options).items():
        if key in _GRAPH_OPTIONS and value:
            raise ConfigError(f"runtime.compile_options.{key} would capture CUDA graphs inside the step that "
                              "runtime.cuda_graphs already captures")


#: Inductor options the evaluation network is compiled with unless ``runtime.compile_options`` sets them.
#: ``combo_kernels`` launches independent generated kernels (the BN/ReLU passes of a cell's parallel ops)
#: as one: on the H200 the fp32 evaluation step measured 0.0376 s with it against 0.0402 s without in one
#: call (seventeenth session; 0.0384 s with it, 0.0392 / 0.0397 s without on three other machine starts),
#: for about 20 s more compilation.  Same arithmetic in each kernel, only launched together.
EVAL_COMPILE_OPTIONS: dict[str, Any] = {"combo_kernels": True}


#: values of runtime.compile_scope
SCOPES = ("auto", "cells", "branches", "model")

#: ``compile_scope=auto`` compiles an evaluation network whole when it trains at least this many steps.
#: H200, fp32, one call (nineteenth session): the whole-network graph's step took 0.0362 s against
#: 0.0378 s per cell, 8.64 against 9.66 GB, after 175 s of compilation against 119 s (239 s on another
#: machine start; cells 116-146 s between starts).  The 1.6 ms per step repays up to 123 s more
#: compilation after about 77,000 steps; twice that is the threshold (385 CIFAR-10 epochs at batch 128:
#: the papers' 600-epoch retraining qualifies, short runs keep the quicker per-cell compilation).
MODEL_SCOPE_MIN_STEPS = 150_000


def resolve_compile_scope(setting: Any, train_steps: int | None) -> str:
    """``runtime.compile_scope`` -> ``cells`` / ``branches`` / ``model``.  ``auto``: ``model`` for an
    evaluation network training at least :data:`MODEL_SCOPE_MIN_STEPS` steps (``train_steps``; None for
    search supernets, which compile per cell, and for data-parallel training, where the whole-network
    graph was not measured), else ``cells``."""
    scope = str(setting).lower()
    if scope not in SCOPES:
        raise ConfigError(f"runtime.compile_scope must be one of {', '.join(SCOPES)}, got '{scope}'")
    if scope != "auto":
        return scope
    return "model" if train_steps is not None and train_steps >= MODEL_SCOPE_MIN_STEPS else "cells"


def compile_kwargs(runtime: Any, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``torch.compile`` keyword arguments for ``runtime``: backend, static shapes, and either the mode
    or -- with ``compile_options`` -- the mode's own Inductor options with those merged over them
    (torch.compile takes a mode or options, not both).  ``defaults``: Inductor options under the user's
    ``compile_options`` (ignored for other backends, which take no options)."""
    kwargs: dict[str, Any] = {"backend": str(runtime.compile_backend), "dynamic": False}
    mode = str(runtime.get("compile_mode") or "default")
    extra = flat_compile_options(runtime.get("compile_options"))
    if defaults and str(runtime.compile_backend) == "inductor":
        extra = {**defaults, **extra}
    if extra:
        import torch._inductor

        kwargs["options"] = {**torch._inductor.list_mode_options(mode), **extra}
    elif mode != "default":
        kwargs["mode"] = mode
    return kwargs


def compile_module(module: nn.Module, runtime: Any, defaults: dict[str, Any] | None = None,
                   scope: str | None = None) -> list[nn.Module]:
    """Compile ``module`` in place as ``scope`` (default: ``runtime.compile_scope``, with ``auto`` as
    ``cells``; see :func:`resolve_compile_scope`) says; returns the compiled modules.

    ``cells`` (regional compilation): each module of ``module.cells`` is compiled on its own.  Cells
    of one kind and size share their compiled code (parameters are graph inputs, not constants),
    so a 20-cell network compiles about as many graphs as it has distinct cell shapes -- minutes
    less than one whole-network graph -- while the stem and head (a few kernels) stay eager.
    ``branches`` (evaluation networks; search supernets compile per cell): each cell's preprocessing
    convs and ops on their own, the cell's node sums eager -- what ``runtime.branch_streams`` can run
    on two streams, since Inductor fails on stream forks inside a compiled cell.
    ``model``: the whole forward as one graph (more fusion across cells, longer compilation).
    Shapes are static: every training step has the same batch shape.  ``defaults``: as in
    :func:`compile_kwargs`."""
    kwargs = compile_kwargs(runtime, defaults)
    if str(runtime.get("compile", "auto")).lower() == "auto":
        # a default should never stop a run: a failed compilation falls back to the eager code, and
        # the run reports which functions did (take_fallbacks)
        torch._dynamo.config.suppress_errors = True
        watch_fallbacks()
    if scope is None:
        scope = resolve_compile_scope(runtime.get("compile_scope") or "auto", None)
    if scope == "branches" and hasattr(module, "cells") and all(_is_eval_cell(c) for c in module.cells):
        targets = [m for cell in module.cells for m in cell_branches(cell)]
    elif scope in ("cells", "branches") and hasattr(module, "cells"):  # search supernets: per cell
        targets = list(module.cells)
    else:
        targets = [module]
    # Dynamo keeps at most ``recompile_limit`` (8) graphs per code object and runs the frames past
    # it eagerly, silently.  All cells share one forward, and a 20-cell evaluation network has 9
    # distinct cell shapes: with the default limit its last five (widest) cells ran uncompiled.
    # Each target adds at most one shape; the margin covers other guards (a module's mode, say).
    limit = len(targets) + 8
    if torch._dynamo.config.recompile_limit < limit:
        torch._dynamo.config.recompile_limit = limit
    for m in targets:
        m.compile(**kwargs)
    return targets


def _is_eval_cell(cell: nn.Module) -> bool:
    from nas_cli.spaces.darts_eval import EvalCell

    return isinstance(cell, EvalCell)


def cell_branches(cell: nn.Module) -> list[nn.Module]:
    """The modules of ``compile_scope=branches``: a cell's preprocessing convs and its ops (identities
    have nothing to compile).  The cell's own code -- the node sums, drop-path, the concatenation and,
    with ``runtime.branch_streams``, the stream forks and joins -- stays eager."""
    from nas_cli.spaces.darts_ops import Identity

    mods = [getattr(cell, name) for name in ("preprocess0", "preprocess1") if hasattr(cell, name)]
    return mods + [op for op in getattr(cell, "ops", []) if not isinstance(op, Identity)]


def search_compile_blocker(cfg: Any, device: torch.device) -> str | None:
    """Why the search supernet of this config cannot be compiled on ``device`` (None: it can)."""
    from nas_cli.arch.sampling import SAMPLINGS

    sampling = str(cfg.method.relaxation.sampling)
    if SAMPLINGS.get(sampling).one_hot:
        return f"'{sampling}' sampling selects ops on the host every step (each sample would recompile)"
    return toolchain_blocker(device)

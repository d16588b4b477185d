"""Structured-config schemas registered in Hydra's ConfigStore.

Every YAML file under ``conf/`` extends one of these dataclasses (through its
defaults list, ``/schema/<group>/<name>@_here_``), so a misspelt key or a value
of the wrong type is rejected by OmegaConf before any work starts.  Range and
compatibility checks that types cannot express live in :func:`validate`.

Groups and their seams:

* ``search_space`` -- which cells/supernet (``nas_cli.spaces``)
* ``method``       -- relaxation + paper hyperparameters; selects optimizer and objective
* ``optimizer``    -- architecture optimizer (``nas_cli.optim``)
* ``objective``    -- how weight and architecture steps interleave (``nas_cli.objectives``)
* ``dataset``      -- data source (``nas_cli.data``)
* ``stage``        -- which pipeline stage runs (``nas_cli.stages``)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from nas_cli.errors import ConfigError
from nas_cli.runtime.layout import CHOICES as LAYOUT_CHOICES

# --------------------------------------------------------------------------- spaces


@dataclass
class SearchSpaceConfig:
    name: str = MISSING
    #: drop the 'none' op (GAEA DARTS on NB201; optional on the DARTS space)
    exclude_zero: bool = False
    #: named size preset of this space (a key of ``presets``; space YAMLs fill their size keys from it by
    #: interpolation, so ``experiment=demo`` can ask for "demo" sizes without naming any space's keys)
    preset: str = "paper"
    presets: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DartsSpaceConfig(SearchSpaceConfig):
    init_channels: int = 16
    layers: int = 8
    nodes: int = 4
    stem_multiplier: int = 3
    #: "cifar" (one 3x3 conv stem) or "imagenet" (PC-DARTS ImageNet search stems, spec §3.2)
    stem: str = "cifar"


# --------------------------------------------------------------------------- method


@dataclass
class RelaxationConfig:
    #: how architecture tensors are stored: "logits" (softmax, DARTS) or "simplex" (GAEA)
    parameterization: str = "logits"
    #: "mixture": weighted sum of all ops; "hard": one straight-through Gumbel sample (GDAS)
    sampling: str = "mixture"
    #: PC-DARTS partial-channel factor K (1 = all channels)
    partial_channels: int = 1
    #: learn per-node edge weights (PC-DARTS edge normalisation)
    learn_edges: bool = False
    #: std of the N(0, std) init of logits (DARTS/PC-DARTS: 1e-3); simplex init is uniform
    init_std: float = 1e-3
    #: Gumbel temperature schedule (hard sampling only)
    tau_max: float = 10.0
    tau_min: float = 0.1
    #: "paper": tau_max -> tau_min over the post-warmup epochs (discrepancies.md #8);
    #: "official": [G]'s formula, tau_max - (tau_max - tau_min) * max(e - W, 0) / (E - 1)
    tau_schedule: str = "paper"


@dataclass
class SelectorConfig:
    """How an epoch's genotype is chosen (nas_cli/stages/selection.py)."""

    #: "argmax": discretize the architecture weights; "random_candidates": best of ``candidates``
    #: uniformly sampled architectures scored on one validation batch (RSPS, methods.md §7.2)
    name: str = "argmax"
    candidates: int = 100
    batch_size: int = 512


@dataclass
class MethodConfig:
    name: str = MISSING
    description: str = ""
    relaxation: RelaxationConfig = field(default_factory=RelaxationConfig)
    #: which genotype the run returns: "last" epoch (paper) or epoch with "best_val" supernet accuracy ([G] bilevel)
    select: str = "last"
    selector: SelectorConfig = field(default_factory=SelectorConfig)


# --------------------------------------------------------------------------- optimizer


@dataclass
class OptimizerConfig:
    """Architecture optimizer (weights always use SGD, configured under ``search``)."""

    name: str = MISSING
    lr: float = 3e-4
    #: step size for edge weights (defaults to ``lr``)
    edge_lr: Optional[float] = None
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0
    #: clip the global grad-norm of the architecture tensors before the update (null = off)
    grad_clip: Optional[float] = None
    #: lambda of the KL-to-uniform regulariser sum theta*log(theta*|O|) added to the arch loss
    entropy_reg: float = 0.0


@dataclass
class ExpGradConfig(OptimizerConfig):
    #: "clamp_normalize" (official EDARTS: multiply, clamp, normalise),
    #: "normalize_clamp" (official EGDAS order), "paper" (eq. 8, no clamp)
    numerics: str = "clamp_normalize"
    clamp_min: float = 1e-5


# --------------------------------------------------------------------------- objective


@dataclass
class ObjectiveConfig:
    name: str = MISSING
    #: fraction of the training set used for weights; the rest is the architecture (validation) split
    train_portion: float = 0.5
    #: epochs of weight-only training before architecture updates start
    warmup_epochs: int = 0
    #: weight steps per architecture step (the "inexact inner loop" knob)
    inner_steps: int = 1
    #: "arch_first" ([D]/[PC]/[G]) or "weight_first" ([A]/[GI])
    step_order: str = "arch_first"


@dataclass
class SingleLevelConfig(ObjectiveConfig):
    #: single level uses the whole training set; train_portion is ignored
    train_portion: float = 1.0
    #: use the weight step's batch for the arch step instead of a fresh random batch
    same_batch: bool = False


# --------------------------------------------------------------------------- dataset


@dataclass
class DatasetConfig:
    name: str = MISSING
    root: str = "${oc.env:NAS_CLI_DATA,data}"
    download: bool = False
    #: normalisation constants: null = the dataset's default; "darts" (DARTS-space code) or "nb201"
    #: (NAS-Bench-201's constants, nasbench201.md §5); ignored by datasets that compute their own
    normalization: Optional[str] = None
    #: weights/architecture split of bilevel searches: "portion" (first objective.train_portion of the
    #: training set, DARTS) or "nb201" (NAS-Bench-201 protocol, nas_cli/data/splits.py)
    split: str = "portion"
    #: an official NB201 split file (cifar-split.txt, cifar100-test-split.txt, ...) overriding the rule
    split_file: Optional[str] = None
    #: cut-down runs: keep only the first N training / test images (null = all)
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None


@dataclass
class SyntheticDatasetConfig(DatasetConfig):
    num_train: int = 4000
    num_test: int = 1000
    image_size: int = 32
    num_classes: int = 10
    seed: int = 0


@dataclass
class NpzDatasetConfig(DatasetConfig):
    path: str = MISSING


# --------------------------------------------------------------------------- stage / training


@dataclass
class StageConfig:
    name: str = MISSING


@dataclass
class SearchTrainConfig:
    """Weight training during search (method presets set the paper's values)."""

    epochs: int = 50
    batch_size: int = 64
    #: batch size of architecture steps (defaults to batch_size)
    arch_batch_size: Optional[int] = None
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    nesterov: bool = False
    grad_clip: Optional[float] = 5.0
    #: length of the cosine schedule in epochs (null = epochs, the paper's reading)
    scheduler_epochs: Optional[int] = None
    augment: bool = True
    #: evaluate the supernet on the validation split every N epochs (0 = never)
    val_every: int = 1
    #: cap on validation batches per evaluation (null = whole split)
    max_val_batches: Optional[int] = None
    eval_batch_size: int = 256
    #: refresh the progress bar every N steps (each refresh syncs with the device)
    log_every: int = 20
    #: stop this invocation after N more epochs (time-sliced / preemptible jobs); resume continues
    stop_after: Optional[int] = None


@dataclass
class TrainConfig:
    """Training an evaluation network from scratch (stages 2 and 3; training.md table B).

    Defaults are the GAEA paper's values (App. C.1.2).  Discrepancies #2/#3: the official
    GAEA/DARTS code uses ``batch_size=96`` and ``drop_path=0.2``; set them to reproduce it.
    """

    epochs: int = 600
    batch_size: int = 128
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    nesterov: bool = False
    grad_clip: Optional[float] = 5.0
    #: evaluation network size (CIFAR: C=36, L=20)
    init_channels: int = 36
    layers: int = 20
    #: weight of the auxiliary-head loss (0 = no auxiliary head)
    auxiliary_weight: float = 0.4
    #: final drop-path probability p; epoch e (0-based) of E uses p*e/E
    drop_path: float = 0.3
    #: cutout length in pixels (0 = off)
    cutout: int = 16
    augment: bool = True
    #: evaluate the held-out split (stage 2) / the test set (stage 3) every N epochs (the last epoch always)
    eval_every: int = 1
    eval_batch_size: int = 256
    log_every: int = 50
    #: stop this invocation after N more epochs (time-sliced jobs); rerunning resumes
    stop_after: Optional[int] = None


@dataclass
class RuntimeConfig:
    #: "auto" (CUDA when present), "cpu", "cuda", "cuda:N"
    device: str = "auto"
    #: "fp32" or "bf16" (autocast on the weight path; architecture update always fp32)
    precision: str = "fp32"
    #: NHWC activations and weights: "auto" (for the compiled evaluation network on CUDA, where it was
    #: measured faster; search supernets stay NCHW, measured slower), "true", "false" (runtime/layout.py)
    channels_last: str = "auto"
    #: true: cuDNN deterministic algorithms without autotuning; false (default, as in the reference
    #: DARTS/PC-DARTS/GAEA code): cudnn.benchmark autotuning, measured 11 % faster on the H200 search
    #: step. CPU runs are deterministic either way; on CUDA some kernels (max-pool backward) use
    #: atomics, so GPU runs are not bitwise reproducible with either setting
    deterministic: bool = False
    #: data-parallel runs (torchrun): normalise training batches with BatchNorm statistics over the
    #: global batch of all ranks (one all-gather per BN forward, one all-reduce per backward), so N
    #: processes compute what one process computes on the same global batch; false = per-rank
    #: statistics (plain DDP: each BN sees batch/N images). No effect in a single process
    sync_bn: bool = True
    #: torch intra-op threads on CPU (null = torch default)
    num_threads: Optional[int] = None
    #: fused search cells (mixture forward; same math, same state_dict as the per-edge reference):
    #: DARTS space -- each op type once per node over the stacked incoming edges (grouped kernels);
    #: NB201 -- per source node one shared ReLU, one conv for all its 3x3/1x1 edges, one BN, one
    #: pool and one batched matmul for the mixture. false = the per-edge reference
    fused: bool = True
    #: capture the whole training step in one CUDA graph and replay it: "auto" (on CUDA when the
    #: method/objective supports it), "true" (error if unsupported), "false" (eager reference path)
    cuda_graphs: str = "auto"
    #: training-mode kernels of the supernets' non-affine BatchNorms (same function):
    #: auto (= triton for CUDA-graph-replayed steps, function2 there without Triton, native for eager ones and on
    #: CPU), native, cudnn, function, function2 (spaces/batchnorm.py), triton (spaces/bn_kernels.py)
    batchnorm: str = "auto"
    #: kernels of the depthwise convs (SepConv/DilConv; same function): auto (= triton for fp32
    #: CUDA-graph-replayed steps when Triton is installed, native otherwise; a compiled evaluation
    #: network keeps native), native, triton (spaces/depthwise.py)
    depthwise: str = "auto"
    #: kernels of the fused search cells' block-diagonal 1x1 convs (4..32 channels per edge):
    #: auto (= triton for fp32 CUDA-graph-replayed steps when Triton is installed, batched matmul
    #: otherwise), native (batched matmul), triton (spaces/pointwise.py)
    pointwise: str = "auto"
    #: kernels of the fused search cells' weighted sums over stacked op outputs (same function):
    #: auto (= triton for fp32 CUDA-graph-replayed steps when Triton is installed, batched matmul
    #: otherwise), native (batched matmul), triton (spaces/mixing.py)
    mixing: str = "auto"
    #: the evaluation networks' dense stride-1 1x1 convs: "conv" (aten.convolution: cuDNN), "matmul"
    #: (F.linear over the NHWC view of channels_last activations, which Inductor can tune and fuse;
    #: NCHW inputs keep the conv), "wgrad_matmul" (cuDNN's forward and input gradient, the weight
    #: gradient as a matmul: the per-direction best measured per conv, no faster in the compiled step), "triton" (the same GEMMs as
    #: Triton kernels: spaces/dense1x1_kernels.py, measured 3x slower), "auto" (= conv; spaces/conv1x1.py)
    conv1x1: str = "auto"
    #: the evaluation network's cells on two CUDA streams: each node's two branches (and the two
    #: preprocessing convs) run concurrently, forward and backward (spaces/darts_eval.py): "auto" (for
    #: CUDA-graph-replayed steps whose cells are not compiled whole: measured faster there), "true",
    #: "false". Inductor cannot compile the stream forks inside a cell: with runtime.compile_scope=cells
    #: (the compiled default) true is an error, and compile_scope=branches compiles each branch instead;
    #: data-parallel runs (untested with two streams) refuse true as well
    branch_streams: str = "auto"
    #: how one-hot samples (GDAS, GAEA GDAS, RS-WS) run through the supernet: "selected" (the
    #: reference: only the sampled op of each edge; the choice goes to the host every forward, so
    #: the step runs eagerly), "masked" (every op through the fused cells, the others times exact
    #: zeros, their BN statistics and optimizer updates held back: same math, no host sync, so the
    #: step can be replayed from a CUDA graph; NB201 space, runtime.fused, first-order objectives),
    #: "auto" (masked exactly when that makes the step CUDA-graph replayed)
    hard_forward: str = "auto"
    #: torch.compile the network (Inductor fuses BN/ReLU/weighted sums; runtime/compile.py):
    #: "auto" (the evaluation network on CUDA: measured faster; search supernets stay uncompiled),
    #: "true" (the search supernet too; error if unsupported), "false"
    compile: str = "auto"
    #: torch.compile backend ("inductor"; "aot_eager" traces without generating kernels, for debugging)
    compile_backend: str = "inductor"
    #: torch.compile mode ("default", "max-autotune-no-cudagraphs", ...; never a cudagraphs mode:
    #: runtime.cuda_graphs captures the whole step itself)
    compile_mode: str = "default"
    #: what is compiled: "cells" (each cell separately; cells of one shape share code: fast to
    #: compile), "branches" (evaluation networks: each cell's preprocessing convs and ops separately,
    #: the node sums eager: what runtime.branch_streams can run on two streams; slower than cells;
    #: search supernets compile per cell), "model" (the whole forward as one graph: H200, 0.0362 s per
    #: evaluation step against 0.0378 s, 1 GB less, about a minute more compilation) or "auto" (model
    #: for evaluation networks that train at least 150,000 steps in this invocation, where that repays
    #: it; else cells; runtime/compile.py MODEL_SCOPE_MIN_STEPS)
    compile_scope: str = "auto"
    #: extra Inductor options for torch.compile (names from torch._inductor.config, e.g.
    #: {coordinate_descent_tuning: true}); merged over compile_mode's own options
    compile_options: Dict[str, Any] = field(default_factory=dict)
    #: on/off switches of individual fast-path kernels, by name (runtime/switches.py lists them; all
    #: default true, each measured faster than the form it replaced, which false restores: same values),
    #: e.g. +runtime.kernel_switches.select_convs=false
    kernel_switches: Dict[str, bool] = field(default_factory=dict)


@dataclass
class OracleConfig:
    """Benchmark look-ups of the current genotype during search (nas_cli/oracle)."""

    #: null = disabled; "nb201" (NAS-Bench-201 / NATS-Bench topology file or a compact table)
    name: Optional[str] = None
    #: .pth/.pickle benchmark file (needs the official API package) or a .csv/.json compact table
    path: Optional[str] = None
    #: which benchmark dataset's accuracy to log: null = the searched dataset's
    dataset: Optional[str] = None


@dataclass
class NASConfig:
    search_space: SearchSpaceConfig = MISSING
    method: MethodConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    objective: ObjectiveConfig = MISSING
    dataset: DatasetConfig = MISSING
    stage: StageConfig = MISSING
    search: SearchTrainConfig = field(default_factory=SearchTrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    seed: int = 0
    #: "auto": continue from checkpoint.pt in the run dir if present; "true": must resume; "false": start over
    resume: str = "auto"
    #: free-form label copied to summary.json (used by nas-report to group runs)
    tag: str = ""
    experiment: Optional[Any] = None


SCHEMAS: dict[str, dict[str, type]] = {
    "search_space": {"base": SearchSpaceConfig, "darts": DartsSpaceConfig},
    "method": {"base": MethodConfig},
    "optimizer": {"base": OptimizerConfig, "exp_grad": ExpGradConfig},
    "objective": {"base": ObjectiveConfig, "single_level": SingleLevelConfig},
    "dataset": {"base": DatasetConfig, "synthetic": SyntheticDatasetConfig, "npz": NpzDatasetConfig},
    "stage": {"base": StageConfig},
}


def register_schema(group: str, name: str, node: type) -> None:
    """Let a plugin module add a schema (e.g. a new objective with extra knobs)."""
    SCHEMAS.setdefault(group, {})[name] = node
    ConfigStore.instance().store(group=f"schema/{group}", name=name, node=node, package=group)


def register_configs() -> None:
    """Store every schema; importing the plugin packages first lets their modules
    call :func:`register_schema` for options with extra keys."""
    import nas_cli.data  # noqa: F401
    import nas_cli.objectives  # noqa: F401
    import nas_cli.spaces  # noqa: F401
    import nas_cli.stages  # noqa: F401

    cs = ConfigStore.instance()
    cs.store(name="nas_schema", node=NASConfig)
    for group, nodes in SCHEMAS.items():
        for name, node in nodes.items():
            cs.store(group=f"schema/{group}", name=name, node=node, package=group)


# --------------------------------------------------------------------------- validation


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(value: float, key: str, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    _check(ok and math.isfinite(value), f"{key} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def validate(cfg: DictConfig) -> None:
    """Range and compatibility checks; raises ConfigError with a one-line message."""
    from nas_cli.arch import PARAMETERIZATIONS, SAMPLINGS
    from nas_cli.objectives import OBJECTIVES
    from nas_cli.optim import ARCH_OPTIMIZERS

    s = cfg.search
    _check(s.epochs >= 1, f"search.epochs must be >= 1, got {s.epochs}")
    _check(s.batch_size >= 1, f"search.batch_size must be >= 1, got {s.batch_size}")
    _positive(s.lr, "search.lr")
    _positive(s.lr_min, "search.lr_min", allow_zero=True)
    _check(s.lr_min <= s.lr, f"search.lr_min ({s.lr_min}) must not exceed search.lr ({s.lr})")
    _positive(s.weight_decay, "search.weight_decay", allow_zero=True)
    _check(0 <= s.momentum < 1, f"search.momentum must be in [0, 1), got {s.momentum}")
    if s.grad_clip is not None:
        _positive(s.grad_clip, "search.grad_clip")

    o = cfg.objective
    obj_cls = OBJECTIVES.get(o.name)
    if obj_cls.uses_split:
        _check(0 < o.train_portion < 1, f"objective.train_portion must be in (0, 1), got {o.train_portion}")
    _check(o.warmup_epochs >= 0, f"objective.warmup_epochs must be >= 0, got {o.warmup_epochs}")
    _check(o.inner_steps >= 1, f"objective.inner_steps must be >= 1, got {o.inner_steps}")
    _check(o.step_order in ("arch_first", "weight_first"),
           f"objective.step_order must be arch_first or weight_first, got '{o.step_order}'")

    r = cfg.method.relaxation
    PARAMETERIZATIONS.get(r.parameterization)
    SAMPLINGS.get(r.sampling)
    _check(r.tau_schedule in ("paper", "official"),
           f"method.relaxation.tau_schedule must be 'paper' or 'official', got '{r.tau_schedule}'")
    _check(r.partial_channels >= 1, f"method.relaxation.partial_channels must be >= 1, got {r.partial_channels}")
    _check(cfg.method.select in ("last", "best_val"),
           f"method.select must be 'last' or 'best_val', got '{cfg.method.select}'")
    if cfg.method.select == "best_val":
        _check(obj_cls.uses_split and s.val_every > 0,
               "method.select=best_val needs a validation split (a bilevel objective) and search.val_every > 0")

    a = cfg.optimizer
    opt = ARCH_OPTIMIZERS.get(a.name)
    _positive(a.lr, "optimizer.lr")
    if a.edge_lr is not None:
        _positive(a.edge_lr, "optimizer.edge_lr")
    _positive(a.weight_decay, "optimizer.weight_decay", allow_zero=True)
    _positive(a.entropy_reg, "optimizer.entropy_reg", allow_zero=True)
    _check(r.parameterization in opt.supports,
           f"optimizer '{a.name}' cannot update '{r.parameterization}' architecture parameters; "
           f"use one of: {', '.join(n for n in ARCH_OPTIMIZERS.names() if r.parameterization in ARCH_OPTIMIZERS.get(n).supports)}")

    sp = cfg.search_space
    presets = sp.get("presets") or {}
    if presets:
        _check(sp.get("preset") in presets,
               f"search_space.preset '{sp.get('preset')}' is not defined for the {sp.name} space; "
               f"choose one of: {', '.join(presets)}")
    from nas_cli.stages.selection import SELECTORS

    SELECTORS.get(cfg.method.selector.name)
    _check(cfg.method.selector.candidates >= 1 and cfg.method.selector.batch_size >= 1,
           "method.selector.candidates and method.selector.batch_size must be >= 1")

    rt = cfg.runtime
    _check(rt.precision in ("fp32", "bf16"), f"runtime.precision must be fp32 or bf16, got '{rt.precision}'")
    _check(str(rt.batchnorm).lower() in ("auto", "native", "cudnn", "function", "function2", "triton"),
           f"runtime.batchnorm must be auto, native, cudnn, function, function2 or triton, got '{rt.batchnorm}'")
    for key in ("depthwise", "pointwise", "mixing"):  # the Triton kernel settings (spaces/triton_support.py)
        _check(str(rt[key]).lower() in ("auto", "native", "triton"),
               f"runtime.{key} must be auto, native or triton, got '{rt[key]}'")
    from nas_cli.spaces.conv1x1 import CHOICES as CONV1X1_CHOICES

    _check(str(rt.conv1x1).lower() in CONV1X1_CHOICES,
           f"runtime.conv1x1 must be {', '.join(CONV1X1_CHOICES[:-1])} or {CONV1X1_CHOICES[-1]}, got '{rt.conv1x1}'")
    from nas_cli.spaces.darts_eval import BRANCH_STREAM_CHOICES

    _check(str(rt.get("branch_streams", "auto")).lower() in BRANCH_STREAM_CHOICES,
           f"runtime.branch_streams must be auto, true or false, got '{rt.get('branch_streams')}'")
    _check(str(rt.channels_last).lower() in LAYOUT_CHOICES,
           f"runtime.channels_last must be {', '.join(LAYOUT_CHOICES[:-1])} or {LAYOUT_CHOICES[-1]}, "
           f"got '{rt.channels_last}'")
    _check(str(rt.hard_forward).lower() in ("auto", "selected", "masked"),
           f"runtime.hard_forward must be auto, selected or masked, got '{rt.hard_forward}'")
    _check(str(rt.compile).lower() in ("auto", "true", "false"),
           f"runtime.compile must be auto, true or false, got '{rt.compile}'")
    from nas_cli.runtime.compile import SCOPES

    _check(str(rt.compile_scope) in SCOPES,
           f"runtime.compile_scope must be one of {', '.join(SCOPES)}, got '{rt.compile_scope}'")
    _check(str(rt.compile_mode) not in ("reduce-overhead", "max-autotune"),
           f"runtime.compile_mode={rt.compile_mode} would capture CUDA graphs inside the step that "
           "runtime.cuda_graphs already captures; use default or max-autotune-no-cudagraphs")
    from nas_cli.runtime.compile import check_compile_options

    check_compile_options(rt.get("compile_options") or {}, str(rt.compile_backend))
    from nas_cli.runtime.switches import check_switches

    check_switches(rt.get("kernel_switches"))
    _check(str(rt.cuda_graphs).lower() in ("auto", "true", "false"),
           f"runtime.cuda_graphs must be auto, true or false, got '{rt.cuda_graphs}'")
    _check(str(cfg.resume).lower() in ("auto", "true", "false"),
           f"resume must be auto, true or false, got '{cfg.resume}'")

"""Training a discrete (evaluation) network from scratch: the trainer behind stages 2 and 3.

One *job* = one genotype, one seed, one output directory.  The job writes the
same kind of files as a search (docs/outputs.md, "evaluation runs"):
``metrics.jsonl`` (one row per epoch), ``genotype.json``, ``checkpoint.pt``
(every epoch, atomically; the source of truth) and ``summary.json`` (finished
jobs only).  Resume is exact: model, optimizer, every RNG (drop-path masks and
cutout draw from them) and the data stream's open epoch are restored.

Stage 2 trains on the training set minus a held-out part (``holdout``) and
logs accuracy on that held-out part; it never touches the test set.  Stage 3
trains on the full training set and logs test accuracy (reported, never used
for any choice).  ``until`` lets stage 2 stop every candidate at the
early-elimination epoch and continue only the survivors later, through the
same resume path.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from nas_cli.data import BatchStream, DeviceData, load_dataset, search_split
from nas_cli.data.loader import normalize
from nas_cli.errors import ConfigError, TrainingDiverged
from nas_cli.runtime import distributed as dist
from nas_cli.runtime.checkpoint import load_checkpoint, save_checkpoint
from nas_cli.runtime.console import console, kv_table
from nas_cli.runtime.compile import (EVAL_COMPILE_OPTIONS, compile_enabled, compile_module, fallback_text,
                                     fallback_tracebacks, resolve_compile_scope, take_fallbacks, toolchain_blocker)
from nas_cli.runtime.device import autocast, resolve_device
from nas_cli.runtime.env import environment_info
from nas_cli.runtime.graphs import NO_CUDA, GraphedStep, graphs_enabled, load_optimizer_state, weight_sgd
from nas_cli.runtime.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_jsonl
from nas_cli.runtime.layout import channels_last_enabled
from nas_cli.runtime.seed import rng_state, seed_everything, set_rng_state
from nas_cli.runtime.switches import apply_switches
from nas_cli.spaces.base import count_parameters
from nas_cli.spaces.batchnorm import use_sync_batchnorm
from nas_cli.spaces.conv1x1 import match_conv_precision, resolve_conv1x1, use_conv1x1_impl
from nas_cli.spaces.depthwise import use_depthwise_impl
from nas_cli.spaces.triton_support import resolve_kernel_impl
from nas_cli.spaces.darts_eval import NetworkCIFAR, count_multiply_adds, resolve_branch_streams, use_branch_streams
from nas_cli.spaces.genotypes import Genotype
from nas_cli.stages.common import Accumulator, cosine_lr, evaluate, set_lr

#: Dynamo's reports of the functions torch.compile gave up on (runtime.compile=auto), not the terminal's
FALLBACK_LOG = "compile_fallbacks.log"
EVAL_FILES = ("metrics.jsonl", "genotype.json", "checkpoint.pt", "summary.json", FALLBACK_LOG)
#: train.* keys that may change between an interrupted job and its resumption
_NEUTRAL_TRAIN_KEYS = ("stop_after", "log_every", "eval_batch_size")


@dataclass
class EvalJob:
    """What distinguishes one evaluation-network training run."""

    name: str
    genotype: Genotype
    seed: int
    #: fraction of the training set held out for selection (stage 2); 0 = train on all (stage 3)
    holdout: float = 0.0
    #: evaluate the test set (stage 3 only; stage 2 must not look at it)
    report_test: bool = False
    stage: str = "retrain"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "genotype": self.genotype.to_json(), "seed": self.seed,
                "holdout": self.holdout, "report_test": self.report_test, "stage": self.stage}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalJob":
        return cls(d["name"], Genotype.from_json(d["genotype"]), int(d["seed"]), float(d["holdout"]),
                   bool(d["report_test"]), str(d["stage"]))


def drop_path_prob(p: float, epoch: int, epochs: int) -> float:
    """training.md §5: p_e = p * e / E (0-based e): 0 at the first epoch, p (E-1)/E at the last."""
    return float(p) * epoch / max(int(epochs), 1)


def eval_loss(logits: torch.Tensor, logits_aux: torch.Tensor | None, y: torch.Tensor,
              aux_weight: float) -> torch.Tensor:
    """Cross-entropy of the main head plus ``aux_weight`` times that of the auxiliary head."""
    loss = F.cross_entropy(logits.float(), y)
    if logits_aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(logits_aux.float(), y)
    return loss


def job_fingerprint(cfg: DictConfig, job: EvalJob) -> tuple[str, dict[str, Any]]:
    """Hash of everything that determines the job's result (not device, logging or time slicing)."""
    train = OmegaConf.to_container(cfg.train, resolve=True)
    assert isinstance(train, dict)
    for k in _NEUTRAL_TRAIN_KEYS:
        train.pop(k, None)
    data = {"job": {k: v for k, v in job.to_json().items() if k != "name"},
            "train": train,
            "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
            # layout is execution only, but older versions hashed the bool: keep their fingerprints
            # (false and the new default auto hash as False; an explicit true as True)
            "precision": cfg.runtime.precision, "channels_last": str(cfg.runtime.channels_last).lower() == "true"}
    blob = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16], data


def validate_train(cfg: DictConfig) -> None:
    t = cfg.train
    checks = [
        (t.epochs >= 1, f"train.epochs must be >= 1, got {t.epochs}"),
        (t.batch_size >= 1, f"train.batch_size must be >= 1, got {t.batch_size}"),
        (t.lr > 0 and 0 <= t.lr_min <= t.lr, f"train.lr must be > 0 and train.lr_min in [0, lr], got {t.lr}, {t.lr_min}"),
        (0 <= t.momentum < 1, f"train.momentum must be in [0, 1), got {t.momentum}"),
        (t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}"),
        (t.grad_clip is None or t.grad_clip > 0, f"train.grad_clip must be > 0 or null, got {t.grad_clip}"),
        (t.init_channels >= 1 and t.layers >= 3, f"train.init_channels must be >= 1 and train.layers >= 3, got {t.init_channels}, {t.layers}"),
        (t.auxiliary_weight >= 0, f"train.auxiliary_weight must be >= 0, got {t.auxiliary_weight}"),
        (0 <= t.drop_path < 1, f"train.drop_path must be in [0, 1), got {t.drop_path}"),
        (t.cutout >= 0, f"train.cutout must be >= 0, got {t.cutout}"),
        (t.eval_every >= 0, f"train.eval_every must be >= 0, got {t.eval_every}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(msg)


class EvalTrainer:
    """Builds network, optimizer and data streams for one job; runs epochs; checkpoints."""

    def __init__(self, cfg: DictConfig, job: EvalJob, out_dir: Path, planned_epochs: int | None = None) -> None:
        """``planned_epochs``: how many epochs this invocation will train (default ``train.epochs``); a
        resumed or sliced run (``until``, ``train.stop_after``) compiles for what it has left to run."""
        validate_train(cfg)
        self.cfg, self.job, self.out_dir = cfg, job, Path(out_dir)
        self.ctx = dist.context()
        self.device = dist.local_device(cfg.runtime.device) if self.ctx.enabled else resolve_device(cfg.runtime.device)
        if cfg.runtime.num_threads:
            torch.set_num_threads(int(cfg.runtime.num_threads))
        seed_everything(int(job.seed), bool(cfg.runtime.deterministic))
        apply_switches(cfg.runtime.get("kernel_switches"))  # before any module is built
        t = cfg.train
        ds = load_dataset(cfg.dataset)
        self.num_classes = ds.num_classes
        c = int(ds.train_x.shape[1])
        self.image_shape = tuple(int(v) for v in ds.train_x.shape[1:])
        self.model = NetworkCIFAR(int(t.init_channels), ds.num_classes, int(t.layers),
                                  auxiliary=float(t.auxiliary_weight) > 0, genotype=job.genotype,
                                  in_channels=c).to(self.device)
        sync_bn = self.ctx.enabled and bool(cfg.runtime.sync_bn)
        if sync_bn:
            use_sync_batchnorm(self.model)
        why_not = (NO_CUDA if self.device.type != "cuda"
                   else "data-parallel training runs eagerly" if self.ctx.enabled else None)
        self.graphs = graphs_enabled(cfg.runtime.cuda_graphs, why_not)
        self.compiled = compile_enabled(cfg.runtime.compile,
                                        "BatchNorm synchronised across data-parallel ranks (runtime.sync_bn)"
                                        if sync_bn else toolchain_blocker(self.device), self.device)
        # auto: channels_last for the compiled network (runtime/layout.py)
        self.channels_last = channels_last_enabled(cfg.runtime.channels_last, auto=self.compiled)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # auto: Triton depthwise kernels for graph-replayed steps except compiled NCHW ones.  H200,
        # fp32, 2026-12-02: compiled NCHW 0.0553 s native vs 0.0583 s Triton; compiled channels_last
        # 0.0507 s native vs 0.0451 s Triton (there the kernels take only the convs cuDNN's NHWC
        # kernels are slow at: spaces/depthwise.py channels_last_route).  In bf16 only channels_last was
        # timed: H200, 2026-12-03, compiled channels_last bf16 0.0385 s native vs 0.0351 s Triton
        self.depthwise = resolve_kernel_impl(str(cfg.runtime.depthwise), self.device, "runtime.depthwise",
                                             replayed=self.graphs and (self.channels_last or not self.compiled),
                                             precision=str(cfg.runtime.precision),
                                             measured=("fp32", "bf16") if self.channels_last else ("fp32",))
        use_depthwise_impl(self.model, self.depthwise)
        self.conv1x1 = resolve_conv1x1(str(cfg.runtime.conv1x1), self.device)
        if use_conv1x1_impl(self.model, self.conv1x1) and "matmul" in self.conv1x1:
            match_conv_precision()  # the convs they replace compute in TF32 where cuDNN may
        n = ds.train_x.shape[0]
        if job.holdout > 0:
            train_idx, val_idx = search_split(n, 1.0 - float(job.holdout))
        else:
            train_idx, val_idx = torch.arange(n), None
        # what torch.compile covers (auto: the whole network for long single-process runs, where its
        # faster step repays the longer compilation; data-parallel runs were not measured with it);
        # None when uncompiled
        epochs = int(t.epochs) if planned_epochs is None else int(planned_epochs)
        steps = None if self.ctx.enabled else epochs * (len(train_idx) // int(t.batch_size))
        self.compile_scope = (resolve_compile_scope(cfg.runtime.get("compile_scope", "auto"), steps)
                              if self.compiled else None)
        self.branch_streams = resolve_branch_streams(
            str(cfg.runtime.get("branch_streams", "auto")), self.device, replayed=self.graphs,
            compiled_cells=self.compile_scope in ("cells", "model"), data_parallel=self.ctx.enabled)
        if self.branch_streams:
            use_branch_streams(self.model, self.device)
        #: functions torch.compile could not compile and ran eagerly (runtime.compile=auto suppresses errors)
        self.compile_fallbacks: list[str] = []
        if self.compile_scope is not None:
            take_fallbacks()  # forget another job's
            compile_module(self.model, cfg.runtime, EVAL_COMPILE_OPTIONS, scope=self.compile_scope)
        self.opt = weight_sgd(self.model.parameters(), float(t.lr), float(t.momentum), float(t.weight_decay),
                              bool(t.nesterov), self.device, self.graphs)
        # drop-path probability in device memory: read by the captured step, and a compiled cell
        # would recompile for every new Python float
        self._drop = torch.zeros((), device=self.device)
        if self.graphs:
            self._graph = GraphedStep(self._step, warmup=2)
        data = DeviceData.from_arrays(ds.train_x, ds.train_y, ds.mean, ds.std, self.device)
        self.val: DeviceData | None = (
            DeviceData(data.x[val_idx.to(self.device)], data.y[val_idx.to(self.device)], data.mean, data.std)
            if val_idx is not None else None)
        self.test = (DeviceData.from_arrays(ds.test_x, ds.test_y, ds.mean, ds.std, self.device)
                     if job.report_test else None)
        gen = torch.Generator(device=self.device).manual_seed(int(job.seed) * 1000 + 7)
        global_bs = int(t.batch_size)
        if len(train_idx) < global_bs:
            raise ConfigError(f"train.batch_size {global_bs} exceeds the {len(train_idx)} training images")
        # Every rank draws the same global batch (same generator seed) and keeps its shard:
        # the union over ranks is exactly the single-process batch.
        self.stream = BatchStream(data, train_idx.to(self.device), global_bs, augment=bool(t.augment),
                                  padding=ds.crop_padding, cutout=int(t.cutout), generator=gen, drop_last=True)
        self.params = count_parameters(self.model)
        self.ddp_model: torch.nn.Module = self.model
        if self.ctx.enabled:
            self.ddp_model = dist.wrap_ddp(self.model, self.device)

    # ------------------------------------------------------------------ pieces
    def begin_epoch(self, epoch: int) -> tuple[float, float]:
        """Set epoch ``epoch``'s lr and drop-path probability, train mode; returns (lr, p).

        Shared by :meth:`train_epoch` and ``nas-bench`` so both time the same step state."""
        t = self.cfg.train
        epochs = int(t.epochs)
        lr = cosine_lr(epoch, epochs, float(t.lr), float(t.lr_min))
        set_lr(self.opt, lr)
        p = drop_path_prob(float(t.drop_path), epoch, epochs)
        if self.graphs or self.compiled:
            self._drop.fill_(p)
            self.model.drop_path_prob = self._drop  # type: ignore[assignment]
        else:
            self.model.drop_path_prob = p
        self.model.train()
        return lr, p

    def train_epoch(self, epoch: int) -> dict[str, float]:
        lr, p = self.begin_epoch(epoch)
        acc = Accumulator(self.device)
        for x, y in self.stream.epoch():
            loss, correct, count = self.train_step(x, y)
            acc.add(loss, correct, count)
        loss_v, acc_v = dist.reduce_metrics(acc, self.ctx)
        return {"train_loss": loss_v, "train_acc": acc_v, "lr": lr, "drop_path": p}

    def new_compile_fallbacks(self) -> list[str]:
        """The functions torch.compile gave up on (and ran eagerly) since the last call, one line each."""
        new = [e for e in take_fallbacks() if e not in self.compile_fallbacks] if self.compiled else []
        self.compile_fallbacks += new
        return new

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One SGD step on a global batch (sharded across ranks); returns (loss, correct, count) on device.

        With CUDA graphs the step is replayed from a graph after two eager warm-up steps."""
        x, y = dist.shard(x, y, self.ctx)
        loss, correct = self._graph(x, y) if self.graphs else self._step(x, y)
        return loss, correct, int(y.shape[0])

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.cfg.train
        x = self._layout(x)
        with autocast(self.device, self.cfg.runtime.precision):
            logits, logits_aux = self.ddp_model(x)
        loss = eval_loss(logits, logits_aux, y, float(t.auxiliary_weight))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(t.grad_clip))
        self.opt.step()
        return loss.detach(), (logits.argmax(1) == y).sum()

    def _batches(self, data: DeviceData) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        bs = int(self.cfg.train.eval_batch_size)
        for i in range(0, len(data), bs):
            yield normalize(data.x[i:i + bs], data.mean, data.std), data.y[i:i + bs]

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the network's memory layout (a mismatch makes every conv convert)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def evaluate(self, data: DeviceData) -> tuple[float, float]:
        self.model.eval()
        try:
            return evaluate(lambda x: self.model(self._layout(x))[0], self._batches(data), self.device)
        finally:
            self.model.train()

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "rng": rng_state(),
                "stream": self.stream.state_dict()}

    def load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        load_optimizer_state(self.opt, ckpt["opt"])
        set_rng_state(ckpt["rng"])
        self.stream.load_state_dict(ckpt["stream"])


def _finished_summary(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    path = out_dir / "summary.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        if summary.get("config_fingerprint") == fingerprint and summary.get("status") == "complete":
            return summary
    return None


def job_status(cfg: DictConfig, job: EvalJob, out_dir: Path) -> dict[str, Any]:
    """Progress of a job from its files only: {"status": complete|partial|new, "epoch", "rows"}."""
    fp, _ = job_fingerprint(cfg, job)
    out_dir = Path(out_dir)
    done = _finished_summary(out_dir, fp)
    rows = read_jsonl(out_dir / "metrics.jsonl") if (out_dir / "metrics.jsonl").is_file() else []
    if done is not None:
        return {"status": "complete", "epoch": done["epochs"], "rows": rows, "summary": done}
    return {"status": "partial" if rows else "new", "epoch": len(rows), "rows": rows}


def train_eval_network(cfg: DictConfig, job: EvalJob, out_dir: Path, until: int | None = None) -> dict[str, Any]:
    """Train (or resume, or report a finished) job in ``out_dir`` up to epoch ``until`` (None = all).

    Returns the summary (status "complete") or ``{"status": "partial", "epoch": k}``.
    """
    out_dir = Path(out_dir)
    ctx = dist.context()
    main = ctx.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint, spec = job_fingerprint(cfg, job)
    t = cfg.train
    epochs = int(t.epochs)
    target = epochs if until is None else min(epochs, int(until))
    done = _finished_summary(out_dir, fingerprint)
    if done is not None:
        return done
    resume = str(cfg.resume).lower()
    ckpt_path = out_dir / "checkpoint.pt"
    ckpt: dict[str, Any] | None = None
    if ckpt_path.exists() and resume != "false":
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("fingerprint") != fingerprint:
            raise ConfigError(f"{out_dir} holds an evaluation run with different settings; "
                              f"use another output directory or resume=false to overwrite it")
    elif resume == "true":
        raise ConfigError(f"resume=true but there is no checkpoint.pt in {out_dir}")
    elif resume == "false" and main:
        for name in EVAL_FILES:
            (out_dir / name).unlink(missing_ok=True)
    if ckpt is not None and int(ckpt["epoch"]) >= target and target < epochs:
        return {"status": "partial", "epoch": int(ckpt["epoch"]), "name": job.name}

    start = int(ckpt["epoch"]) if ckpt is not None else 0
    stop_at = target if t.stop_after is None else min(target, start + int(t.stop_after))
    # compiled for the epochs this invocation runs: stage 2's first 20 epochs before early
    # elimination compile per cell, the survivors' remaining 580 epochs the whole network
    tr = EvalTrainer(cfg, job, out_dir, planned_epochs=max(0, stop_at - start))
    env = environment_info(tr.device)
    state: dict[str, Any] = {"epoch": 0, "elapsed": 0.0, "history": []}
    if ckpt is not None:
        tr.load_state(ckpt["trainer"])
        state = {k: ckpt[k] for k in ("epoch", "elapsed", "history")}
    if main:
        atomic_write_json(out_dir / "genotype.json", job.genotype.to_json())
        atomic_write_json(out_dir / "job.json", {**job.to_json(), "fingerprint": fingerprint})
        console.print(f"[bold]{job.stage}[/] {job.name} seed {job.seed}: {tr.params / 1e6:.3f}M params, "
                      f"epochs {state['epoch']}->{target}/{epochs}, device {tr.device}, {out_dir}")
        if tr.compiled and state["epoch"] < stop_at:
            # H200, 2026-12-02/03: 90-139 s of Inductor and Triton compilation before the first timed step;
            # autotuning options took over 250 s (runtime.compile_options, docs/speed.md)
            tuned = " with the defaults; longer with autotuning runtime.compile_options" if cfg.runtime.get(
                "compile_options") else ""
            # nothing else prints while Inductor works: say how long it took on the H200 (nineteenth
            # session: the whole network as one graph 175-239 s, per cell 116-146 s; per branch ~50 s)
            scope = tr.compile_scope
            took = (f"175-240 s measured on an H200 for the whole network as one graph{tuned}; "
                    "runtime.compile_scope=cells compiles in 90-150 s for a slower step" if scope == "model"
                    else f"about 50 s measured on an H200 per branch{tuned}" if scope == "branches"
                    else f"90-150 s measured on an H200{tuned}")
            console.print("[dim]  compiling the network with torch.compile: the first epoch starts after "
                          f"the compilation ({took}); nothing is printed meanwhile[/dim]")
    eval_every = int(t.eval_every)
    for epoch in range(state["epoch"], stop_at):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1, **tr.train_epoch(epoch)}
        failed = tr.new_compile_fallbacks()
        if failed and main:
            log = atomic_write_text(out_dir / FALLBACK_LOG, fallback_tracebacks(tr.compile_fallbacks))
            console.print(f"[yellow]{fallback_text(failed)}[/]; that part runs eagerly (slower); "
                          f"the tracebacks are in {log}; runtime.compile=true stops with the error instead",
                          soft_wrap=True)  # the terminal wraps it: the path stays whole, copyable
        if not math.isfinite(row["train_loss"]):
            raise TrainingDiverged(f"{job.name}: loss became {row['train_loss']} in epoch {epoch + 1}; "
                                   f"lower train.lr and rerun with resume=false")
        do_eval = (eval_every and (epoch + 1) % eval_every == 0) or epoch + 1 in (epochs, target)
        for split, data in (("val", tr.val), ("test", tr.test)):
            loss = acc = None
            if data is not None and do_eval:
                loss, acc = tr.evaluate(data)
            row[f"{split}_loss"], row[f"{split}_acc"] = loss, acc
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        row["epoch_time"] = time.perf_counter() - t0
        state["history"].append(row)
        state["epoch"] = epoch + 1
        state["elapsed"] += row["epoch_time"]
        if main:
            save_checkpoint(ckpt_path, {"format": 1, "fingerprint": fingerprint, "spec": spec,
                                        "epoch": state["epoch"], "elapsed": state["elapsed"],
                                        "history": state["history"], "trainer": tr.state()})
            atomic_write_jsonl(out_dir / "metrics.jsonl", state["history"])
            if (epoch + 1) % max(int(t.log_every), 1) == 0 or epoch + 1 == stop_at:
                console.print(f"  {job.name} epoch {epoch + 1:>3}/{epochs}  loss {row['train_loss']:.4f}  "
                              f"acc {row['train_acc']:.4f}  "
                              + (f"val_acc {row['val_acc']:.4f}  " if row["val_acc"] is not None else "")
                              + (f"test_acc {row['test_acc']:.4f}  " if row["test_acc"] is not None else "")
                              + f"{row['epoch_time']:.1f}s")
        dist.barrier(ctx)
    if state["epoch"] < epochs:
        return {"status": "partial", "epoch": state["epoch"], "name": job.name}
    last = state["history"][-1]
    hours = state["elapsed"] / 3600.0
    summary = {
        "status": "complete", "stage": job.stage, "search_space": "darts", "dataset": cfg.dataset.name,
        "name": job.name, "seed": job.seed, "tag": cfg.tag, "epochs": epochs,
        "genotype": job.genotype.to_json(), "params": tr.params,
        "multiply_adds": count_multiply_adds(tr.model, tr.image_shape),
        "holdout": job.holdout,
        "final": {k: last.get(k) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                                           "test_acc")},
        "val_acc": last.get("val_acc"), "test_acc": last.get("test_acc"),
        "test_error": None if last.get("test_acc") is None else 100.0 * (1.0 - last["test_acc"]),
        "train_seconds": state["elapsed"],
        "gpu_hours": hours * ctx.world_size if tr.device.type == "cuda" else 0.0,
        "cpu_hours": hours * ctx.world_size if tr.device.type != "cuda" else 0.0,
        "world_size": ctx.world_size,
        "device": env.get("gpu", str(tr.device)), "config_fingerprint": fingerprint,
        "train": spec["train"],
        # what the auto settings resolved to (as a search's summary.json records its own)
        "execution": {"cuda_graphs": tr.graphs, "compiled": tr.compiled, "channels_last": tr.channels_last,
                      "compile_scope": tr.compile_scope, "depthwise": tr.depthwise,
                      "branch_streams": tr.branch_streams,
                      "compile_fallbacks": tr.compile_fallbacks},
    }
    if main:
        atomic_write_json(out_dir / "summary.json", summary)
        console.print(kv_table(f"{job.stage} result: {job.name} (seed {job.seed})", [
            ("params", f"{tr.params / 1e6:.3f}M"), ("val acc", summary["val_acc"]),
            ("test acc", summary["test_acc"]), ("time", f"{state['elapsed']:.1f} s"), ("outputs", str(out_dir))]))
    dist.barrier(ctx)
    return summary

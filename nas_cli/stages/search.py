"""Stage 1: architecture search.

Composes the run from config through the registries (space, relaxation,
architecture optimizer, objective, dataset), trains with the GPU-resident data
pipeline, and writes the documented outputs (docs/outputs.md) atomically after
every epoch.  ``checkpoint.pt`` is the source of truth: on resume every derived
file is rewritten from it, so a run killed at any instant resumes to exactly
the result of an uninterrupted run.

Data parallel (``torchrun --nproc_per_node=N -m nas_cli ...``, see
``nas_cli/runtime/distributed.py``): every rank draws the same global weight and
architecture batches and steps on its shard; the objective seam
(``StepContext``) averages weight and architecture gradients over ranks, so
weights and architecture parameters stay bit-identical and every rank exports
the same genotype.  BatchNorm normalises with per-rank batch statistics (as DDP
does); the running statistics are averaged over ranks at the end of every epoch,
before validation and the checkpoint.  Validation and test batches are split
over ranks and their metrics summed.  Only rank 0 writes files and prints.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from nas_cli.arch import ArchParameters
from nas_cli.arch.hard_forward import FreezeUnselected, resolve_hard_forward
from nas_cli.config import validate
from nas_cli.data import BatchStream, DeviceData, load_dataset
from nas_cli.data.splits import make_search_split
from nas_cli.errors import ConfigError, TrainingDiverged
from nas_cli.objectives import OBJECTIVES, Batch, Objective, StepContext
from nas_cli.optim import ARCH_OPTIMIZERS, build_arch_optimizer
from nas_cli.runtime import distributed as dist
from nas_cli.runtime.compile import compile_enabled, compile_module, search_compile_blocker
from nas_cli.runtime.checkpoint import (config_diff, config_fingerprint, load_checkpoint, same_run_config,
                                        save_checkpoint)
from nas_cli.runtime.console import console, kv_table, make_progress
from nas_cli.runtime.device import resolve_device
from nas_cli.runtime.env import environment_info
from nas_cli.runtime.graphs import GraphedForward, load_optimizer_state, make_capturable, weight_sgd
from nas_cli.runtime.optstate import load_optimizer_state_by_name, optimizer_state_by_name
from nas_cli.runtime.layout import channels_last_enabled
from nas_cli.runtime.preflight import check_device_settings
from nas_cli.runtime.io import atomic_save_npz, atomic_write_json, atomic_write_jsonl, atomic_write_text
from nas_cli.runtime.seed import rng_state, seed_everything, set_rng_state
from nas_cli.runtime.switches import apply_switches
from nas_cli.spaces import SPACES
from nas_cli.spaces.batchnorm import resolve_impl as resolve_bn_impl
from nas_cli.spaces.batchnorm import use_batchnorm_impl, use_sync_batchnorm
from nas_cli.spaces.depthwise import use_depthwise_impl
from nas_cli.spaces.mixing import use_mixing_impl
from nas_cli.spaces.pointwise import use_pointwise_impl
from nas_cli.spaces.triton_support import resolve_kernel_impl
from nas_cli.spaces.base import RelaxationSpec, SearchSpace, count_parameters
from nas_cli.stages.common import Accumulator, cosine_lr, evaluate, linear_tau, set_lr
from nas_cli.stages.hooks import EpochHook, build_epoch_hooks
from nas_cli.stages.selection import Selector, build_selector
from nas_cli.stages.stepper import build_search_stepper, uses_graphs

OUTPUT_FILES = ("metrics.jsonl", "genotype.json", "arch_history.npz", "checkpoint.pt", "summary.json")


@dataclass
class SearchRun:
    """Everything built from the config for one search."""

    cfg: DictConfig
    out_dir: Path
    device: torch.device
    space: SearchSpace
    relax: RelaxationSpec
    model: torch.nn.Module
    arch: ArchParameters
    objective: Objective
    ctx: StepContext
    train_stream: BatchStream
    arch_stream: BatchStream
    val_stream: BatchStream | None
    test_data: DeviceData
    num_classes: int
    selector: Selector
    hooks: list[EpochHook]
    #: whether the architecture optimizer updates anything (False: optimizer=none, random search)
    arch_trainable: bool = True
    #: effective weights of the latest selection (validation / final test use them)
    selected: dict[str, torch.Tensor] | None = None
    #: data-parallel layout (world_size 1 = one process)
    world: dist.DistContext = dist.DistContext()
    #: what the auto settings resolved to ({"cuda_graphs", "fused_cells", "channels_last", "batchnorm", "depthwise",
    #: "pointwise", "mixing", and "hard_forward" for one-hot methods}): run header, summary.json, checkpoints
    execution: dict[str, Any] = field(default_factory=dict)
    #: eval-mode forwards of the supernet replayed from CUDA graphs (runs whose step is graph-replayed)
    eval_graph: GraphedForward | None = None

    @property
    def hard_forward(self) -> str | None:
        """How one-hot samples run ("selected" / "masked"; None for mixtures)."""
        return self.execution.get("hard_forward")

    @property
    def fused_cells(self) -> bool:
        """Whether the supernet was built with fused cells (runtime.fused, unless a one-hot sample
        runs its selected ops only: then the per-edge reference cells)."""
        return bool(self.execution.get("fused_cells"))

    def eval_forward(self, x: torch.Tensor, arch_weights: dict[str, torch.Tensor],
                     model: torch.nn.Module) -> torch.Tensor:
        """Logits of an evaluation forward (validation, test, candidate scoring; caller sets eval
        mode and no_grad): from a CUDA graph when the run replays its steps, else eagerly."""
        if self.eval_graph is not None and model is self.model:
            return self.eval_graph(x, arch_weights)
        return self.ctx.forward(x, arch_weights, model)

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        """This rank's part of a global batch (the whole batch in one process)."""
        return Batch(*dist.shard(x, y, self.world))


def build_run(cfg: DictConfig, out_dir: Path) -> SearchRun:
    validate(cfg)
    dctx = dist.context()
    device = dist.local_device(cfg.runtime.device) if dctx.enabled else resolve_device(cfg.runtime.device)
    if cfg.runtime.num_threads:
        torch.set_num_threads(int(cfg.runtime.num_threads))
    seed_everything(int(cfg.seed), bool(cfg.runtime.deterministic))
    apply_switches(cfg.runtime.get("kernel_switches"))  # before any module is built

    dataset = load_dataset(cfg.dataset)
    space = SPACES.get(cfg.search_space.name)(cfg.search_space)
    r = cfg.method.relaxation
    relax = RelaxationSpec(partial_channels=int(r.partial_channels), learn_edges=bool(r.learn_edges),
                           sampling=str(r.sampling))
    c, h, w = dataset.train_x.shape[1:]
    graphs = uses_graphs(cfg, device)
    hard_forward = resolve_hard_forward(cfg, graphs)
    model = space.build_supernet(dataset.num_classes, int(c), relax, fused=bool(cfg.runtime.fused),
                                 hard_forward=hard_forward or "selected").to(device)
    # auto: NCHW (the supernets' steps were measured slower in channels_last; runtime/layout.py)
    channels_last = channels_last_enabled(cfg.runtime.channels_last, auto=False)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    prec = str(cfg.runtime.precision)
    # what the auto settings resolved to: shown in the run header and kept in summary.json
    execution: dict[str, Any] = {
        "cuda_graphs": graphs, "fused_cells": bool(getattr(model, "fused", False)), "channels_last": channels_last,
        "batchnorm": resolve_bn_impl(str(cfg.runtime.batchnorm), device, replayed=graphs),
        "depthwise": resolve_kernel_impl(str(cfg.runtime.depthwise), device, "runtime.depthwise",
                                         replayed=graphs, precision=prec),
        "pointwise": resolve_kernel_impl(str(cfg.runtime.pointwise), device, "runtime.pointwise",
                                         replayed=graphs, precision=prec),
        "mixing": resolve_kernel_impl(str(cfg.runtime.mixing), device, "runtime.mixing",
                                      replayed=graphs, precision=prec),
        **({"hard_forward": hard_forward} if hard_forward else {}),
    }
    use_batchnorm_impl(model, execution["batchnorm"])
    use_depthwise_impl(model, execution["depthwise"])
    use_pointwise_impl(model, execution["pointwise"])
    use_mixing_impl(model, execution["mixing"])
    if dctx.enabled and cfg.runtime.sync_bn:
        use_sync_batchnorm(model)  # before the objective copies the model (Moreau, F2BA)
    if compile_enabled(cfg.runtime.compile, search_compile_blocker(cfg, device), device, auto=False):
        compile_module(model, cfg.runtime)
    arch = ArchParameters(space.arch_specs(relax), r.parameterization, r.sampling,
                          init_std=float(r.init_std), seed=int(cfg.seed)).to(device)

    s = cfg.search
    w_opt = weight_sgd(model.parameters(), float(s.lr), float(s.momentum), float(s.weight_decay),
                       bool(s.nesterov), device, graphs)
    if hard_forward == "masked":
        FreezeUnselected(w_opt, model)  # unselected ops keep weights and momentum, as in a reference step
    a_opt = build_arch_optimizer(arch.param_groups(cfg.optimizer.lr, cfg.optimizer.edge_lr), cfg.optimizer)
    if graphs:
        make_capturable(a_opt)
    ctx = StepContext(model, arch, w_opt, a_opt, device, grad_clip=s.grad_clip,
                      arch_grad_clip=cfg.optimizer.grad_clip, entropy_reg=float(cfg.optimizer.entropy_reg),
                      precision=cfg.runtime.precision, channels_last=channels_last,
                      per_example_clip=cfg.optimizer.get("per_example_clip"), dist_ctx=dctx)
    objective = OBJECTIVES.get(cfg.objective.name)(cfg.objective, ctx)

    n = dataset.train_x.shape[0]
    if objective.uses_split:
        split = make_search_split(dataset, cfg.dataset, float(cfg.objective.train_portion))
        w_idx, a_idx, with_test = split.weights, split.arch, split.uses_test
    else:
        w_idx = a_idx = torch.arange(n)
        with_test = False
    # the NB201 protocol draws architecture batches from test images: then the pool is train + test
    pool_x = torch.cat([dataset.train_x, dataset.test_x]) if with_test else dataset.train_x
    pool_y = torch.cat([dataset.train_y, dataset.test_y]) if with_test else dataset.train_y
    data = DeviceData.from_arrays(pool_x, pool_y, dataset.mean, dataset.std, device)
    test = DeviceData.from_arrays(dataset.test_x, dataset.test_y, dataset.mean, dataset.std, device)
    gens = {k: torch.Generator(device=device).manual_seed(int(cfg.seed) * 1000 + i)
            for i, k in enumerate(("train", "arch", "val"))}
    pad = dataset.crop_padding
    aug = bool(s.augment)
    arch_bs = int(s.arch_batch_size or s.batch_size)
    dist.check_divisible(int(s.batch_size), "search.batch_size", dctx)
    dist.check_divisible(arch_bs, "search.arch_batch_size", dctx)
    for name, size in (("weight", len(w_idx)), ("architecture", len(a_idx))):
        if size < 1:
            raise ConfigError(f"the {name} split is empty; use more data or another objective.train_portion")
    train_stream = BatchStream(data, w_idx.to(device), int(s.batch_size), augment=aug, padding=pad,
                               generator=gens["train"], drop_last=len(w_idx) >= int(s.batch_size))
    arch_stream = BatchStream(data, a_idx.to(device), arch_bs, augment=aug, padding=pad,
                              generator=gens["arch"], drop_last=len(a_idx) >= arch_bs)
    # Spec (training.md §3): validate on the arch split with the training augmentation, BN in eval mode.
    val_stream = (BatchStream(data, a_idx.to(device), int(s.eval_batch_size), augment=aug, padding=pad,
                              generator=gens["val"], drop_last=False)
                  if objective.uses_split else None)
    if hasattr(a_opt, "set_horizon"):  # optimizers that need the number of arch steps (XNAS wipe-out)
        arch_epochs = max(int(s.epochs) - int(cfg.objective.warmup_epochs), 1)
        a_opt.set_horizon(arch_epochs * math.ceil(len(train_stream) / int(cfg.objective.inner_steps)))
    return SearchRun(cfg, out_dir, device, space, relax, model, arch, objective, ctx, train_stream, arch_stream,
                     val_stream, test, dataset.num_classes, build_selector(cfg.method.selector),
                     build_epoch_hooks(cfg, space), ARCH_OPTIMIZERS.get(cfg.optimizer.name).trains, world=dctx,
                     execution=execution,
                     eval_graph=GraphedForward(lambda x, aw: ctx.forward(x, aw, model)) if graphs else None)


# ---------------------------------------------------------------------------- helpers

def _eval_weights(run: SearchRun) -> dict[str, torch.Tensor]:
    """Weights of the latest selection (method.selector); GDAS validates the one-hot argmax network."""
    if run.selected is None:
        run.selected = run.selector(run, int(run.cfg.search.epochs) - 1)  # resumed after the last epoch
    return run.selected


def _evaluate(run: SearchRun, batches: Any, max_batches: int | None) -> tuple[float, float]:
    model = run.objective.eval_model()
    was_training = model.training
    model.eval()
    aw = _eval_weights(run)
    try:
        return evaluate(lambda x: run.eval_forward(x, aw, model), _rank_rows(run, batches), run.device,
                        max_batches, finish=lambda acc: dist.reduce_metrics(acc, run.world))
    finally:
        model.train(was_training)


def _rank_rows(run: SearchRun, batches: Any) -> Any:
    """Evaluation batches split over ranks (BN in eval mode: the split changes nothing but speed)."""
    for x, y in batches:
        yield dist.shard_rows(x, run.world), dist.shard_rows(y, run.world)


def _entropy_summary(run: SearchRun) -> dict[str, float]:
    ent = run.arch.entropies()
    out = {f"entropy_{k}": v for k, v in ent.items()}
    ops = [v for k, v in ent.items() if run.arch.specs[k].kind == "ops"]
    edges = [v for k, v in ent.items() if run.arch.specs[k].kind == "edges"]
    out["entropy_ops"] = float(np.mean(ops)) if ops else None  # type: ignore[assignment]
    out["entropy_edges"] = float(np.mean(edges)) if edges else None  # type: ignore[assignment]
    return out


def _history_arrays(history: list[dict[str, torch.Tensor]], raw_history: list[dict[str, torch.Tensor]],
                    initial: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {"epoch": np.arange(1, len(history) + 1)}
    for name, init in initial.items():
        arrays[f"initial_{name}"] = init.numpy()
        if history:
            arrays[name] = np.stack([h[name].numpy() for h in history])
            arrays[f"raw_{name}"] = np.stack([h[name].numpy() for h in raw_history])
    return arrays


def _write_outputs(run: SearchRun, state: dict[str, Any]) -> None:
    out = run.out_dir
    atomic_write_jsonl(out / "metrics.jsonl", state["history"])
    atomic_save_npz(out / "arch_history.npz",
                    _history_arrays(state["arch_history"], state["raw_history"], state["initial_arch"]))
    if state["history"]:
        atomic_write_json(out / "genotype.json", _selected(run, state)["genotype"])


def _selected(run: SearchRun, state: dict[str, Any]) -> dict[str, Any]:
    """The epoch whose genotype the run returns (method.select)."""
    rows = state["history"]
    if run.cfg.method.select == "best_val":
        scored = [r for r in rows if r.get("val_acc") is not None]
        if scored:
            return max(scored, key=lambda r: (r["val_acc"], r["epoch"]))
    return rows[-1]


# ---------------------------------------------------------------------------- main loop

def run_search(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run (or resume, or report a finished) search in ``out_dir``; returns the summary."""
    # before resume=false deletes a previous run's files: a bad setting loses nothing
    validate(cfg)
    resolve_hard_forward(cfg, uses_graphs(cfg, check_device_settings(cfg)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = dist.context()
    main = world.is_main
    if not main:
        console.quiet = True  # rank 0 reports for everyone (errors still go to stderr)
    fingerprint, flat_cfg = config_fingerprint(cfg)
    ckpt_path = out_dir / "checkpoint.pt"
    resume = str(cfg.resume).lower()
    ckpt: dict[str, Any] | None = None
    if ckpt_path.exists() and resume != "false":
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.get("fingerprint") != fingerprint and not same_run_config(ckpt.get("config"), flat_cfg):
            raise ConfigError(
                f"{out_dir} holds a run with a different config ({config_diff(ckpt['config'], flat_cfg)}); "
                f"use another hydra.run.dir or resume=false to overwrite it")
    elif resume == "true":
        raise ConfigError(f"resume=true but there is no checkpoint.pt in {out_dir}")
    elif resume == "false" and main:
        for name in OUTPUT_FILES:
            (out_dir / name).unlink(missing_ok=True)

    run = build_run(cfg, out_dir)
    dist.barrier(world)  # every rank has read the checkpoint (or seen it deleted) before rank 0 writes
    s = cfg.search
    epochs = int(s.epochs)
    env = environment_info(run.device)
    if main:
        atomic_write_json(out_dir / "env.json", {**env, "world_size": world.world_size})
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    n_params = count_parameters(run.model)

    state: dict[str, Any]
    if ckpt is not None:
        state = _restore(run, ckpt)
        if state["epoch"] >= epochs:
            console.print(f"[green]search already complete[/] in {out_dir} ({epochs} epochs); nothing to do")
            if (out_dir / "summary.json").is_file():
                summary = json.loads((out_dir / "summary.json").read_text())
                if summary.get("config_fingerprint") == fingerprint:
                    _print_summary(summary, out_dir)
                    return summary
            return _finish(run, state, n_params, env, fingerprint, flat_cfg)
        console.print(f"[yellow]resuming[/] from epoch {state['epoch']} of {epochs} ({ckpt_path})")
    else:
        state = {"epoch": 0, "history": [], "arch_history": [], "raw_history": [],
                 "initial_arch": {k: v.cpu() for k, v in run.arch.probabilities().items()},
                 "elapsed": 0.0}

    stepper = build_search_stepper(run)
    console.print(kv_table("search", [
        ("method", cfg.method.name), ("space", cfg.search_space.name), ("dataset", cfg.dataset.name),
        ("optimizer", cfg.optimizer.name), ("objective", cfg.objective.name), ("seed", cfg.seed),
        ("device", str(run.device) + (f" x {world.world_size} processes" if world.enabled else "")),
        ("step", stepper.name), ("kernels", _execution_text(run)), ("supernet params", f"{n_params:,}"),
        ("output", str(out_dir))]))
    if "triton" in run.execution.values():
        console.print("[dim]Triton kernels are compiled on their first use on a machine (about a minute "
                      "before the first steps; cached for later runs)[/dim]")

    inner = int(cfg.objective.inner_steps)
    stop_at = epochs if s.stop_after is None else min(epochs, state["epoch"] + int(s.stop_after))
    steps = len(run.train_stream)
    first_epoch, stale_bn_noted, warmup = state["epoch"], False, _warmup_note(run)
    with make_progress() as progress:
        task = progress.add_task("epoch", total=steps, stats="")
        for epoch in range(state["epoch"], stop_at):
            t0 = time.perf_counter()
            lr, arch_on = begin_epoch(run, epoch)
            acc = Accumulator(run.device)
            progress.reset(task, total=steps, description=f"epoch {epoch + 1}/{epochs}", stats="")
            # every rank draws the same global batches and steps on its shard of them
            next_arch = lambda: run.shard(*run.arch_stream.sample())  # noqa: E731
            for i, (x, y) in enumerate(run.train_stream.epoch()):
                out = stepper(run.shard(x, y), next_arch, arch_on and i % inner == 0)
                acc.add(out.loss, out.correct, out.count)
                if (i + 1) % max(int(s.log_every), 1) == 0 or i + 1 == steps:
                    loss_now, acc_now = dist.reduce_metrics(acc, world)  # same step on every rank
                    _check_finite(loss_now, epoch, i, state["epoch"], out_dir)
                    progress.update(task, completed=i + 1,
                                    stats=f"loss {loss_now:.3f} acc {acc_now:.3f} H {run.arch.entropies()[next(iter(run.arch.specs))]:.3f}")
            train_loss, train_acc = dist.reduce_metrics(acc, world)
            _check_finite(train_loss, epoch, steps, state["epoch"], out_dir)
            dist.average_buffers_([run.model, *run.objective.extra_modules()], world)
            run.selected = run.selector(run, epoch)
            val_loss = val_acc = None
            if run.val_stream is not None and s.val_every and (epoch + 1) % int(s.val_every) == 0:
                val_loss, val_acc = _evaluate(run, run.val_stream.epoch(), s.max_val_batches)
                run.val_stream.reset()  # a capped evaluation must not leave an epoch open
            if run.device.type == "cuda":
                torch.cuda.synchronize(run.device)
            dt = time.perf_counter() - t0
            probs = run.arch.probabilities()
            genotype = run.space.discretize(run.selected)
            row = {
                "epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                "val_loss": val_loss, "val_acc": val_acc, "lr": lr,
                "arch_lr": float(cfg.optimizer.lr), "arch_updates": arch_on, "tau": run.arch.tau
                if run.relax.sampling == "hard" else None,
                **_entropy_summary(run), "epoch_time": dt,
                "genotype": run.space.genotype_to_json(genotype),
            }
            for hook in run.hooks:
                row.update(hook.on_epoch_end(run, row))
            state["history"].append(row)
            state["arch_history"].append({k: v.cpu() for k, v in probs.items()})
            state["raw_history"].append({k: v.detach().cpu().clone() for k, v in run.arch.raw.items()})
            state["epoch"] = epoch + 1
            state["elapsed"] += dt
            if main:
                save_checkpoint(out_dir / "checkpoint.pt", _snapshot(run, state, fingerprint, flat_cfg))
                _write_outputs(run, state)
            console.print(
                f"epoch {epoch + 1:>3}/{epochs}  loss {train_loss:.4f}  acc {train_acc:.4f}  "
                f"val_acc {'-' if val_acc is None else f'{val_acc:.4f}'}  "
                f"H_ops {row['entropy_ops']:.4f}"
                + (f"  H_edges {row['entropy_edges']:.4f}" if row["entropy_edges"] is not None else "")
                + (f"  oracle {row['oracle_test_acc']:.2f}" if row.get("oracle_test_acc") is not None else "")
                + f"  lr {lr:.4g}  {dt:.1f}s"
                + (f"  [dim]{warmup}[/dim]" if epoch == first_epoch and warmup else ""))
            if val_loss is not None and not stale_bn_noted and _stale_bn_loss(run, val_loss):
                stale_bn_noted = True
                console.print(f"[dim]{_stale_bn_note(run, val_loss)}[/dim]")
    if state["epoch"] < epochs:
        console.print(f"[yellow]stopped after epoch {state['epoch']}/{epochs}[/] (search.stop_after); "
                      f"run the same command again to continue")
        dist.barrier(world)
        return {"status": "partial", "epoch": state["epoch"]}
    return _finish(run, state, n_params, env, fingerprint, flat_cfg)


def begin_epoch(run: SearchRun, epoch: int) -> tuple[float, bool]:
    """Per-epoch state before the steps of 0-based ``epoch``: weight lr, objective schedules, GDAS
    temperature, train mode.  Returns (lr, whether architecture steps run this epoch).

    Shared by the loop and ``nas-bench`` so the benchmark times the step in the loop's state."""
    cfg, s, r = run.cfg, run.cfg.search, run.cfg.method.relaxation
    epochs, warmup = int(s.epochs), int(cfg.objective.warmup_epochs)
    lr = cosine_lr(epoch, int(s.scheduler_epochs or epochs), float(s.lr), float(s.lr_min))
    set_lr(run.ctx.w_opt, lr)
    run.objective.on_epoch_start(epoch, epochs)
    run.arch.tau = linear_tau(epoch, epochs, float(r.tau_max), float(r.tau_min), warmup, str(r.tau_schedule))
    run.model.train()
    return lr, epoch >= warmup and run.arch_trainable


def _check_finite(loss: float, epoch: int, step: int, last_good: int, out_dir: Path) -> None:
    if not math.isfinite(loss):
        where = f"epoch {epoch + 1}, step {step}"
        kept = (f"checkpoint of epoch {last_good} in {out_dir} is kept" if last_good
                else "no checkpoint was written")
        raise TrainingDiverged(f"loss became {loss} at {where}; {kept}; lower search.lr or optimizer.lr "
                               f"(or set search.grad_clip) and rerun with resume=false")


def _snapshot(run: SearchRun, state: dict[str, Any], fingerprint: str, flat_cfg: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": 1,
        "fingerprint": fingerprint,
        "config": flat_cfg,
        "epoch": state["epoch"],
        "elapsed": state["elapsed"],
        "model": run.model.state_dict(),
        "arch": {k: v.detach().cpu() for k, v in run.arch.raw.items()},
        "w_opt": run.ctx.w_opt.state_dict(),
        # the same momentum under the model's state_dict names: resumable with the other runtime.fused
        "w_opt_by_name": optimizer_state_by_name(run.model, run.ctx.w_opt),
        # the parameter layout actually built (a one-hot "selected" supernet keeps per-edge cells)
        "fused": run.fused_cells,
        "hard_forward": run.hard_forward,
        "a_opt": run.ctx.a_opt.state_dict(),
        "objective": run.objective.state_dict(),
        "rng": rng_state(),
        "streams": {k: st.state_dict() for k, st in _streams(run).items()},
        "history": state["history"],
        "arch_history": state["arch_history"],
        "raw_history": state["raw_history"],
        "initial_arch": state["initial_arch"],
    }


def _restore_weight_optimizer(run: SearchRun, ckpt: dict[str, Any]) -> None:
    """Positional optimizer state when the parameter layout is the checkpoint's; otherwise (the
    run switched ``runtime.fused`` or ``runtime.hard_forward``) the momentum is re-laid out
    through the state_dict names."""
    fused = run.fused_cells
    # older checkpoints have no "fused" entry but kept runtime.fused in their config; before
    # runtime.hard_forward ("hard_forward" entry) it was the setting, which one-hot supernets ignored
    saved = ckpt.get("fused", ckpt.get("config", {}).get("runtime", {}).get("fused"))
    if run.hard_forward is not None and "hard_forward" not in ckpt:
        saved = False
    if saved is not None and bool(saved) != fused:
        if "w_opt_by_name" not in ckpt:
            raise ConfigError(f"this checkpoint was written with runtime.fused={str(bool(saved)).lower()} by an "
                              f"older nas_cli; resume it with runtime.fused={str(bool(saved)).lower()}")
        load_optimizer_state(run.ctx.w_opt, load_optimizer_state_by_name(run.model, run.ctx.w_opt, ckpt["w_opt"],
                                                                         ckpt["w_opt_by_name"]))
        return
    try:
        load_optimizer_state(run.ctx.w_opt, ckpt["w_opt"])
    except ValueError:  # parameter groups of another layout
        raise ConfigError("the checkpoint's weight-optimizer state does not fit this supernet; resume with "
                          "the runtime.fused setting it was written with") from None


def _streams(run: SearchRun) -> dict[str, BatchStream]:
    streams = {"train": run.train_stream, "arch": run.arch_stream}
    if run.val_stream is not None:
        streams["val"] = run.val_stream
    return streams


def _restore(run: SearchRun, ckpt: dict[str, Any]) -> dict[str, Any]:
    run.model.load_state_dict(ckpt["model"])
    run.arch.load_raw({k: v.to(run.device) for k, v in ckpt["arch"].items()})
    _restore_weight_optimizer(run, ckpt)
    run.ctx.a_opt.load_state_dict(ckpt["a_opt"])
    run.objective.load_state_dict(ckpt["objective"])
    set_rng_state(ckpt["rng"])
    for k, st in _streams(run).items():
        st.load_state_dict(ckpt["streams"][k])
    return {k: ckpt[k] for k in ("epoch", "elapsed", "history", "arch_history", "raw_history", "initial_arch")}


def _finish(run: SearchRun, state: dict[str, Any], n_params: int, env: dict[str, Any], fingerprint: str,
            flat_cfg: dict[str, Any]) -> dict[str, Any]:
    cfg = run.cfg
    if run.world.is_main:
        _write_outputs(run, state)
    chosen = _selected(run, state)
    last = state["history"][-1]
    test_loss, test_acc = _evaluate(run, _test_batches(run), None)
    genotype = run.space.genotype_from_json(chosen["genotype"])
    hours = state["elapsed"] / 3600.0 * run.world.world_size
    summary = {
        "status": "complete",
        "stage": "search",
        "method": cfg.method.name,
        "search_space": cfg.search_space.name,
        "dataset": cfg.dataset.name,
        "optimizer": cfg.optimizer.name,
        "objective": cfg.objective.name,
        "seed": int(cfg.seed),
        "tag": cfg.tag,
        "epochs": state["epoch"],
        "selected_epoch": chosen["epoch"],
        "select": cfg.method.select,
        "genotype": chosen["genotype"],
        "genotype_str": run.space.genotype_str(genotype),
        "final": {k: last[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "entropy_ops",
                                         "entropy_edges")},
        "supernet_test_loss": test_loss,
        "supernet_test_acc": test_acc,
        "supernet_params": n_params,
        "search_seconds": state["elapsed"],
        "world_size": run.world.world_size,
        "search_gpu_hours": hours if run.device.type == "cuda" else 0.0,
        "search_cpu_hours": hours if run.device.type != "cuda" else 0.0,
        "device": env.get("gpu", str(run.device)),
        "config_fingerprint": fingerprint,
        "extra_memory_bytes": run.objective.extra_memory_bytes(),
        # how it executed (the auto settings resolved; the same math either way)
        "execution": dict(run.execution),
    }
    for hook in run.hooks:
        summary.update(hook.on_finish(run, summary))
    if run.world.is_main:
        atomic_write_json(run.out_dir / "summary.json", summary)
    _print_summary(summary, run.out_dir)
    dist.barrier(run.world)  # no rank returns (and maybe starts the next stage) before the files exist
    return summary


def _warmup_note(run: SearchRun) -> str:
    """What the first epoch of an invocation also paid for, so its time is not read as the epoch time."""
    parts = (["Triton kernel compilation"] if "triton" in run.execution.values() else []) + (
        ["CUDA-graph capture"] if run.execution.get("cuda_graphs") else [])
    return f"(first epoch: includes {' and '.join(parts)}, once per run)" if parts else ""


def _stale_bn_loss(run: SearchRun, val_loss: float) -> bool:
    """Whether a one-hot method's validation loss is far above chance (10 x ln(classes)): the symptom of
    stale BN running estimates in the validated network, not of a diverged search."""
    return run.relax.sampling == "hard" and val_loss > 10.0 * math.log(max(run.num_classes, 2))


def _stale_bn_note(run: SearchRun, val_loss: float) -> str:
    """Why a one-hot method's validation loss can be in the hundreds, and the setting that changes it."""
    fix = ("search_space.track_running_stats=false validates with batch statistics instead"
           if "track_running_stats" in run.cfg.search_space else "")
    return (f"val_loss {val_loss:.1f}: validation runs BN in eval mode on running estimates, and the ops "
            "that the one-hot samples rarely select keep stale ones, which can inflate the loss far more than "
            "the accuracy; it is not a diverged search" + (f" ({fix})" if fix else ""))


def _execution_text(run: SearchRun) -> str:
    """``fused, bn function2, dw triton, ...``: what executes the step (``runtime.*`` resolved)."""
    names = {"batchnorm": "bn", "depthwise": "dw", "pointwise": "pw", "mixing": "mix", "hard_forward": "one-hot"}
    parts = ["fused" if run.fused_cells else "per-edge"]
    parts += ["channels_last"] if run.execution.get("channels_last") else []
    parts += [f"{names[k]} {v}" for k, v in run.execution.items() if k in names]
    return ", ".join(parts)


def _print_summary(summary: dict[str, Any], out_dir: Path) -> None:
    final = summary["final"]
    console.print(kv_table(
        f"search result: {summary['method']} on {summary['search_space']}/{summary['dataset']} "
        f"(seed {summary['seed']})", [
            ("genotype", summary["genotype_str"]),
            ("selected epoch", f"{summary['selected_epoch']} ({summary['select']})"),
            ("train acc", final["train_acc"]), ("val acc (supernet)", final["val_acc"]),
            ("test acc (supernet)", summary["supernet_test_acc"]), ("entropy ops", final["entropy_ops"]),
            ("entropy edges", final["entropy_edges"]), ("supernet params", f"{summary['supernet_params']:,}"),
            ("search time", f"{summary['search_seconds']:.1f} s"), ("outputs", str(out_dir))]))


def _test_batches(run: SearchRun) -> Any:
    from nas_cli.data.loader import normalize

    data = run.test_data
    bs = int(run.cfg.search.eval_batch_size)
    for i in range(0, data.x.shape[0], bs):
        yield normalize(data.x[i:i + bs], data.mean, data.std), data.y[i:i + bs]

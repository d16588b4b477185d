"""Worker for tests/test_ddp_search.py: run under ``torchrun`` (or imported, for the 1-process reference).

``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT_DIR bilevel,moreau search``
makes every rank

* run ``STEPS`` search steps of each listed objective on fixed global batches with the supernet in
  eval mode (BN uses its running statistics, so the loss of a batch is the mean of per-example
  losses and the 2-rank gradient average must equal the 1-process gradient), the same for
  ``bilevel`` in training mode with BN statistics synchronised over the ranks (the default) and
  per rank (``runtime.sync_bn=false``), and
* run a whole tiny search through ``run_search`` (with ``search``),

and save what it ended with to ``OUT_DIR/rank<r>.pt``: architecture parameters and gradients,
weights, genotype, and how many files the rank wrote itself (only rank 0 may write).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import TINY, make_cfg  # noqa: E402

#: a tiny search whose batches split evenly over 2 ranks
OVERRIDES = [*TINY, "search.batch_size=16", "search.eval_batch_size=64", "dataset.num_train=128",
             "dataset.num_test=64", "objective.warmup_epochs=0"]
OBJECTIVES = ("bilevel", "single_level", "bilevel_unrolled", "f2ba", "moreau")
STEPS = 2


def step_check(objective: str, extra: Sequence[str] = (), train_bn: bool = False) -> dict[str, Any]:
    """Architecture/weight state after ``STEPS`` steps on the same global batches, BN in eval mode
    (running statistics) or, with ``train_bn``, in training mode (batch statistics: synchronised
    over the ranks by default, runtime.sync_bn)."""
    from nas_cli.stages.search import build_run
    from nas_cli.stages.stepper import build_search_stepper

    # a large architecture step size so that two steps move the architecture visibly
    cfg = make_cfg([*OVERRIDES, f"objective={objective}", "optimizer.lr=5.0", "optimizer.edge_lr=5.0", *extra])
    run = build_run(cfg, Path("."))
    run.model.train(train_bn)
    stepper = build_search_stepper(run)
    initial = {k: v.detach().clone() for k, v in run.arch.raw.items()}
    batches = [(run.train_stream.sample(), run.arch_stream.sample()) for _ in range(STEPS)]
    for (x, y), (ax, ay) in batches:
        stepper(run.shard(x, y), lambda ax=ax, ay=ay: run.shard(ax, ay), True)
    return {"arch": {k: v.detach().clone() for k, v in run.arch.raw.items()}, "initial": initial,
            "arch_grads": [g.clone() for g in run.ctx.last_arch_grads or []],
            "weights": [p.detach().clone() for p in run.model.parameters()],
            "buffers": [b.detach().clone() for b in run.model.buffers() if torch.is_floating_point(b)]}


#: a small evaluation network (stage 2/3 trainer) whose batch splits evenly over 2 ranks
EVAL_OVERRIDES = ["experiment=demo", "runtime.compile=false", "dataset.num_train=128", "dataset.image_size=16",
                  "train.init_channels=8", "train.layers=5", "train.batch_size=32", "train.drop_path=0.0",
                  "train.auxiliary_weight=0.4"]


def eval_check(out_dir: Path, extra: Sequence[str] = (), steps: int = 2) -> dict[str, Any]:
    """Weights and BN statistics of the evaluation-network trainer after ``steps`` training steps
    on the same global batches (BN in training mode; synchronised over ranks by default).

    The genotype is DARTS-V2 with its max-pools replaced by average pools: a max-pool sends its
    gradient to the window's argmax, and float-rounding differences between the sharded and the
    whole-batch convolutions (~1e-7) flip near-ties, which moves early-layer gradients by ~1e-3
    (measured; in float64 both runs agree to 1e-13 with the max-pools too)."""
    import dataclasses

    from nas_cli.spaces.genotypes import get_genotype
    from nas_cli.stages.train_eval import EvalJob, EvalTrainer

    g = get_genotype("darts_v2")
    avg = [("avg_pool_3x3" if op == "max_pool_3x3" else op, i) for op, i in g.normal], \
          [("avg_pool_3x3" if op == "max_pool_3x3" else op, i) for op, i in g.reduce]
    genotype = dataclasses.replace(g, normal=avg[0], reduce=avg[1])
    tr = EvalTrainer(make_cfg([*EVAL_OVERRIDES, *extra]), EvalJob("g", genotype, 0), out_dir)
    tr.begin_epoch(0)
    losses = []
    for _, (x, y) in zip(range(steps), tr.stream.epoch()):
        losses.append(float(tr.train_step(x, y)[0]))
    return {"weights": [p.detach().clone() for p in tr.model.parameters()],
            "buffers": [b.detach().clone() for b in tr.model.buffers() if torch.is_floating_point(b)],
            "losses": losses}


def search(out_dir: Path, extra: Sequence[str] = ()) -> dict[str, Any]:
    """A whole tiny search; returns the final architecture, genotype and this rank's own file writes."""
    import nas_cli.stages.search as S

    built: list[Any] = []
    initial: dict[str, torch.Tensor] = {}
    writes: list[str] = []
    build_run = S.build_run

    def capture(*args: Any) -> Any:
        built.append(build_run(*args))
        initial.update({k: v.detach().clone() for k, v in built[-1].arch.raw.items()})
        return built[-1]

    def counting(fn: Any) -> Any:
        def wrapped(path: Any, *args: Any, **kwargs: Any) -> Any:
            writes.append(Path(path).name)
            return fn(path, *args, **kwargs)
        return wrapped

    names = ("build_run", "atomic_write_json", "atomic_write_jsonl", "atomic_save_npz", "atomic_write_text",
             "save_checkpoint")
    saved = {name: getattr(S, name) for name in names}
    S.build_run = capture
    for name in names[1:]:
        setattr(S, name, counting(saved[name]))
    try:  # the 1-process reference runs inside pytest: undo the patches afterwards
        summary = S.run_search(make_cfg([*OVERRIDES, *extra]), out_dir)
    finally:
        for name, fn in saved.items():
            setattr(S, name, fn)
    run = built[0]
    return {"arch": {k: v.detach().clone() for k, v in run.arch.raw.items()},
            "initial": initial,
            "genotype": summary["genotype"], "world_size": summary["world_size"], "writes": writes}


def main(argv: list[str]) -> None:
    """``OUT_DIR OBJECTIVE[,OBJECTIVE...] [search]``"""
    from nas_cli.runtime import distributed as dist

    out = Path(argv[0])
    objectives = [o for o in argv[1].split(",") if o] if len(argv) > 1 else list(OBJECTIVES)
    ctx = dist.context()
    result: dict[str, Any] = {"rank": ctx.rank, "world_size": ctx.world_size,
                              "steps": {o: step_check(o) for o in objectives}}
    if "bilevel" in objectives:  # BN in training mode: synchronised statistics, and per-rank ones
        result["steps_train"] = step_check("bilevel", train_bn=True)
        result["steps_train_plain"] = step_check("bilevel", ["runtime.sync_bn=false"], train_bn=True)
        result["eval"] = eval_check(out / f"eval{ctx.rank}")
    if "search" in argv[2:]:
        result["search"] = search(out / "search")
    torch.save(result, out / f"rank{ctx.rank}.pt")
    dist.barrier(ctx)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Time a search's validation pass: eval-mode forwards replayed from CUDA graphs vs eager.

A graph-replayed search also replays its evaluation forwards (``GraphedForward``,
nas_cli/runtime/graphs.py).  This times the validation pass the search loop runs every epoch
(``_evaluate`` over the architecture split's validation stream) both ways, on the same run:

    python benchmarks/validation_pass.py                                   # GAEA PC-DARTS, paper sizes on CUDA
    python benchmarks/validation_pass.py method=gdas search_space=nb201 search.batch_size=64
    python benchmarks/validation_pass.py dataset=cifar10 dataset.root=/data/cifar

On CPU (no graphs) it times the eager pass at demo sizes.  Timings exclude the first pass of each
mode (graph capture, cuDNN autotuning, Triton compilation).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from benchmarks.search_step import compose
    from nas_cli.stages.search import _evaluate, build_run

    cuda = torch.cuda.is_available()
    sizes = ["search_space.preset=paper", "search.batch_size=256", "dataset.num_train=50000"] if cuda else \
        ["search_space.preset=demo", "search.batch_size=32", "dataset.num_train=1024", "dataset.image_size=16"]
    cfg = compose(["method=gaea_pcdarts", "objective.warmup_epochs=0", *sizes, *sys.argv[1:]])
    run = build_run(cfg, Path("/tmp/nas-validation-bench"))
    run.selected = run.selector(run, 0)
    graph = run.eval_graph
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batches = len(run.val_stream) if run.val_stream is not None else 0
    print(f"{cfg.method.name} on {cfg.search_space.name}: {batches} validation batches of "
          f"{cfg.search.eval_batch_size} per pass, device {run.device}")
    for mode in (["graph"] if graph is not None else []) + ["eager"]:
        run.eval_graph = graph if mode == "graph" else None
        times = []
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            _evaluate(run, run.val_stream.epoch(), None)
            sync()
            times.append(time.perf_counter() - t0)
        print(f"{mode:6s} validation pass: first {times[0]:.2f} s (capture/compile), then "
              f"{min(times[1:]):.3f} s ({min(times[1:]) / max(batches, 1) * 1e3:.1f} ms per batch)")


if __name__ == "__main__":
    main()

"""NB201 step time with and without one of the fused NB201 cell's kernels (a module's switch, ``--flag``).

    python benchmarks/nb201_merge.py                 # the merged conv weight (spaces/conv_merge.py)
    python benchmarks/nb201_merge.py --flag source_inputs   # ReLU/skip/pool in one kernel (spaces/source_inputs.py)
    python benchmarks/nb201_merge.py --flag nhwc_convs      # the merged convs and their BN in NHWC (nb201_fused.py)
    python benchmarks/nb201_merge.py --flag nhwc_stats_split   # NHWC BN statistics over parts of each sample
    python benchmarks/nb201_merge.py --flag conv_unmerge       # the merged weight's gradient split in one kernel
    python benchmarks/nb201_merge.py --flag owner_masks        # a masked forward's BN-update masks in one gather
    python benchmarks/nb201_merge.py --flag select_convs --methods gdas   # one conv op per edge (masked training)
    python benchmarks/nb201_merge.py --steps 50 --methods gdas pcdarts   # pcdarts: the DARTS-space step

One process, the same step nas-bench times (``prepare_search``: data, stepper, architecture step), the
flag set before each step is built and captured.  Prints the median step time over ``--steps`` steps
after 4 warm-up steps, per method and setting, alternating settings twice to expose drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


#: --flag -> (its runtime.kernel_switches name, what it switches)
FLAGS = {"conv_merge": ("merge_kernel", "merge kernel"),
         "source_inputs": ("source_input_kernels", "source-input kernels"),
         "nhwc_convs": ("nhwc_convs", "NHWC convs"),
         "nhwc_stats_split": ("split_nhwc_stats", "split NHWC BN stats"),
         "conv_unmerge": ("unmerge_kernel", "unmerge kernel"),
         "owner_masks": ("owner_masks_at_once", "masks at once"),
         "select_convs": ("select_convs", "selected convs")}


def time_step(method: str, enabled: bool, steps: int, flag: str | list[str] = "conv_merge") -> float:
    """Median step time of ``method`` with the switches ``flag`` (one or several, set together) ``enabled``,
    through nas-bench's search seam and timer."""
    from benchmarks.search_step import compose
    from nas_cli.bench.measure import time_steps
    from nas_cli.bench.prepare import prepare_search
    switches = [f"+runtime.kernel_switches.{FLAGS[name][0]}={str(enabled).lower()}"
                for name in ([flag] if isinstance(flag, str) else flag)]
    # the NB201 methods at batch 64; a DARTS-space method (pcdarts, gaea_pcdarts) as its nas-bench workload
    space, batch = ("darts", 256) if "pcdarts" in method else ("nb201", 64)
    overrides = ["objective.warmup_epochs=0", "dataset.num_train=8192", "dataset.num_test=256", f"method={method}",
                 f"search_space={space}", "search_space.preset=paper", f"search.batch_size={batch}", *switches]
    prep = prepare_search(compose(overrides), "")
    try:
        timing, _, _ = time_steps(prep.step, prep.device, steps, warmup=4)
    finally:
        prep.keep.cleanup()
    return timing.median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--methods", nargs="+", default=["gdas", "gaea_darts"])
    ap.add_argument("--flag", choices=sorted(FLAGS), nargs="+", default=["conv_merge"],
                    help="one switch, or several switched together")
    args = ap.parse_args()
    what = " + ".join(FLAGS[f][1] for f in args.flag)
    for method in args.methods:
        for enabled in (False, True, False, True):
            t = time_step(method, enabled, args.steps, args.flag)
            print(f"{method:12s} {what} {'on ' if enabled else 'off'}: {t:.5f} s per step", flush=True)


if __name__ == "__main__":
    main()

"""NB201 step time with and without the merged-conv-weight kernel (``spaces/conv_merge.py``, ``ENABLED``).

    python benchmarks/nb201_merge.py                 # GDAS and GAEA DARTS, paper preset, batch 64
    python benchmarks/nb201_merge.py --steps 50

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


def time_step(method: str, enabled: bool, steps: int) -> float:
    """Median step time of ``method`` with the kernel ``enabled``, through nas-bench's search seam and timer."""
    from benchmarks.search_step import compose
    from nas_cli.bench.measure import time_steps
    from nas_cli.bench.prepare import prepare_search
    from nas_cli.spaces import conv_merge

    conv_merge.ENABLED = enabled
    overrides = ["objective.warmup_epochs=0", "dataset.num_train=4096", "dataset.num_test=256", f"method={method}",
                 "search_space=nb201", "search_space.preset=paper", "search.batch_size=64"]
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
    args = ap.parse_args()
    for method in args.methods:
        for enabled in (False, True, False, True):
            print(f"{method:12s} merge kernel {'on ' if enabled else 'off'}: {time_step(method, enabled, args.steps):.5f} s per step",
                  flush=True)


if __name__ == "__main__":
    main()

"""The evaluation step with the experimental NHWC depthwise kernels on (``depthwise_nhwc.ENABLED``).

Runs ``nas-bench`` in this process with the module switch set, so every stride-1 depthwise conv of
the compiled channels_last evaluation network takes ``spaces/depthwise_nhwc.py``'s kernels instead of
cuDNN's NHWC kernels or the NCHW routing.  Arguments are passed to nas-bench:

  python benchmarks/eval_step_nhwc.py --steps 10 --warmup 4 --json nhwc.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from nas_cli.bench import main as bench_main
    from nas_cli.spaces import depthwise_nhwc

    depthwise_nhwc.ENABLED = True
    return bench_main(["--same-process", "--workloads", "eval_step", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())

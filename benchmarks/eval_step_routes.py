"""The evaluation step with the channels_last depthwise routes forced (``spaces/depthwise.py``).

Runs ``nas-bench`` in this process with ``depthwise.channels_last_policy`` set, so every depthwise conv
of the compiled channels_last evaluation network takes that route where it can (``cudnn``, ``nchw``,
``nhwc``, ``nhwc_wgrad``) instead of the measured rule (``measured``, the product default).  Other
arguments are passed to nas-bench:

  python benchmarks/eval_step_routes.py --policy nhwc --steps 10 --warmup 4 --json nhwc.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from nas_cli.bench import main as bench_main
    from nas_cli.spaces import depthwise

    args = sys.argv[1:]
    if args[:1] == ["--policy"] and len(args) > 1:
        if args[1] not in (*depthwise.CHANNELS_LAST_ROUTES, "measured"):
            raise SystemExit(f"--policy must be one of {', '.join(depthwise.CHANNELS_LAST_ROUTES)}, measured")
        depthwise.channels_last_policy = args[1]
        args = args[2:]
    return bench_main(["--same-process", "--workloads", "eval_step", *args])


if __name__ == "__main__":
    sys.exit(main())

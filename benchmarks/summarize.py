"""Print nas-bench JSON files as one compact line per row (for logs where the rich table is too wide).

usage: python benchmarks/summarize.py a.json [b.json ...]
"""

from __future__ import annotations

import json
import sys


def main(paths: list[str]) -> None:
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: unreadable ({e})")
            continue
        rows = data["rows"] if isinstance(data, dict) and "rows" in data else data
        for r in rows:
            if r.get("error"):
                print(f"{path}: {r['workload']:<22} ERROR {r['error'][:150]}")
                continue
            print(f"{path}: {r['workload']:<22} {r['variant']:<8} median {r['step_s_median']:.4f} s "
                  f"min {r['step_s_min']:.4f} warm-up {r.get('warmup_s', 0):6.1f} s "
                  f"peak {r.get('peak_mem_gb') or 0:.2f} GB  {r['precision']} cl={r['channels_last']} "
                  f"fused={r['fused']} graphs={r['cuda_graphs']} bn={r.get('batchnorm')} "
                  f"dw={r.get('depthwise')} pw={r.get('pointwise')} mix={r.get('mixing')} compile={r.get('compile')} {r['stepper']} {' '.join(r.get('overrides', []))}")


if __name__ == "__main__":
    main(sys.argv[1:])

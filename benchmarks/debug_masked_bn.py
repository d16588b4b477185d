"""Debug (sixth session): running statistics of the masked NB201 one-hot forward, native vs Triton BN.

The CUDA check of tests/depthwise_worker.py nb201 found them different (relative 1.42) while the loss
and gradients agreed; under the interpreter they agree. This prints, per buffer, the largest difference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.batchnorm import use_batchnorm_impl
    from nas_cli.spaces.depthwise import use_depthwise_impl
    from nas_cli.spaces.mixing import use_mixing_impl
    from nas_cli.spaces.nb201 import NB201Space

    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    for others in ("native", "triton"):
        for hard in ("", "masked"):
            g = torch.Generator(device=device).manual_seed(1)
            x = torch.randn(4, 3, 8, 8, device=device, generator=g)
            y = torch.randint(0, 10, (4,), device=device, generator=g)
            space = NB201Space({"init_channels": 4, "cells_per_stage": 1})
            relax = RelaxationSpec(sampling="hard" if hard else "mixture")
            torch.manual_seed(0)
            model = space.build_supernet(10, 3, relax, fused=True, **({"hard_forward": hard} if hard else {})).to(device)
            (spec,) = space.arch_specs(relax)
            w = torch.rand(spec.shape, generator=g, device=device) + 0.05
            w = (F.one_hot(w.argmax(-1), w.shape[-1]).float() if hard else w / w.sum(-1, keepdim=True)).requires_grad_(True)
            use_mixing_impl(model, others)
            use_depthwise_impl(model, others)
            initial = {k: v.clone() for k, v in model.state_dict().items()}
            bufs = {}
            for impl in ("native", "triton"):
                model.load_state_dict(initial)
                use_batchnorm_impl(model, impl)
                loss = F.cross_entropy(model(x, {spec.name: w}), y)
                loss.backward()
                torch.cuda.synchronize() if device == "cuda" else None
                bufs[impl] = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
            print(f"--- {hard or 'mixture'}, mixing/depthwise {others}, sample {w.argmax(-1).tolist()}")
            for k in bufs["native"]:
                a, b, i = bufs["triton"][k], bufs["native"][k], initial[k]
                d = (a - b).abs()
                if d.max() > 1e-5 * b.abs().max():
                    idx = int(d.argmax())
                    print(f"{k:45s} diff {float(d.max()):.3g} at {idx}: triton {float(a.flatten()[idx]):.4g} "
                          f"native {float(b.flatten()[idx]):.4g} initial {float(i.flatten()[idx]):.4g} "
                          f"channels differing {int((d > 1e-5).sum())}/{d.numel()}")


if __name__ == "__main__":
    main()

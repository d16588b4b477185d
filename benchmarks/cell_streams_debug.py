"""Compile a small evaluation network whose cells run on two streams (runtime.branch_streams) with
Inductor and run one training step; print the traceback if it fails.  Variants (argv):
``refake`` registers the stream ops' fake impls again before compiling, ``nocombo`` turns
Inductor's combo_kernels off, ``aot_eager`` uses that backend (no Inductor)."""

from __future__ import annotations

import sys
import traceback

import torch

from nas_cli.spaces.darts_eval import NetworkCIFAR
from nas_cli.spaces.genotypes import get_genotype


def main() -> None:
    variants = set(sys.argv[1:])
    torch.manual_seed(0)
    net = NetworkCIFAR(16, 10, 5, auxiliary=True, genotype=get_genotype("GAEA_PCDARTS_cifar10")).cuda()
    net = net.to(memory_format=torch.channels_last)
    side = torch.cuda.Stream()
    for cell in net.cells:
        cell.side_stream = side
    if "refake" in variants:
        import torch._dynamo.variables.streams as st

        for name in ("sync_dealloc", "record_event", "wait_event", "wait_stream", "record_stream"):
            op = getattr(st, name, None)
            print(name, "abstract fn before:", getattr(op, "_abstract_fn", "n/a"))
            if op is not None and getattr(op, "_abstract_fn", 1) is None:
                op.register_fake(lambda *a, **k: None)
    backend = "aot_eager" if "aot_eager" in variants else "inductor"
    options = None if backend != "inductor" else {"combo_kernels": "nocombo" not in variants}
    for cell in net.cells:
        cell.compile(backend=backend, dynamic=False, options=options)
    x = torch.randn(32, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    try:
        for _ in range(2):
            logits, aux = net(x)
            (logits.square().mean() + aux.square().mean()).backward()
        torch.cuda.synchronize()
        print("OK", variants, float(logits.float().square().mean()))
    except Exception:
        tb = traceback.format_exc().splitlines()
        print("\n".join(tb[-45:]))
        print("FAILED", variants)


if __name__ == "__main__":
    main()

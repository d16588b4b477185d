"""Every convolution of the paper-size evaluation network, timed per direction and layout.

Why: the compiled evaluation step spends most of its device time in convolution kernels (docs/speed.md
"Where the evaluation step's time goes"), but a graph-replayed kernel profile names kernels, not
layers.  This records each distinct convolution the network runs (input shape, channels, kernel,
stride, padding, dilation, groups; one forward with hooks), then times its forward, input gradient
and weight gradient with the native kernels in NCHW and in channels_last -- 10 calls captured in a
CUDA graph, the replay timed -- and prints them weighted by how often the network runs each one.

  python benchmarks/eval_convs.py                      # CUDA, the bench's eval_step sizes
  python benchmarks/eval_convs.py --genotype DARTS_V2
  python benchmarks/eval_convs.py --nhwc               # + the NHWC Triton depthwise kernels per direction
  python benchmarks/eval_convs.py --routes             # depthwise convs: forward+backward per channels_last route
  python benchmarks/eval_convs.py --routes --bf16      # the same under bf16 autocast (runtime.precision=bf16)
  python benchmarks/eval_convs.py --conv1x1            # dense 1x1 convs: cuDNN conv vs matmul vs Triton (runtime.conv1x1)
  python benchmarks/eval_convs.py --wgrad-finish       # NHWC depthwise weight gradient: finished straight into the weight's layout vs with a copy

``--routes`` times what ``runtime.depthwise=triton`` runs for a channels_last input
(``spaces/depthwise.py`` ``channels_last_route``): each route forced in turn, the module's forward and
both gradients in one graph (layout conversions included), beside the route the measured rule picks.
With ``--bf16`` the input is bf16 and the module runs under bf16 autocast, as in the trainer's
``runtime.precision=bf16`` (the routes were chosen from fp32 timings; cuDNN picks other kernels in bf16).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.conv_kernels import _time  # noqa: E402  (the CUDA-graph timer)


def conv_census(genotype: str, channels: int, layers: int, batch: int) -> Counter:
    """(input shape, out channels, kernel, stride, padding, dilation, groups) -> calls per forward."""
    from nas_cli.spaces.darts_eval import NetworkCIFAR
    from nas_cli.spaces.genotypes import get_genotype

    net = NetworkCIFAR(channels, 10, layers, True, get_genotype(genotype))
    census: Counter = Counter()

    def hook(mod: nn.Conv2d, inputs: tuple) -> None:
        census[(tuple(inputs[0].shape), mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.padding[0],
                mod.dilation[0], mod.groups)] += 1

    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(hook)
    net.train()
    with torch.no_grad():
        net(torch.zeros(batch, 3, 32, 32))
    return census


#: weight-gradient programs per SM tried by --nhwc (spaces/depthwise_nhwc.py _PROGRAMS_PER_SM)
WGRAD_PROGRAMS_PER_SM = (1, 2, 4, 8)


def _nhwc_times(shape: tuple, k: int, s: int, p: int, d: int, groups: int, repeats: int) -> list[float]:
    """fwd / dgrad / wgrad (one per WGRAD_PROGRAMS_PER_SM) us of the NHWC Triton kernels, checked
    against a float64 reference first; [] where they do not apply (not depthwise, or strided)."""
    from nas_cli.spaces import depthwise_nhwc as nh

    if groups != shape[1] or s != 1:
        return []
    dev = torch.device("cuda")
    x = torch.randn(shape, device=dev).to(memory_format=torch.channels_last)
    w = torch.randn(shape[1], 1, k, k, device=dev)
    y = torch.nn.functional.conv2d(x, w, None, 1, p, d, groups)
    gy = torch.randn_like(y)
    ours = (nh._conv(x, w, k, p, d, False), nh._grad_input(gy, x, w, k, p, d, False),
            nh._grad_weight(gy, x, w, k, p, d, False))
    xd, wd, gyd = x.double(), w.double(), gy.double()  # float64 reference
    ref = torch.ops.aten.convolution_backward(gyd, xd, wd, None, [1, 1], [p, p], [d, d], False, [0, 0], groups,
                                              [True, True, False])
    yd = torch.nn.functional.conv2d(xd, wd, None, 1, p, d, groups)
    for name, a, b in zip(("forward", "input grad", "weight grad"), ours, (yd, ref[0], ref[1])):
        err = float((a - b).abs().max() / b.abs().max())
        if err > 1e-4:
            raise SystemExit(f"NHWC kernel mismatch: {name} of {shape} k{k} d{d}: {err:.1e}")
    with torch.no_grad():
        times = [_time(lambda: nh._conv(x, w, k, p, d, False), repeats),
                 _time(lambda: nh._grad_input(gy, x, w, k, p, d, False), repeats)]
        default = nh._PROGRAMS_PER_SM
        for per_sm in WGRAD_PROGRAMS_PER_SM:  # the weight gradient's work split (untuned: a sweep)
            nh._PROGRAMS_PER_SM = per_sm
            times.append(_time(lambda: nh._grad_weight(gy, x, w, k, p, d, False), repeats))
        nh._PROGRAMS_PER_SM = default
        return times


def _route_times(shape: tuple, k: int, s: int, p: int, d: int, repeats: int,
                 bf16: bool = False) -> dict[str, float]:
    """us of forward + input and weight gradient of a ``triton`` depthwise conv on a channels_last
    input, per forced route (where it can run), and ``measured``: the route the rule picks.
    ``bf16``: a bf16 input and bf16 autocast around the module, as the trainer runs it."""
    from nas_cli.spaces import depthwise as dw

    dev = torch.device("cuda")
    dtype = torch.bfloat16 if bf16 else torch.float32
    conv = nn.Conv2d(shape[1], shape[1], k, s, p, d, groups=shape[1], bias=False).to(dev)
    conv = conv.to(memory_format=torch.channels_last)
    dw.use_depthwise_impl(conv, "triton")
    x = torch.randn(shape, device=dev, dtype=dtype).to(memory_format=torch.channels_last).requires_grad_(True)
    with torch.no_grad():
        ref = torch.nn.functional.conv2d(x.double(), conv.weight.double(), None, s, p, d, shape[1])
    gy = torch.randn(ref.shape, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
    bound = 2e-2 if bf16 else 1e-3  # TF32 allowed: cuDNN's own kernels may use it; bf16 has 8 mantissa bits

    def run() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return conv(x)

    times: dict[str, float] = {}
    for policy in (*dw.CHANNELS_LAST_ROUTES, "measured"):
        dw.channels_last_policy = policy
        route = dw.channels_last_route(x, conv.weight, k, s, p, d)
        if policy != "measured" and route != policy:
            continue  # cannot run here (the NHWC kernels: stride 1 only)
        err = float((run().detach().double() - ref).abs().max() / ref.abs().max())
        if err > bound:
            raise SystemExit(f"route {route} mismatch at {shape} k{k} s{s} d{d}: {err:.1e}")
        times[policy if policy != "measured" else f"measured={route}"] = _time(
            lambda: torch.autograd.grad(run(), (x, conv.weight), gy), repeats)
    dw.channels_last_policy = "measured"
    return times


def routes_main(census: Counter, repeats: int, bf16: bool = False) -> None:
    """Per depthwise conv of the network, forward+backward us per channels_last route; totals per route."""
    from nas_cli.spaces import depthwise as dw

    totals: Counter = Counter()
    print(f"{'calls':>5s} {'input':>18s} k s d | " + " ".join(f"{r:>10s}" for r in dw.CHANNELS_LAST_ROUTES)
          + " | measured rule (us)")
    for (shape, cout, k, s, p, d, g), count in sorted(census.items(), key=lambda kv: -kv[1]):
        if g != shape[1] or g == 1:
            continue
        t = _route_times(shape, k, s, p, d, repeats, bf16)
        (picked, t_picked), = ((key, v) for key, v in t.items() if key.startswith("measured"))
        best = min((v, r) for r, v in t.items() if not r.startswith("measured"))
        for r in dw.CHANNELS_LAST_ROUTES:  # a route that cannot run here counts as the rule's pick
            totals[r] += count * t.get(r, t_picked)
        totals["measured"] += count * t_picked
        totals["best"] += count * best[0]
        print(f"{count:5d} {str(shape):>18s} {k} {s} {d} | "
              + " ".join(f"{t[r]:10.1f}" if r in t else f"{'-':>10s}" for r in dw.CHANNELS_LAST_ROUTES)
              + f" | {picked[9:]} {t_picked:.1f}" + ("" if picked[9:] == best[1] else f"  (best: {best[1]})"))
    print(f"per step ({'bf16 autocast' if bf16 else 'fp32'}), depthwise convs forward+backward, ms: " + ", ".join(
        f"{r} {v / 1e3:.2f}" for r, v in totals.items()))


def wgrad_finish_main(census: Counter, repeats: int) -> None:
    """The NHWC Triton weight gradient per depthwise conv whose route runs it (``nhwc``, ``nhwc_wgrad``),
    with its partial sums' second sum written straight into the weight's layout (``depthwise_nhwc.DIRECT_LAYOUT``)
    and followed by a transposing copy (the form before); us per call, checked against float64 first, and the per-step sums weighted by call counts."""
    from nas_cli.spaces import depthwise as dw
    from nas_cli.spaces import depthwise_nhwc as nh

    dev = torch.device("cuda")
    totals: Counter = Counter()
    default = nh.DIRECT_LAYOUT
    print(f"{'calls':>5s} {'input':>18s} k d {'route':>10s} |     direct | with copy (us)")
    for (shape, cout, k, s, p, d, g), count in sorted(census.items(), key=lambda kv: -kv[1]):
        x = torch.randn(shape, device=dev).to(memory_format=torch.channels_last)
        w = torch.randn(shape[1], 1, k, k, device=dev)
        route = dw.channels_last_route(x, w, k, s, p, d) if g == shape[1] and g != 1 else None
        if route not in ("nhwc", "nhwc_wgrad"):
            continue
        gy = torch.randn_like(torch.nn.functional.conv2d(x, w, None, 1, p, d, g))
        ref = torch.ops.aten.convolution_backward(gy.double(), x.double(), w.double(), None, [1, 1], [p, p], [d, d],
                                                  False, [0, 0], g, [False, True, False])[1]
        t = []
        for direct in (True, False):
            nh.DIRECT_LAYOUT = direct
            err = float((nh._grad_weight(gy, x, w, k, p, d, False) - ref).abs().max() / ref.abs().max())
            if err > 1e-4:
                raise SystemExit(f"weight gradient mismatch ({direct=}) of {shape} k{k} d{d}: {err:.1e}")
            with torch.no_grad():
                t.append(_time(lambda: nh._grad_weight(gy, x, w, k, p, d, False), repeats))
            totals[direct] += count * t[-1]
        nh.DIRECT_LAYOUT = default
        print(f"{count:5d} {str(shape):>18s} {k} {d} {route:>10s} | {t[0]:10.1f} | {t[1]:7.1f}")
    print(f"per step, ms: direct {totals[True] / 1e3:.3f}, with copy {totals[False] / 1e3:.3f}")


def _conv1x1_times(shape: tuple, cout: int, repeats: int) -> list[float]:
    """us per direction (forward, input gradient, weight gradient) of a dense 1x1 conv on a channels_last
    input: cuDNN's conv, the matmuls ``runtime.conv1x1=matmul`` runs (TF32 as cuDNN may use it), and the
    Triton kernels of ``runtime.conv1x1=triton``."""
    from torch.nn import functional as F

    import nas_cli.spaces.dense1x1_kernels  # noqa: F401  (registers the ops)

    ops = torch.ops.nas_cli

    dev = torch.device("cuda")
    n, cin, h, w = shape
    x = torch.randn(shape, device=dev).to(memory_format=torch.channels_last)
    wt = torch.randn(cout, cin, 1, 1, device=dev).to(memory_format=torch.channels_last)
    gy = torch.randn(n, cout, h, w, device=dev).to(memory_format=torch.channels_last)
    x2, gy2, w2 = x.permute(0, 2, 3, 1).reshape(-1, cin), gy.permute(0, 2, 3, 1).reshape(-1, cout), wt.flatten(1)

    def conv_bwd(mask: list[bool]) -> object:
        return torch.ops.aten.convolution_backward(gy, x, wt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32
    try:
        with torch.no_grad():
            conv = [_time(lambda: F.conv2d(x, wt), repeats), _time(lambda: conv_bwd([True, False, False]), repeats),
                    _time(lambda: conv_bwd([False, True, False]), repeats)]
            mm = [_time(lambda: F.linear(x2, w2), repeats), _time(lambda: gy2 @ w2, repeats),
                  _time(lambda: gy2.t() @ x2, repeats)]
            tri = [_time(lambda: ops.conv1x1_nhwc(x, wt), repeats), _time(lambda: ops.conv1x1_nhwc_grad_input(gy, wt), repeats),
                   _time(lambda: ops.conv1x1_nhwc_grad_weight(gy, x, wt), repeats)]
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return conv + mm + tri


def conv1x1_main(census: Counter, repeats: int) -> None:
    """Per dense 1x1 conv of the network, conv vs matmul per direction; totals per step."""
    from nas_cli.spaces.conv1x1 import is_dense_1x1

    totals = [0.0, 0.0, 0.0]
    print(f"{'calls':>5s} {'input':>18s} {'out':>4s} | {'conv fwd/dgrad/wgrad us':>24s} | {'matmul fwd/dgrad/wgrad us':>26s}"
          f" | {'Triton fwd/dgrad/wgrad us':>26s}")
    for (shape, cout, k, s, p, d, g), count in sorted(census.items(), key=lambda kv: -kv[1]):
        if not is_dense_1x1(nn.Conv2d(shape[1], cout, k, s, p, d, g)):
            continue
        t = _conv1x1_times(shape, cout, repeats)
        for i in range(3):
            totals[i] += count * sum(t[3 * i:3 * i + 3])
        print(f"{count:5d} {str(shape):>18s} {cout:4d} | "
              + " | ".join(" ".join(f"{v:7.1f}" for v in t[3 * i:3 * i + 3]) for i in range(3)))
    print(f"per step, dense 1x1 convs, every direction: conv {totals[0] / 1e3:.2f} ms, matmul {totals[1] / 1e3:.2f} ms, "
          f"Triton {totals[2] / 1e3:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genotype", default="GAEA_PCDARTS_cifar10")
    ap.add_argument("--channels", type=int, default=36)
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--nhwc", action="store_true",
                    help="also time spaces/depthwise_nhwc.py's kernels (stride-1 depthwise convs, channels_last)")
    ap.add_argument("--routes", action="store_true",
                    help="only the depthwise convs: forward+backward per channels_last route of runtime.depthwise=triton")
    ap.add_argument("--conv1x1", action="store_true",
                    help="only the dense 1x1 convs: cuDNN conv vs the matmuls and Triton kernels of runtime.conv1x1, per direction")
    ap.add_argument("--wgrad-finish", action="store_true",
                    help="only the NHWC Triton depthwise weight gradients: finished straight into the weight's layout vs with a copy")
    ap.add_argument("--bf16", action="store_true",
                    help="with --routes: bf16 inputs under bf16 autocast, as runtime.precision=bf16 runs them")
    args = ap.parse_args()
    if args.bf16 and not args.routes:
        ap.error("--bf16 only applies to --routes")
    torch.backends.cudnn.benchmark = True  # as the trainer runs (TF32 convolutions: PyTorch's default)
    census = conv_census(args.genotype, args.channels, args.layers, args.batch)
    if args.routes:
        routes_main(census, args.repeats, args.bf16)
        return
    if args.conv1x1:
        conv1x1_main(census, args.repeats)
        return
    if args.wgrad_finish:
        wgrad_finish_main(census, args.repeats)
        return
    dev = torch.device("cuda")
    rows = []
    for (shape, cout, k, s, p, d, g), count in census.items():
        per_layout = []
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(shape, device=dev).to(memory_format=fmt)
            w = torch.randn(cout, shape[1] // g, k, k, device=dev).to(memory_format=fmt)
            y = torch.nn.functional.conv2d(x, w, None, s, p, d, g)
            gy = torch.randn_like(y)

            def bwd(mask: list[bool]) -> object:
                return torch.ops.aten.convolution_backward(gy, x, w, None, [s, s], [p, p], [d, d], False, [0, 0], g,
                                                           mask)

            with torch.no_grad():
                per_layout.append([_time(lambda: torch.nn.functional.conv2d(x, w, None, s, p, d, g), args.repeats),
                                   _time(lambda: bwd([True, False, False]), args.repeats),
                                   _time(lambda: bwd([False, True, False]), args.repeats)])
        if args.nhwc:
            per_layout.append(_nhwc_times(shape, k, s, p, d, g, args.repeats))
        rows.append((count, shape, cout, k, s, d, g, per_layout))
    rows.sort(key=lambda r: -r[0] * min(sum(r[7][0]), sum(r[7][1])))
    print(f"{'calls':>5s} {'input':>18s} {'out':>4s} k s d {'groups':>6s} | {'NCHW fwd/dgrad/wgrad us':>24s} | "
          f"{'NHWC fwd/dgrad/wgrad us':>24s}" + (
              f" | NHWC Triton fwd/dgrad/wgrad at {'/'.join(map(str, WGRAD_PROGRAMS_PER_SM))} programs per SM"
              if args.nhwc else ""))
    totals = [0.0, 0.0]
    for count, shape, cout, k, s, d, g, t in rows:
        totals[0] += count * sum(t[0])
        totals[1] += count * sum(t[1])
        print(f"{count:5d} {str(shape):>18s} {cout:4d} {k} {s} {d} {g:6d} | "
              + " | ".join(" ".join(f"{v:7.1f}" for v in part) if part else f"{'-':>23s}" for part in t))
    print(f"per step, every conv once per direction: NCHW {totals[0] / 1e3:.2f} ms, NHWC {totals[1] / 1e3:.2f} ms")


if __name__ == "__main__":
    main()

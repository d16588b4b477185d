"""Worker for tests/test_depthwise.py: checks of the Triton depthwise kernels in a fresh process.

Triton decides at import time whether its kernels are compiled for a GPU or run by its CPU
interpreter (``TRITON_INTERPRET=1``), so the CPU checks run here, in a process started with that
variable set.  ``python tests/depthwise_worker.py CHECK OUT.json [DEVICE]`` runs one check and
writes its measurements (max relative errors, ...) as JSON; the test asserts on them.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from nas_cli.spaces.triton_support import splits

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max() / b.detach().double().abs().max().clamp_min(1e-30))


def _count_calls(module: Any, names: Sequence[str], calls: list[str], prefix: str = "") -> None:
    """Wrap ``module``'s functions ``names`` so each call appends ``prefix + name`` to ``calls``
    (the worker process ends afterwards: nothing is unwrapped)."""
    for name in names:
        orig: Callable[..., Any] = getattr(module, name)
        setattr(module, name, lambda *a, _o=orig, _n=prefix + name: (calls.append(_n), _o(*a))[1])


def _conv_reference(x: torch.Tensor, wt: torch.Tensor, gy: torch.Tensor, s: int, p: int,
                    d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, dx, dw) of the depthwise ``F.conv2d`` in float64 on the values of ``x`` and ``wt``."""
    xr, wr = x.detach().double().requires_grad_(), wt.detach().double().requires_grad_()
    yr = F.conv2d(xr, wr, None, s, p, d, x.shape[1])
    return (yr, *torch.autograd.grad(yr, (xr, wr), gy.double()))


def kernels(device: str) -> dict[str, Any]:
    """Forward, input and weight gradient against ``F.conv2d`` in float64 for every geometry of the
    DARTS space (k 3/5, stride 1/2, dilation 1/2), odd and even sizes, several row tiles and slices."""
    from nas_cli.spaces import depthwise as dw

    out: dict[str, Any] = {"cases": {}, "supported": {}}
    g = torch.Generator(device=device).manual_seed(0)
    for k in (3, 5):
        for s in (1, 2):
            for d in (1, 2):
                for n, c, h, w in ((3, 3, 7, 9), (1, 2, 33, 20)):
                    p = d * (k - 1) // 2
                    x = torch.randn(n, c, h, w, device=device, generator=g, requires_grad=True)
                    wt = torch.randn(c, 1, k, k, device=device, generator=g, requires_grad=True)
                    assert dw.supported(x, wt, s, p, d)
                    y = dw.depthwise_conv2d(x, wt, s, p, d)
                    gy = torch.randn(y.shape, device=device, generator=g)
                    gx, gw = torch.autograd.grad(y, (x, wt), gy)
                    yr, gxr, gwr = _conv_reference(x, wt, gy, s, p, d)
                    y_kernel = dw.triton_forward(x.detach(), wt.detach(), k, s, p, d)  # also where routed to native
                    out["cases"][f"k{k} s{s} d{d} {h}x{w}"] = [_rel(y, yr), _rel(gx, gxr), _rel(gw, gwr),
                                                               _rel(y_kernel, yr)]
    # the weight gradient split over several batch x pixel slices (partial sums added afterwards)
    x = torch.randn(4, 2, 32, 32, device=device, generator=g, requires_grad=True)
    wt = torch.randn(2, 1, 5, 5, device=device, generator=g, requires_grad=True)
    out["slices"] = splits(x, 2, 4 * 32, dw._WTILE // 32)[0]
    y = dw.depthwise_conv2d(x, wt, 1, 4, 2)
    gw = torch.autograd.grad(y, wt, torch.ones_like(y))[0]
    gwr = torch.autograd.grad(F.conv2d(x.double(), wt.double(), None, 1, 4, 2, 2), wt, torch.ones_like(y).double())[0]
    out["sliced_weight_grad"] = _rel(gw, gwr)
    # only the gradient that is asked for is computed (the architecture step needs no weight grad);
    # small tensors: under the interpreter each call costs seconds at 32x32
    x = torch.randn(2, 2, 8, 8, device=device, generator=g, requires_grad=True)
    calls: list[str] = []
    _count_calls(dw, ("_grad_input", "_grad_weight"), calls)
    y = dw.depthwise_conv2d(x, wt.detach(), 1, 4, 2)
    y.sum().backward()
    out["grads_computed_for_input_only"] = list(calls)
    # ... also when the weight requires grad but this pass does not ask for it (the arch step)
    h = x * 1.0  # a non-leaf input, as inside a network
    for wanted in ("input", "weight", "both"):
        calls.clear()
        y = dw.depthwise_conv2d(h, wt, 1, 4, 2)
        inputs = {"input": [h], "weight": [wt], "both": [h, wt]}[wanted]
        torch.autograd.grad(y.sum(), inputs)
        out[f"grads_computed_when_asking_{wanted}"] = sorted(calls)
    calls.clear()
    y = dw.depthwise_conv2d(h, wt, 1, 4, 2)
    y.sum().backward()
    out["grads_computed_by_backward"] = sorted(calls)
    # what the kernels do not handle falls back to F.conv2d
    out["supported"]["channels_last"] = dw.supported(x.detach().to(memory_format=torch.channels_last), wt, 1, 1, 1)
    out["supported"]["float64"] = dw.supported(x.detach().double(), wt.double(), 1, 1, 1)
    out["supported"]["nonsquare_stride"] = dw.supported(x, wt, (1, 2), 1, 1)
    xl = x.detach().to(memory_format=torch.channels_last)
    out["fallback_error"] = _rel(dw.depthwise_conv2d(xl, wt, 1, 2, 1), F.conv2d(xl, wt, None, 1, 2, 1, 2))
    # a channels_last input of the module: each conv takes its route (channels_last_route): cuDNN,
    # the NCHW kernels here, or the NHWC kernels (all directions, or the weight gradient only); same
    # values, gradients and output layout every way
    from nas_cli.spaces import depthwise_nhwc as nh

    _count_calls(nh, ("_gather", "_grad_weight"), calls, prefix="nhwc")
    out["channels_last"] = {}
    for name, (c, h, k, s, d) in {"dilated 16x16": (3, 16, 3, 1, 2), "plain 8x8": (3, 8, 5, 1, 1),
                                  "strided 16->8": (3, 16, 5, 2, 1), "plain 16x16": (3, 16, 3, 1, 1),
                                  "strided dilated 16->8": (2, 16, 3, 2, 2)}.items():
        conv = torch.nn.Conv2d(c, c, k, s, d * (k - 1) // 2, d, groups=c, bias=False).to(device)
        conv = conv.to(memory_format=torch.channels_last)  # as the trainer converts the model
        xs = torch.randn(2, c, h, h, device=device, generator=g).to(memory_format=torch.channels_last)
        xs.requires_grad_(True)
        ref_conv = copy.deepcopy(conv).double()  # float64 reference: no TF32 on CUDA
        xd = xs.detach().double().requires_grad_(True)
        yr = ref_conv(xd)
        ref = torch.autograd.grad(yr, (xd, ref_conv.weight), torch.ones_like(yr))
        dw.use_depthwise_impl(conv, "triton")
        calls.clear()
        y = conv(xs)
        got = torch.autograd.grad(y, (xs, conv.weight), torch.ones_like(y))
        out["channels_last"][name] = {
            "route": dw.channels_last_route(xs, conv.weight, k, s, d * (k - 1) // 2, d),
            "kernel_calls": sorted(calls), "out_channels_last": y.is_contiguous(memory_format=torch.channels_last),
            "error": max(_rel(y, yr), _rel(got[0], ref[0]), _rel(got[1], ref[1]))}
        # the operator's own output is NCHW-contiguous, as its fake says (torch.compile checks it)
        out["channels_last"][name]["op_output_contiguous"] = dw._conv(
            xs.detach().contiguous(), conv.weight, k, s, d * (k - 1) // 2, d).is_contiguous()
    # a forced policy (the benchmarks' switch) overrides the measured rule where the route can run
    x8 = torch.randn(2, 3, 8, 8, device=device, generator=g).to(memory_format=torch.channels_last)
    w8 = torch.randn(3, 1, 3, 3, device=device, generator=g)
    out["forced"] = {}
    for policy in ("cudnn", "nchw", "nhwc", "nhwc_wgrad"):
        dw.channels_last_policy = policy
        out["forced"][policy] = [dw.channels_last_route(x8, w8, 3, 1, 1, 1), dw.channels_last_route(x8, w8, 3, 2, 1, 1)]
    dw.channels_last_policy = "measured"
    return out


def pointwise(device: str) -> dict[str, Any]:
    """Grouped 1x1 convs (``spaces/pointwise.py``) against ``F.conv2d`` in float64: square and
    non-square groups, odd channel counts, a weight gradient split over slices, and which gradients
    a backward pass computes."""
    from nas_cli.spaces import pointwise as pw

    out: dict[str, Any] = {"cases": {}}
    g = torch.Generator(device=device).manual_seed(0)
    for n, groups, ci, co, h, w in ((2, 3, 4, 4, 5, 7), (3, 2, 8, 8, 8, 8), (2, 5, 16, 16, 4, 4),
                                    (2, 4, 4, 2, 6, 6), (2, 2, 3, 5, 7, 3), (4, 1, 16, 16, 32, 32)):
        x = torch.randn(n, groups * ci, h, w, device=device, generator=g, requires_grad=True)
        wt = torch.randn(groups * co, ci, 1, 1, device=device, generator=g, requires_grad=True)
        assert pw.supported(x, wt, groups)
        y = pw.grouped_pointwise_triton(x, wt, groups)
        gy = torch.randn(y.shape, device=device, generator=g)
        gx, gw = torch.autograd.grad(y, (x, wt), gy)
        xr, wr = x.detach().double().requires_grad_(), wt.detach().double().requires_grad_()
        gxr, gwr = torch.autograd.grad(F.conv2d(xr, wr, None, 1, 0, 1, groups), (xr, wr), gy.double())
        yr = F.conv2d(xr, wr, None, 1, 0, 1, groups)
        gw_kernel = pw.triton_weight_grad(gy, x.detach(), wt.detach(), groups)  # the kernel, also when unused
        out["cases"][f"n{n} g{groups} {ci}->{co} {h}x{w}"] = [_rel(y, yr), _rel(gx, gxr), _rel(gw, gwr),
                                                             _rel(gw_kernel, gwr)]
    out["slices"] = splits(x, 1, 4 * 32 * 32, pw._WBLOCK)[0]
    calls: list[str] = []
    _count_calls(pw, ("_grad_input", "_grad_weight"), calls)
    h = torch.randn(2, 8, 4, 4, device=device, generator=g, requires_grad=True) * 1.0
    wt = torch.randn(8, 4, 1, 1, device=device, generator=g, requires_grad=True)
    for wanted in ("input", "weight"):
        calls.clear()
        y = pw.grouped_pointwise_triton(h, wt, 2)
        torch.autograd.grad(y.sum(), [h] if wanted == "input" else [wt])
        out[f"grads_computed_when_asking_{wanted}"] = sorted(calls)
    big = torch.randn(1, 66, 2, 2, device=device)
    out["supported_33_channels"] = pw.supported(big, torch.randn(66, 33, 1, 1, device=device), 2)
    return out


def mixing(device: str) -> dict[str, Any]:
    """The weighted-sum kernels (``spaces/mixing.py``) against ``baddbmm`` in float64: one and several
    destinations, an accumulated term read through a strided view, a strided operand, and which
    gradients a backward pass computes.  Also the 3x3 average pool through the depthwise kernels."""
    from nas_cli.spaces import mixing as mx
    from nas_cli.spaces.avgpool import avg_pool_3x3

    out: dict[str, Any] = {"cases": {}, "pool": {}}
    g = torch.Generator(device=device).manual_seed(0)
    for n, q, p, e, acc_on, strided in ((2, 3, 8, 1500, False, False), (3, 2, 6, 700, True, False),
                                        (2, 1, 30, 1100, True, True), (4, 1, 1, 33, False, True)):
        m = torch.randn(q, p, device=device, generator=g, requires_grad=True)
        base = torch.randn(n, p + 2, e, device=device, generator=g, requires_grad=True)
        o = base[:, 1 : p + 1] if strided else base[:, :p].contiguous()  # rows of a larger tensor
        full = torch.randn(n, q + 1, e, device=device, generator=g, requires_grad=True)
        acc = full[:, 1:] if acc_on else None  # like the pending contributions: a split view
        gy = torch.randn(n, q, e, device=device, generator=g)
        leaves = [m, base] + ([full] if acc_on else [])
        y = mx.mix_rows(m, o, acc, "triton")
        grads = torch.autograd.grad(y, leaves, gy)
        md, od = m.detach().double().requires_grad_(), base.detach().double().requires_grad_()
        fd = full.detach().double().requires_grad_()
        od_rows = od[:, 1 : p + 1] if strided else od[:, :p]
        yr = mx.mix_rows_native(md, od_rows, fd[:, 1:] if acc_on else None)
        refs = torch.autograd.grad(yr, [md, od] + ([fd] if acc_on else []), gy.double())
        out["cases"][f"n{n} q{q} p{p} e{e}{' acc' if acc_on else ''}{' strided' if strided else ''}"] = (
            [_rel(y, yr)] + [_rel(a, b) for a, b in zip(grads, refs)])
    # rows held by several operands (the NB201 cell's conv/BN rows, skip row, pool row): no concatenation
    out["operand_cases"] = {}
    for n, q, groups, e, acc_on in ((2, 3, (6, 1, 1), 1500, True), (3, 1, (4, 1), 700, False),
                                    (2, 2, (1, 2, 3), 1100, False)):
        m = torch.randn(q, sum(groups), device=device, generator=g, requires_grad=True)
        parts = [torch.randn(n, k, e, device=device, generator=g, requires_grad=True) for k in groups]
        acc = torch.randn(n, q, e, device=device, generator=g, requires_grad=True) if acc_on else None
        gy = torch.randn(n, q, e, device=device, generator=g)
        leaves = [m, *parts] + ([acc] if acc is not None else [])
        y = mx.mix_rows(m, parts, acc, "triton")
        grads = torch.autograd.grad(y, leaves, gy)
        ld = [t.detach().double().requires_grad_() for t in leaves]
        yr = mx.mix_rows_native(ld[0], torch.cat(ld[1 : 1 + len(groups)], 1), ld[-1] if acc_on else None)
        refs = torch.autograd.grad(yr, ld, gy.double())
        out["operand_cases"][f"n{n} q{q} rows{groups} e{e}{' acc' if acc_on else ''}"] = (
            [_rel(y, yr)] + [_rel(a, b) for a, b in zip(grads, refs)])
    # a per-destination bias (the masked NB201 forward's rest terms): added everywhere, gradient Σ g
    out["bias_cases"] = {}
    for n, q, groups, e, acc_on in ((2, 3, (6, 1, 1), 1500, True), (3, 1, (4, 1), 700, False),
                                    (2, 2, (3,), 2100, True)):
        m = torch.randn(q, sum(groups), device=device, generator=g, requires_grad=True)
        bias = torch.randn(q, device=device, generator=g, requires_grad=True)
        parts = [torch.randn(n, k, e, device=device, generator=g, requires_grad=True) for k in groups]
        acc = torch.randn(n, q, e, device=device, generator=g, requires_grad=True) if acc_on else None
        gy = torch.randn(n, q, e, device=device, generator=g)
        leaves = [m, bias, *parts] + ([acc] if acc is not None else [])
        y = mx.mix_rows(m, parts, acc, "triton", bias)
        grads = torch.autograd.grad(y, leaves, gy)
        ld = [t.detach().double().requires_grad_() for t in leaves]
        yr = mx.mix_rows_native(ld[0], torch.cat(ld[2 : 2 + len(groups)], 1), ld[-1] if acc_on else None, ld[1])
        refs = torch.autograd.grad(yr, ld, gy.double())
        out["bias_cases"][f"n{n} q{q} rows{groups} e{e}{' acc' if acc_on else ''}"] = (
            [_rel(y, yr)] + [_rel(a, b) for a, b in zip(grads, refs)])
    calls: list[tuple[list[bool], bool, bool]] = []
    orig = mx._mix_backward

    def counted(g_: Any, m_: Any, o0: Any, o1: Any, o2: Any, need_go: list[bool], need_gm: bool,
                need_gb: bool) -> Any:
        calls.append((list(need_go), need_gm, need_gb))
        return orig(g_, m_, o0, o1, o2, need_go, need_gm, need_gb)

    mx._mix_backward = counted  # type: ignore[assignment]
    m = torch.randn(2, 4, device=device, generator=g, requires_grad=True)
    h = torch.randn(2, 3, 40, device=device, generator=g, requires_grad=True) * 1.0
    h2 = torch.randn(2, 1, 40, device=device, generator=g, requires_grad=True) * 1.0
    b = torch.randn(2, device=device, generator=g, requires_grad=True)
    for wanted in ("operand", "coefficients", "both", "second operand", "bias"):
        calls.clear()
        y = mx.mix_rows(m * 1.0, [h, h2], None, "triton", b)
        torch.autograd.grad(y.sum(), {"operand": [h], "coefficients": [m], "both": [h, m],
                                      "second operand": [h2], "bias": [b]}[wanted])
        out[f"grads_when_asking_{wanted}"] = calls[0]
    mx._mix_backward = orig  # type: ignore[assignment]
    out["supported_65_rows"] = mx.supported(torch.randn(1, 65, device=device), torch.randn(2, 65, 3, device=device),
                                            None)
    out["native_when_unsupported"] = _rel(mx.mix_rows(m.double(), [h.double(), h2.double()], None, "triton"),
                                          mx.mix_rows_native(m.double(), torch.cat([h, h2], 1).double()))
    out["supported_four_operands"] = mx.supported(m, [h[:, :1], h[:, 1:2], h[:, 2:], h2], None)
    # the fused NB201 cell's merged conv weight, cat([w3, pad(w1)]), in one kernel: the same bits both ways
    from nas_cli.spaces import conv_merge as cm
    from nas_cli.spaces.conv_merge import merge_1x1_into_3x3
    cm.ENABLED = True  # the product default; the last case turns it off
    out["merge_cases"] = {}
    for a, b, c in ((6, 6, 4), (1, 2, 3), (48, 48, 16)):
        w3 = torch.randn(a, c, 3, 3, device=device, generator=g, requires_grad=True)
        w1 = torch.randn(b, c, 1, 1, device=device, generator=g, requires_grad=True)
        gy = torch.randn(a + b, c, 3, 3, device=device, generator=g)
        for cl in (False, True):  # NCHW or channels_last merged weight (the NHWC route's conv)
            with _OpCount("cat", "constant_pad_nd") as kernel_ops:
                got = merge_1x1_into_3x3(w3, w1, "triton", channels_last=cl)
            with _OpCount("cat", "constant_pad_nd") as native_ops:
                ref = merge_1x1_into_3x3(w3, w1, "native")
            grads = [torch.autograd.grad(t, [w3, w1], gy) for t in (got, ref)]
            layout = got.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
            # [same values, same gradients, (cat/pad ops of the kernel path, of the PyTorch path), layout,
            #  the kernel path's gradients in the weights' own (contiguous) layout: autograd copies none]
            out["merge_cases"][f"{a}+{b}x{c}{' cl' * cl}"] = [
                torch.equal(got, ref), all(torch.equal(x, y) for x, y in zip(*grads)), [kernel_ops.n, native_ops.n],
                layout, all(t.is_contiguous() for t in grads[0])]
            if a == 6:  # the gradient of a weight built in the other layout (a conv may return either)
                other = gy.contiguous(memory_format=torch.contiguous_format if cl else torch.channels_last)
                alt = torch.autograd.grad(merge_1x1_into_3x3(w3, w1, "triton", channels_last=cl), [w3, w1], other)
                out["merge_cases"][f"{a}+{b}x{c}{' cl' * cl}"].append(
                    all(torch.equal(x, y) and x.is_contiguous() for x, y in zip(alt, grads[1])))
    cm.UNMERGE_KERNEL = False  # the gradients as views of the merged one: same values, strided
    views = torch.autograd.grad(merge_1x1_into_3x3(w3, w1, "triton", channels_last=True), [w3, w1],
                                gy.contiguous(memory_format=torch.channels_last))  # as cuDNN returns it
    cm.UNMERGE_KERNEL = True
    out["unmerge_off"] = [all(torch.equal(x, y) for x, y in zip(views, grads[0])),
                          [t.is_contiguous() for t in views]]
    cm.ENABLED = False
    with _OpCount("cat", "constant_pad_nd") as disabled_ops:
        merge_1x1_into_3x3(w3, w1, "triton")
    cm.ENABLED = True
    out["merge_ops_when_disabled"] = disabled_ops.n
    # the selected conv op's weight s3*w3 + s1*pad(w1) per output channel (the selected-conv forward):
    # the same bits as the PyTorch ops, both layouts, gradients s3*g and s1*g's centre, contiguous
    out["select_cases"] = {}
    for a, c in ((6, 4), (1, 3), (48, 16)):
        w3 = torch.randn(a, c, 3, 3, device=device, generator=g, requires_grad=True)
        w1 = torch.randn(a, c, 1, 1, device=device, generator=g, requires_grad=True)
        pick = torch.randint(0, 3, (a,), device=device, generator=g)  # 3x3, 1x1 or neither per channel
        s3, s1 = (pick == 0).float(), (pick == 1).float()
        gy = torch.randn(a, c, 3, 3, device=device, generator=g)
        for cl in (False, True):
            got = cm.select_3x3(w3, w1, s3, s1, "triton", channels_last=cl)
            ref = cm.select_3x3(w3, w1, s3, s1, "native")
            with _OpCount("select_3x3") as kernel_calls:
                cm.select_3x3(w3, w1, s3, s1, "triton", channels_last=cl)
            grads = [torch.autograd.grad(t, [w3, w1], gy) for t in (got, ref)]
            other = torch.autograd.grad(cm.select_3x3(w3, w1, s3, s1, "triton", channels_last=cl), [w3, w1],
                                        gy.contiguous(memory_format=torch.contiguous_format if cl else torch.channels_last))
            layout = got.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
            # the unselected op's gradient rows are exact zeros, the selected one's the gradient itself
            exact = (torch.equal(grads[0][0][pick != 0], torch.zeros_like(grads[0][0][pick != 0]))
                     and torch.equal(grads[0][0][pick == 0], gy[pick == 0])
                     and torch.equal(grads[0][1][pick == 1], gy[pick == 1][:, :, 1:2, 1:2]))
            # [same values, same gradients, the gradient of the other layout, kernel calls, layout,
            #  contiguous gradients, the gradients' rows as selected]
            out["select_cases"][f"{a}x{c}{' cl' * cl}"] = [
                torch.equal(got, ref), all(torch.equal(x, y) for x, y in zip(*grads)),
                all(torch.equal(x, y) for x, y in zip(other, grads[1])), kernel_calls.n, layout,
                all(t.is_contiguous() for t in grads[0]), exact]
    out["pool_ops"] = []
    for n, c, hh, ww in ((2, 3, 8, 8), (2, 5, 9, 7), (1, 2, 1, 5), (3, 4, 32, 32), (2, 2, 6, 1)):
        x = torch.randn(n, c, hh, ww, device=device, generator=g, requires_grad=True)
        # one kernel per direction: no separate scaling by the tap counts, no F.avg_pool2d fallback
        with _OpCount("mul", "div", "avg_pool2d", "convolution") as other, _OpCount("avg_pool_3x3") as fwd:
            y = avg_pool_3x3(x)
        gy = torch.randn(y.shape, device=device, generator=g)
        with _OpCount("mul", "div", "avg_pool2d_backward", "convolution_backward") as other_b, \
                _OpCount("avg_pool_3x3_backward") as bwd:
            (gx,) = torch.autograd.grad(y, x, gy)
        out["pool_ops"].append([fwd.n, bwd.n, other.n + other_b.n])
        xr = x.detach().double().requires_grad_()
        yr = F.avg_pool2d(xr, 3, 1, 1, count_include_pad=False)
        (gxr,) = torch.autograd.grad(yr, xr, gy.double())
        out["pool"][f"{n}x{c}x{hh}x{ww}"] = [_rel(y, yr), _rel(gx, gxr)]
    # a fused NB201 source's ReLU, skip and pool: one kernel per direction, every output optional
    from nas_cli.spaces import source_inputs as si
    out["source_inputs"] = {}
    combos = ((True, True, True, False), (True, True, False, False), (False, True, True, False),
              (True, False, True, False), (False, False, True, False),
              # relu(x) channels_last (the NHWC route), with and without the other outputs
              (True, True, True, True), (True, False, False, True))
    for n, c, hh, ww in ((2, 3, 8, 8), (2, 5, 9, 7), (1, 2, 1, 5), (2, 2, 6, 1), (2, 48, 5, 6)):
        for need_r, need_s, need_p, r_nhwc in combos:
            x = torch.randn(n, c, hh, ww, device=device, generator=g)
            x[0, 0, 0, :1] = 0.0  # relu'(0) = 0, as PyTorch's
            x.requires_grad_(True)
            with _OpCount("relu", "threshold_backward", "avg_pool2d", "avg_pool2d_backward", "add", "add_",
                          "avg_pool_3x3", "avg_pool_3x3_backward", "clone", "_to_copy", "copy_") as other, \
                    _OpCount("source_inputs") as fwd, _OpCount("source_inputs_backward") as bwd:
                r, sk, p = si.source_inputs(x, need_r, need_p, r_nhwc)
                used = [t for t, need in zip((r, sk.view_as(sk), p), (need_r, need_s, need_p)) if need]
                # each gradient in its output's layout (r channels_last with r_nhwc), as a conv's input
                # gradient arrives
                gys = [torch.empty_like(t).normal_(generator=g) for t in used]
                (gx,) = torch.autograd.grad(used, x, gys)
            xr = x.detach().double().requires_grad_()
            refs = [t for t, need in zip(si.source_inputs_reference(xr), (need_r, need_s, need_p)) if need]
            (gxr,) = torch.autograd.grad([t.view_as(t) for t in refs], xr, [t.double() for t in gys])
            key = f"{n}x{c}x{hh}x{ww} {'r' * need_r}{'s' * need_s}{'p' * need_p}{' nhwc' * r_nhwc}"
            r_layout = r.is_contiguous(memory_format=torch.channels_last if r_nhwc else torch.contiguous_format)
            # [value errors of the present outputs, input-gradient error, the skip row is x's storage,
            #  (source_inputs ops forward, backward, separate ReLU/pool/add/copy ops), r in its layout]
            out["source_inputs"][key] = [max(_rel(a, b) for a, b in zip(used, refs)), _rel(gx, gxr),
                                         sk.data_ptr() == x.data_ptr(), [fwd.n, bwd.n, other.n], r_layout]
    xs = torch.randn(2, 3, 5, 5, device=device, generator=g)
    si.ENABLED = False
    disabled = si.supported(xs)
    si.ENABLED = True
    out["source_inputs_supported"] = [si.supported(xs), si.supported(xs.transpose(2, 3)),
                                      si.supported(xs.double()), disabled]
    return out


def maxpool(device: str) -> dict[str, Any]:
    """The max-pool kernels (``spaces/maxpool.py``) against ``F.max_pool2d``: the fused cells'
    geometries (3x3 stride 1 and 2 with padding 1, the bypass's 2x2 stride 2), odd and one-pixel
    sizes, ties, -inf and NaN (which input receives the gradient must match)."""
    from nas_cli.spaces import maxpool as mp

    out: dict[str, Any] = {"cases": {}}
    g = torch.Generator(device=device).manual_seed(0)
    mp.ENABLED = True  # the product default; the check below turns it off
    kernel_calls: list[int] = []
    original_pool = mp._pool
    mp._pool = lambda *a: (kernel_calls.append(1), original_pool(*a))[1]  # type: ignore[assignment]
    for n, c, h, w, k, s, p in ((2, 3, 8, 8, 3, 1, 1), (2, 3, 9, 7, 3, 2, 1), (2, 5, 8, 8, 2, 2, 0),
                                (1, 2, 1, 5, 3, 1, 1), (2, 3, 32, 32, 3, 2, 1), (3, 4, 7, 7, 2, 2, 0)):
        x = torch.randn(n, c, h, w, device=device, generator=g)
        x = torch.round(x * 2) / 2  # many ties
        x[0, 0, 0, :] = float("-inf")
        if h > 2:
            x[-1, -1, 1, 1] = float("nan")
        x.requires_grad_(True)
        assert mp.supported(x, k, s, p)
        y, yr = mp.max_pool2d(x, k, s, p), F.max_pool2d(x, k, s, p)
        gy = torch.randn(yr.shape, device=device, generator=g)
        with _OpCount(*_ZERO_FILLS) as fills:  # none for the indices output, which takes no gradient
            (gx,) = torch.autograd.grad(y, x, gy)
        out["zero_fills"] = out.get("zero_fills", 0) + fills.n
        (gxr,) = torch.autograd.grad(yr, x, gy)
        out["cases"][f"{n}x{c}x{h}x{w} k{k} s{s} p{p}"] = [
            bool(torch.equal(torch.nan_to_num(y), torch.nan_to_num(yr))),
            _rel(torch.nan_to_num(gx), torch.nan_to_num(gxr)),
            bool(torch.equal(gx != 0, gxr != 0))]  # the same inputs receive gradient
    out["supported_dilated"] = mp.supported(x, 3, 1, 2)
    out["kernel_calls"] = len(kernel_calls)
    mp.ENABLED = False  # the switch still selects F.max_pool2d
    xd = torch.nan_to_num(x.detach())
    out["native_when_disabled"] = bool(torch.equal(mp.max_pool2d(xd, 3, 1, 1), F.max_pool2d(xd, 3, 1, 1)))
    out["kernel_calls_when_disabled"] = len(kernel_calls) - out["kernel_calls"]
    return out


def batchnorm(device: str) -> dict[str, Any]:
    """``runtime.batchnorm=triton`` (spaces/bn_kernels.py) against ``F.batch_norm`` in float64: output,
    input gradient and running statistics over several steps; rows longer than a block (Chan's
    combination) and more samples than a block (the per-channel loops); non-contiguous inputs fall back."""
    from nas_cli.spaces import bn_kernels
    from nas_cli.spaces.batchnorm import BN_IMPLS

    out: dict[str, Any] = {"cases": {}}
    g = torch.Generator(device=device).manual_seed(0)
    bn_kernels._MAX_BLOCK = 64  # small blocks, so that small tensors take the multi-block loops
    # channels_last inputs (the NHWC route of the fused NB201 cell): more channels than a tile, pixels
    # not a multiple of the tile, one pixel per channel per sample
    # not a multiple of the tile, one pixel per channel per sample; samples split into 2 and 8 parts
    out["nhwc_layouts"] = {}
    splits: list[int] = []
    bn_kernels.SPLIT_NHWC_STATS = True  # the split statistics (whatever the module default)
    pixel_splits = bn_kernels._pixel_splits
    bn_kernels._pixel_splits = lambda *a: splits.append(pixel_splits(*a)) or splits[-1]  # type: ignore[assignment]
    for n, c, h, w, cl in ((6, 5, 7, 7, False), (3, 2, 10, 10, False), (130, 1, 1, 2, False), (7, 3, 1, 1, False),
                           (6, 5, 7, 7, True), (3, 70, 5, 7, True), (4, 20, 33, 2, True), (2, 8, 16, 16, True),
                           (1, 4, 32, 32, True)):
        rm, rv = torch.zeros(c, device=device), torch.ones(c, device=device)
        rmr, rvr = rm.double(), rv.double()
        errs = []
        for step in range(2):
            x = torch.randn(n, c, h, w, device=device, generator=g) * (step + 2) + 3
            x = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format).requires_grad_(True)
            assert bn_kernels.supported(x)
            with _OpCount("batch_norm_train_nhwc") as nhwc_calls:
                y = BN_IMPLS["triton"](x, rm, rv, 0.1, 1e-5)
            gy = torch.randn(y.shape, device=device, generator=g)
            (gx,) = torch.autograd.grad(y, x, gy)
            if cl:  # [the NHWC kernels ran, the output is NCHW, the input gradient channels_last]
                out["nhwc_layouts"][f"{n}x{c}x{h}x{w}"] = [
                    nhwc_calls.n, y.is_contiguous(), gx.is_contiguous(memory_format=torch.channels_last)]
            xr = x.detach().double().requires_grad_(True)
            yr = F.batch_norm(xr, rmr, rvr, None, None, True, 0.1, 1e-5)
            (gxr,) = torch.autograd.grad(yr, xr, gy.double())
            errs += [_rel(y, yr), _rel(gx, gxr)]
        out["cases"][f"{n}x{c}x{h}x{w}{' cl' * cl}"] = errs + [_rel(rm, rmr), _rel(rv, rvr)]
    bn_kernels._pixel_splits = pixel_splits  # type: ignore[assignment]
    out["nhwc_pixel_splits"] = splits  # per channels_last forward (two steps per case)
    x = torch.randn(4, 6, 5, 5, device=device, generator=g)
    # the running estimates take the kernels' unbiased variance through one multi-tensor lerp
    rm, rv = torch.zeros(6, device=device), torch.ones(6, device=device)
    with _OpCount("_foreach_lerp_") as multi, _OpCount("lerp_", "lerp", "mul", "mul_", "div") as single:
        BN_IMPLS["triton"](x, rm, rv, 0.1, 1e-5)
    out["stat_update_ops"] = [multi.n, single.n]
    out["supported_strided"] = bn_kernels.supported(x[:, ::2])
    out["supported_float64"] = bn_kernels.supported(x.double())
    return out


class _OpCount(TorchDispatchMode):
    """Counts the calls of the ATen ops named (overload packets, e.g. ``"cat"``)."""

    def __init__(self, *names: str) -> None:
        super().__init__()
        self.names = set(names)
        self.n = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.n += func.overloadpacket.__name__ in self.names
        return func(*args, **(kwargs or {}))


#: the ops that fill a tensor with zeros (the autograd engine materialising an unused output's gradient)
_ZERO_FILLS = ("zeros", "zeros_like", "zero_", "fill_", "new_zeros")


def nb201(device: str) -> dict[str, Any]:
    """The fused NB201 supernet (DARTS mixture and masked one-hot sample) with the Triton mixing,
    pooling and BatchNorm kernels against the native ones: same loss, gradients and running
    statistics (the masked sample updates only the selected ops' statistics, through the copies
    the fused cell hands its BN)."""
    if device == "cpu":
        _fast_interpreter()
    from nas_cli.spaces.batchnorm import use_batchnorm_impl
    from nas_cli.spaces.depthwise import use_depthwise_impl
    from nas_cli.spaces.mixing import use_mixing_impl
    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.nb201 import NB201Space
    from nas_cli.spaces import conv_merge

    conv_merge.ENABLED = True  # the merged-weight kernel takes part (the product default)
    # fp32 convs: the Triton path runs the merged convs on channels_last tensors (the NHWC route), so
    # cuDNN picks other algorithms than for the native path's NCHW ones, and with TF32 their rounding
    # differs by ~2e-5 of the largest gradient (seen on the H200); in fp32 the paths agree to ~1e-6
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    out: dict[str, Any] = {}
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(4, 3, 8, 8, device=device, generator=g)
    y = torch.randint(0, 10, (4,), device=device, generator=g)
    for hard in ("", "masked"):
        space = NB201Space({"init_channels": 4, "cells_per_stage": 1})
        relax = RelaxationSpec(sampling="hard" if hard else "mixture")
        torch.manual_seed(0)
        model = space.build_supernet(10, 3, relax, fused=True, **({"hard_forward": hard} if hard else {})).to(device)
        (spec,) = space.arch_specs(relax)
        w = torch.rand(spec.shape, generator=g, device=device) + 0.05
        # a one-hot sample (its entries' gradients are the straight-through estimator's input) or a mixture
        w = (F.one_hot(w.argmax(-1), w.shape[-1]).float() if hard else w / w.sum(-1, keepdim=True)).requires_grad_(True)
        results = {}
        # the pools' inputs (the nodes the mixing produced): contiguous, so the Triton pool takes all
        pool_inputs: list[bool] = []
        for m in model.modules():
            if type(m).__name__ == "_Pool":
                m.register_forward_pre_hook(lambda _m, args: pool_inputs.append(args[0].is_contiguous()))
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        buffers = {}
        for impl in ("native", "triton"):
            pool_inputs.clear()
            model.load_state_dict(initial)
            out[f"{hard or 'mixture'}_{impl}_cells"] = use_mixing_impl(model, impl)
            out[f"{hard or 'mixture'}_{impl}_pools"] = use_depthwise_impl(model, impl)
            out[f"{hard or 'mixture'}_{impl}_bns"] = use_batchnorm_impl(model, impl)
            with _OpCount("cat", "constant_pad_nd") as cats, _OpCount("source_inputs") as inputs_fwd, \
                    _OpCount("batch_norm_train_nhwc") as nhwc_bns, _OpCount("select_3x3") as selects:
                logits = model(x, {spec.name: w})
            # the masked training forward runs each edge's selected conv op only (nb201_fused.SELECT_CONVS)
            out[f"{hard or 'mixture'}_{impl}_select_kernels"] = selects.n
            # the sources' BNs behind the merged convs take the NHWC route (nb201_fused.NHWC_CONVS)
            out[f"{hard or 'mixture'}_{impl}_nhwc_bns"] = nhwc_bns.n
            # the Triton weighted sum reads each source's row groups where they lie, and one kernel
            # builds each merged conv weight: no concatenation, no padding
            out[f"{hard or 'mixture'}_{impl}_forward_cats"] = cats.n
            loss = F.cross_entropy(logits, y)
            with _OpCount(*_ZERO_FILLS) as fills, _OpCount("source_inputs_backward") as inputs_bwd:
                results[impl] = (loss, torch.autograd.grad(loss, [*model.parameters(), w]))
            out[f"{hard or 'mixture'}_{impl}_backward_zero_fills"] = fills.n
            # ReLU, skip and pool of each source from the source-input kernels (forward, backward)
            out[f"{hard or 'mixture'}_{impl}_source_inputs"] = [inputs_fwd.n, inputs_bwd.n]
            out[f"{hard or 'mixture'}_{impl}_contiguous_pool_inputs"] = [sum(pool_inputs), len(pool_inputs)]
            buffers[impl] = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
        # relative to the buffer's scale, at least 1: a running mean can be ~1e-8 (the mean of a BN
        # output) where rounding upstream differs by as much again (seen on CUDA)
        out[f"{hard or 'mixture'}_running_stats"] = max(
            float((buffers["triton"][k] - v).abs().max()) / max(1.0, float(v.abs().max()))
            for k, v in buffers["native"].items())
        # the step moved them (and the masked sample left the unselected ops' statistics alone in both)
        out[f"{hard or 'mixture'}_running_stats_moved"] = sum(
            not torch.equal(v, initial[k]) for k, v in buffers["triton"].items())
        out[f"{hard or 'mixture'}_running_stats_kept"] = [
            sum(torch.equal(v, initial[k]) for k, v in buffers[i].items()) for i in ("native", "triton")]
        out[f"{hard or 'mixture'}_loss"] = _rel(results["triton"][0], results["native"][0])
        # relative to the largest gradient: the masked sample leaves some gradients at rounding level (1e-9)
        scale = max(float(b.abs().max()) for b in results["native"][1])
        out[f"{hard or 'mixture'}_grads"] = max(float((a - b).abs().max()) for a, b in
                                                zip(results["triton"][1], results["native"][1])) / scale
    # op lists without a pool or without convs (not a config choice today; the cell takes any list): the
    # source-input kernels then produce only the ReLU, or only skip and pool, and still match native
    for ops in (["skip_connect", "nor_conv_3x3", "nor_conv_1x1"], ["none", "skip_connect", "avg_pool_3x3"]):
        space = NB201Space({"init_channels": 4, "cells_per_stage": 1})
        space.op_names = ops
        relax = RelaxationSpec(sampling="mixture")
        (spec,) = space.arch_specs(relax)
        w = torch.softmax(torch.randn(spec.shape, generator=g, device=device), -1).requires_grad_(True)
        results = {}
        for impl in ("native", "triton"):
            torch.manual_seed(0)  # the same initial weights for both
            model = space.build_supernet(10, 3, relax, fused=True).to(device)
            use_mixing_impl(model, impl)
            use_depthwise_impl(model, impl)
            use_batchnorm_impl(model, impl)
            with _OpCount("source_inputs") as inputs_fwd:
                loss = F.cross_entropy(model(x, {spec.name: w}), y)
            results[impl] = (loss, torch.autograd.grad(loss, [*model.parameters(), w]), inputs_fwd.n)
        key = "subset_" + "+".join(o for o in ops if o != "none")
        # [loss error, largest gradient error relative to the largest gradient, source-input calls]
        scale = max(float(b.abs().max()) for b in results["native"][1])
        out[key] = [_rel(results["triton"][0], results["native"][0]),
                    max(float((a - b).abs().max()) for a, b in zip(results["triton"][1], results["native"][1])) / scale,
                    results["triton"][2]]
    return out


def nhwc(device: str) -> dict[str, Any]:
    """The channels_last kernels (spaces/depthwise_nhwc.py) against ``F.conv2d`` in float64: k 3/5,
    dilation 1/2, same and no padding, several position blocks, row tiles and weight-gradient slices;
    the 3x3 cases also with ``native_gather`` (cuDNN forward and input gradient, the kernel's weight
    gradient); then the module path under a forced policy."""
    from nas_cli.spaces import depthwise as dw
    from nas_cli.spaces import depthwise_nhwc as nh

    out: dict[str, Any] = {"cases": {}}
    g = torch.Generator(device=device).manual_seed(0)
    for k in (3, 5):
        for d in (1, 2):
            for same in (True, False):
                for n, c, h, w in ((3, 3, 7, 9), (2, 36, 6, 10)):  # 36 x 10 = 3 blocks of 128
                    p = d * (k - 1) // 2 if same else 0
                    if h + 2 * p < d * (k - 1) + 1 or w + 2 * p < d * (k - 1) + 1:
                        continue
                    x = torch.randn(n, c, h, w, device=device, generator=g).to(memory_format=torch.channels_last)
                    x.requires_grad_(True)
                    wt = torch.randn(c, 1, k, k, device=device, generator=g, requires_grad=True)
                    assert nh.supported(x, wt, 1, p, d)
                    gy = None
                    xr, wr = x.detach().double().requires_grad_(), wt.detach().double().requires_grad_()
                    yr = F.conv2d(xr, wr, None, 1, p, d, c)
                    for native_gather in (False, True) if k == 3 else (False,):
                        y = nh.depthwise_conv2d_nhwc(x, wt, p, d, native_gather)
                        if gy is None:
                            gy = torch.randn(y.shape, device=device, generator=g)
                            gxr, gwr = torch.autograd.grad(yr, (xr, wr), gy.double())
                        gx, gw = torch.autograd.grad(y, (x, wt), gy)
                        out["cases"][f"k{k} d{d} p{p} {n}x{c}x{h}x{w}" + (" native gather" if native_gather else "")] = [
                            _rel(y, yr), _rel(gx, gxr), _rel(gw, gwr),
                            float(y.is_contiguous(memory_format=torch.channels_last)
                                  and gx.is_contiguous(memory_format=torch.channels_last))]
    # the weight gradient's finishing reduction, both forms (runtime.kernel_switches.nhwc_weight_grad_direct_layout)
    x = torch.randn(3, 36, 8, 8, device=device, generator=g).to(memory_format=torch.channels_last)
    wt = torch.randn(36, 1, 5, 5, device=device, generator=g)
    gy = torch.randn(3, 36, 8, 8, device=device, generator=g).to(memory_format=torch.channels_last)
    wr = wt.double().requires_grad_()
    gwr = torch.autograd.grad(F.conv2d(x.double(), wr, None, 1, 2, 1, 36), wr, gy.double())[0]
    out["finish"] = {}
    default = nh.DIRECT_LAYOUT
    for direct in (True, False):
        nh.DIRECT_LAYOUT = direct
        gw = nh._grad_weight(gy, x, wt, 5, 2, 1, False)
        out["finish"][str(direct)] = [_rel(gw, gwr), float(gw.is_contiguous()), list(gw.shape)]
    nh.DIRECT_LAYOUT = default
    x = torch.randn(2, 4, 6, 6, device=device, generator=g)
    wt = torch.randn(4, 1, 3, 3, device=device, generator=g)
    out["supported"] = {"nchw": nh.supported(x, wt, 1, 1, 1), "stride2": nh.supported(
        x.to(memory_format=torch.channels_last), wt, 2, 1, 1)}
    # the module: the policy picks the kernels (cuDNN: none of them; nhwc: the gather for the
    # forward and input gradient; nhwc_wgrad: only the weight-gradient kernel)
    calls: list[str] = []
    _count_calls(nh, ("_gather", "_grad_weight"), calls)
    conv = torch.nn.Conv2d(4, 4, 3, 1, 2, 2, groups=4, bias=False).to(device).to(memory_format=torch.channels_last)
    xs = x.to(memory_format=torch.channels_last).requires_grad_(True)
    ref = conv(xs)
    ref_grads = torch.autograd.grad(ref.square().sum(), (xs, conv.weight))
    dw.use_depthwise_impl(conv, "triton")
    for policy in ("cudnn", "nhwc", "nhwc_wgrad"):
        dw.channels_last_policy = policy
        calls.clear()
        y = conv(xs)
        grads = torch.autograd.grad(y.square().sum(), (xs, conv.weight))
        out[f"module_{policy}"] = {"calls": sorted(calls), "error": max(_rel(y, ref), *map(_rel, grads, ref_grads)),
                                   "channels_last": y.is_contiguous(memory_format=torch.channels_last)}
    dw.channels_last_policy = "measured"
    return out


def _fast_interpreter() -> None:
    """Turn off the interpreter's integer-overflow checks (3x faster) for the whole-network checks;
    the kernel check keeps them, so index arithmetic that overflows int32 still fails a test."""
    import dataclasses

    from triton.runtime import interpreter

    b = interpreter.interpreter_builder
    b.options = dataclasses.replace(b.options, sanitize_overflow=False)


def supernet(device: str) -> dict[str, Any]:
    """The fused PC-DARTS supernet and the evaluation network: Triton depthwise vs native, same
    loss and gradients."""
    if device == "cpu":
        _fast_interpreter()
    from nas_cli.spaces import maxpool as mp
    from nas_cli.spaces.base import RelaxationSpec
    from nas_cli.spaces.darts import DartsSpace

    mp.ENABLED = True  # the max-pool kernels take part in the Triton run (the product default)
    pools: list[int] = []
    original_pool = mp._pool
    mp._pool = lambda *a: (pools.append(1), original_pool(*a))[1]  # type: ignore[assignment]  # kernel calls
    from nas_cli.spaces.darts_eval import NetworkCIFAR
    from nas_cli.spaces.depthwise import use_depthwise_impl
    from nas_cli.spaces.pointwise import use_pointwise_impl
    from nas_cli.spaces.batchnorm import use_batchnorm_impl
    from nas_cli.spaces.mixing import use_mixing_impl
    from nas_cli.spaces.genotypes import get_genotype

    out: dict[str, Any] = {}
    relax = RelaxationSpec(partial_channels=2, learn_edges=True)
    space = DartsSpace({"init_channels": 4, "layers": 3})
    torch.manual_seed(0)
    model = space.build_supernet(10, 3, relax, fused=True).to(device)
    g = torch.Generator(device=device).manual_seed(1)
    arch = {}
    for spec in space.arch_specs(relax):
        t = torch.rand(spec.shape, generator=g, device=device) + 0.05
        arch[spec.name] = (t / t.sum(-1, keepdim=True) if spec.kind == "ops" else t).requires_grad_(True)
    x = torch.randn(4, 3, 8, 8, device=device, generator=g)
    y = torch.randint(0, 10, (4,), device=device, generator=g)
    results = {}
    # Under the interpreter the Triton BN kernels would more than double this check's time (about 50 s
    # of 94 s on the 2-core CI machine); they are checked there by the NB201 supernet check and the
    # BN kernel check, and here on CUDA.
    bn_triton = device != "cpu"
    for impl in ("native", "triton"):
        out[f"supernet_{impl}_convs"] = use_depthwise_impl(model, impl)
        out[f"supernet_{impl}_pointwise"] = use_pointwise_impl(model, impl)
        out[f"supernet_{impl}_mixing"] = use_mixing_impl(model, impl)
        out[f"supernet_{impl}_bns"] = use_batchnorm_impl(model, impl if bn_triton else "native")
        torch.manual_seed(5)  # the partial-channel sample
        loss = F.cross_entropy(model(x, arch), y)
        params = [p for p in model.parameters()]
        grads = torch.autograd.grad(loss, [*params, *arch.values()])
        results[impl] = (loss, grads)
    out["supernet_triton_max_pools"] = len(pools)  # called in the Triton run only
    out["supernet_loss"] = _rel(results["triton"][0], results["native"][0])
    out["supernet_grads"] = max(_rel(a, b) for a, b in zip(results["triton"][1], results["native"][1]))

    torch.manual_seed(0)
    net = NetworkCIFAR(4, 10, 3, auxiliary=False, genotype=get_genotype("GAEA_PCDARTS_cifar10")).to(device)
    net.drop_path_prob = 0.0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    evals = {}
    for impl in ("native", "triton"):
        out[f"eval_{impl}_convs"] = use_depthwise_impl(net, impl)
        logits = net(x)
        loss = F.cross_entropy(logits[0] if isinstance(logits, tuple) else logits, y)
        evals[impl] = (loss, torch.autograd.grad(loss, list(net.parameters())))
    out["eval_state_dict_unchanged"] = list(before) == list(net.state_dict())
    out["eval_loss"] = _rel(evals["triton"][0], evals["native"][0])
    out["eval_grads"] = max(_rel(a, b) for a, b in zip(evals["triton"][1], evals["native"][1]))
    return out


def search(device: str, steps: int = 2) -> dict[str, Any]:
    """``steps`` search steps through ``build_run`` with ``runtime.depthwise`` native vs triton
    (0: only which kernels the built model uses)."""
    from conftest import TINY, make_cfg

    if device == "cpu":
        _fast_interpreter()

    from nas_cli.stages.search import build_run
    from nas_cli.stages.stepper import build_search_stepper

    out: dict[str, Any] = {}
    arch = {}
    for impl in ("native", "triton"):
        cfg = make_cfg([*TINY, "method=gaea_pcdarts", "objective.warmup_epochs=0", "optimizer.lr=5.0",
                        "search.batch_size=8",
                        f"runtime.depthwise={impl}", f"runtime.pointwise={impl}", f"runtime.mixing={impl}",
                        f"runtime.device={device}"])
        run = build_run(cfg, Path("."))
        out[f"{impl}_impls"] = sorted({m.depthwise_impl for m in run.model.modules()
                                       if getattr(m, "supports_depthwise_impl", False)})
        out[f"{impl}_pointwise_impls"] = sorted({m.pointwise_impl for m in run.model.modules()
                                                 if getattr(m, "supports_pointwise_impl", False)})
        out[f"{impl}_mixing_impls"] = sorted({m.mixing_impl for m in run.model.modules()
                                              if getattr(m, "supports_mixing_impl", False)})
        stepper = build_search_stepper(run)
        initial = {k: v.detach().clone() for k, v in run.arch.raw.items()}
        torch.manual_seed(3)
        for _ in range(steps):
            (x, y), (ax, ay) = run.train_stream.sample(), run.arch_stream.sample()
            stepper(run.shard(x, y), lambda ax=ax, ay=ay: run.shard(ax, ay), True)
        arch[impl] = {k: v.detach().clone() for k, v in run.arch.raw.items()}
        out[f"{impl}_moved"] = max(_rel(v, initial[k]) for k, v in arch[impl].items())
    out["arch"] = max(_rel(arch["triton"][k], arch["native"][k]) for k in arch["native"])
    return out


def dense1x1(device: str) -> dict[str, Any]:
    """Dense 1x1 convs on channels_last tensors (``spaces/dense1x1_kernels.py``) against ``F.conv2d`` in
    float64: the evaluation network's channel counts (inner dimensions under and over one 64-wide block,
    output channels over several blocks), odd sizes, a weight gradient over several row slices; which
    gradients a pass computes; the module path of ``runtime.conv1x1=triton``."""
    from torch import nn

    from nas_cli.spaces import dense1x1_kernels as dk
    from nas_cli.spaces.conv1x1 import MatmulConv1x1, use_conv1x1_impl

    out: dict[str, Any] = {"cases": {}}
    g = torch.Generator(device=device).manual_seed(0)
    cl = torch.channels_last
    for n, ci, co, h, w in ((2, 36, 36, 5, 6), (2, 144, 36, 3, 3), (1, 5, 72, 7, 3), (2, 20, 24, 16, 16)):
        x = torch.randn(n, ci, h, w, device=device, generator=g).to(memory_format=cl).requires_grad_(True)
        wt = torch.randn(co, ci, 1, 1, device=device, generator=g, requires_grad=True)
        assert dk.supported(x, wt)
        y = dk.conv1x1_nhwc(x, wt)
        gy = torch.randn(y.shape, device=device, generator=g).to(memory_format=cl)
        gx, gw = torch.autograd.grad(y, (x, wt), gy)
        xr, wr = x.detach().double().requires_grad_(), wt.detach().double().requires_grad_()
        yr = F.conv2d(xr, wr)
        gxr, gwr = torch.autograd.grad(yr, (xr, wr), gy.double())
        out["cases"][f"n{n} {ci}->{co} {h}x{w}"] = {
            "errors": [_rel(y, yr), _rel(gx, gxr), _rel(gw, gwr)],
            "channels_last": [y.is_contiguous(memory_format=cl), gx.is_contiguous(memory_format=cl)],
            "slices": dk.row_slices(x, n * h * w, co, ci)[1]}
    calls: list[str] = []
    _count_calls(dk, ("_grad_input", "_grad_weight"), calls)
    x = torch.randn(2, 8, 4, 4, device=device, generator=g).to(memory_format=cl).requires_grad_(True)
    wt = torch.randn(6, 8, 1, 1, device=device, generator=g, requires_grad=True)
    for wanted in ("input", "weight"):
        calls.clear()
        torch.autograd.grad(dk.conv1x1_nhwc(x * 1.0, wt).sum(), [x] if wanted == "input" else [wt])
        out[f"grads_computed_when_asking_{wanted}"] = sorted(calls)
    out["supported"] = {"nchw": dk.supported(x.detach().contiguous(), wt),
                        "float64": dk.supported(x.detach().double(), wt.double())}
    # the module path: a channels_last network's 1x1 convs with runtime.conv1x1=triton
    conv = nn.Conv2d(8, 6, 1, bias=False).to(device)
    ref = conv(x.detach())
    use_conv1x1_impl(conv, "triton")
    forwards: list[str] = []
    _count_calls(dk, ("conv1x1_nhwc",), forwards)
    assert isinstance(conv, MatmulConv1x1)
    out["module_error"] = _rel(conv(x.detach()), ref)
    out["module_kernel_calls"] = len(forwards)
    conv(x.detach().contiguous())  # NCHW: the conv, not the kernels
    out["module_kernel_calls_after_nchw"] = len(forwards)
    return out


def opcheck(device: str) -> dict[str, Any]:
    """``torch.library.opcheck`` of every custom op: schema, fake (meta) kernels against the real
    ones -- shapes, dtypes and strides, which torch.compile relies on -- and AOT dispatch.  A
    strided weight gradient once passed every numeric check and failed only under Inductor."""
    import nas_cli.spaces.depthwise  # noqa: F401  (registers the ops; also those of depthwise_nhwc)
    import nas_cli.spaces.bn_kernels  # noqa: F401
    import nas_cli.spaces.maxpool  # noqa: F401
    import nas_cli.spaces.avgpool  # noqa: F401
    import nas_cli.spaces.conv_merge  # noqa: F401
    import nas_cli.spaces.source_inputs  # noqa: F401
    import nas_cli.spaces.mixing  # noqa: F401
    import nas_cli.spaces.dense1x1_kernels  # noqa: F401
    from nas_cli.spaces import pointwise as pw

    ops = torch.ops.nas_cli
    g = torch.Generator(device=device).manual_seed(0)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, generator=g)

    cases: list[tuple[str, Any, tuple[Any, ...]]] = []
    for k, s, p, d in ((3, 1, 1, 1), (5, 2, 4, 2)):
        x, w = r(2, 4, 9, 8), r(4, 1, k, k)
        ho, wo = (9 + 2 * p - d * (k - 1) - 1) // s + 1, (8 + 2 * p - d * (k - 1) - 1) // s + 1
        gy = r(2, 4, ho, wo)
        cases += [(f"depthwise_conv k{k}s{s}", ops.depthwise_conv, (x, w, k, s, p, d)),
                  (f"depthwise_conv_grad_input k{k}s{s}", ops.depthwise_conv_grad_input, (gy, x, w, k, s, p, d)),
                  (f"depthwise_conv_grad_weight k{k}s{s}", ops.depthwise_conv_grad_weight, (gy, x, w, k, s, p, d))]
    x, w = r(2, 5, 7, 6).to(memory_format=torch.channels_last), r(5, 1, 3, 3)  # the NHWC kernels, dilation 2
    gy = r(2, 5, 7, 6).to(memory_format=torch.channels_last)
    cases += [("depthwise_conv_nhwc", ops.depthwise_conv_nhwc, (x, w, 3, 2, 2, False)),
              ("depthwise_conv_nhwc native gather", ops.depthwise_conv_nhwc, (x, w, 3, 2, 2, True)),
              ("depthwise_conv_nhwc_grad_input", ops.depthwise_conv_nhwc_grad_input, (gy, x, w, 3, 2, 2, False)),
              ("depthwise_conv_nhwc_grad_input native gather", ops.depthwise_conv_nhwc_grad_input,
               (gy, x, w, 3, 2, 2, True)),
              ("depthwise_conv_nhwc_grad_weight", ops.depthwise_conv_nhwc_grad_weight, (gy, x, w, 3, 2, 2, False))]
    x, w, gy = r(2, 6, 5, 5), r(4, 3, 1, 1), r(2, 4, 5, 5)  # 2 groups of 3 -> 2 channels
    cases += [("grouped_pointwise", ops.grouped_pointwise, (x, w, 2)),
              ("grouped_pointwise_grad_input", ops.grouped_pointwise_grad_input, (gy, w, 2)),
              ("grouped_pointwise_grad_weight", ops.grouped_pointwise_grad_weight, (gy, x, w, 2))]
    m, o, acc = r(2, 5), r(3, 5, 70), r(3, 4, 70)[:, 1:3]  # the accumulated term: a strided view
    o0, o1, o2 = r(3, 3, 70), r(3, 1, 70), r(3, 1, 70)
    cases += [("mix_rows", ops.mix_rows, (m, o, None, None, acc, None)),
              ("mix_rows no acc", ops.mix_rows, (m, o, None, None, None, None)),
              ("mix_rows three operands", ops.mix_rows, (m, o0, o1, o2, acc, None)),
              ("mix_rows bias", ops.mix_rows, (m, o0, o1, None, acc, r(2))),
              ("mix_rows_backward", ops.mix_rows_backward, (r(3, 2, 70), m, o, None, None, [True, False, False],
                                                            True, False)),
              ("mix_rows_backward operand only", ops.mix_rows_backward,
               (r(3, 2, 70), m, o, None, None, [True, False, False], False, False)),
              ("mix_rows_backward three operands", ops.mix_rows_backward,
               (r(3, 2, 70), m, o0, o1, o2, [True, False, True], True, False)),
              ("mix_rows_backward bias", ops.mix_rows_backward,
               (r(3, 2, 70), m, o0, o1, o2, [False, False, False], True, True)),
              ("mix_rows_backward bias only", ops.mix_rows_backward,
               (r(3, 2, 70), m, o0, o1, None, [True, False, False], False, True)),
              ("merge_1x1_into_3x3", ops.merge_1x1_into_3x3, (r(4, 3, 3, 3), r(2, 3, 1, 1))),
              ("merge_1x1_into_3x3 channels_last", ops.merge_1x1_into_3x3, (r(4, 3, 3, 3), r(2, 3, 1, 1), True)),
              ("unmerge_3x3_grad", ops.unmerge_3x3_grad, (r(6, 3, 3, 3), 4)),
              ("unmerge_3x3_grad channels_last", ops.unmerge_3x3_grad,
               (r(6, 3, 3, 3).to(memory_format=torch.channels_last), 4))]
    s3, s1 = torch.tensor([1.0, 0.0, 0.0, 1.0], device=device), torch.tensor([0.0, 1.0, 0.0, 0.0], device=device)
    cases += [("select_3x3", ops.select_3x3, (r(4, 3, 3, 3), r(4, 3, 1, 1), s3, s1)),
              ("select_3x3 channels_last", ops.select_3x3, (r(4, 3, 3, 3), r(4, 3, 1, 1), s3, s1, True)),
              ("unselect_3x3_grad", ops.unselect_3x3_grad, (r(4, 3, 3, 3), s3, s1)),
              ("unselect_3x3_grad channels_last", ops.unselect_3x3_grad,
               (r(4, 3, 3, 3).to(memory_format=torch.channels_last), s3, s1))]
    x, w, gy = (r(2, 36, 5, 3).to(memory_format=torch.channels_last), r(20, 36, 1, 1),
                r(2, 20, 5, 3).to(memory_format=torch.channels_last))
    cases += [("conv1x1_nhwc", ops.conv1x1_nhwc, (x, w)),
              ("conv1x1_nhwc_grad_input", ops.conv1x1_nhwc_grad_input, (gy, w)),
              ("conv1x1_nhwc_grad_weight", ops.conv1x1_nhwc_grad_weight, (gy, x, w))]
    cases += [("avg_pool_3x3", ops.avg_pool_3x3, (r(2, 3, 9, 8),)),
              ("avg_pool_3x3_backward", ops.avg_pool_3x3_backward, (r(2, 3, 9, 8),))]
    xi = r(2, 3, 9, 8)
    cases += [("source_inputs", ops.source_inputs, (xi, True, True)),
              ("source_inputs relu only", ops.source_inputs, (xi, True, False)),
              ("source_inputs relu nhwc", ops.source_inputs, (xi, True, True, True)),
              ("source_inputs_backward relu nhwc", ops.source_inputs_backward,
               ([2, 3, 9, 8], xi.relu().to(memory_format=torch.channels_last),
                r(2, 3, 9, 8).to(memory_format=torch.channels_last), r(2, 3, 9, 8), None, True)),
              ("source_inputs_backward", ops.source_inputs_backward,
               ([2, 3, 9, 8], xi.relu(), r(2, 3, 9, 8), r(2, 3, 9, 8), r(2, 3, 9, 8))),
              ("source_inputs_backward skip and pool", ops.source_inputs_backward,
               ([2, 3, 9, 8], None, None, r(2, 3, 9, 8), r(2, 3, 9, 8)))]
    xp = r(2, 3, 9, 8)
    _, idx = ops.max_pool(xp, 3, 2, 1)
    xb = r(3, 4, 5, 6)
    yb, invstd, _, _ = ops.batch_norm_train(xb, 1e-5)
    xc = r(3, 4, 5, 6).to(memory_format=torch.channels_last)
    yc, invstd_c, _, _ = ops.batch_norm_train_nhwc(xc, 1e-5)
    cases += [("batch_norm_train", ops.batch_norm_train, (xb, 1e-5)),
              ("batch_norm_train_backward", ops.batch_norm_train_backward, (r(3, 4, 5, 6), yb, invstd)),
              ("batch_norm_train_nhwc", ops.batch_norm_train_nhwc, (xc, 1e-5)),
              ("batch_norm_train_nhwc_backward", ops.batch_norm_train_nhwc_backward, (r(3, 4, 5, 6), yc, invstd_c))]
    cases += [("max_pool", ops.max_pool, (xp, 3, 2, 1)),
              ("max_pool_backward", ops.max_pool_backward, (r(*idx.shape), idx, 9, 8, 3, 2, 1))]
    out: dict[str, Any] = {}
    tests = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    for native_wgrad in (True, False):  # both 1x1 weight-gradient paths
        pw.NATIVE_WEIGHT_GRAD = native_wgrad
        for name, op, args in cases:
            if name.startswith("grouped_pointwise_grad_weight") or native_wgrad:
                key = name + ("" if native_wgrad or "grad_weight" not in name else " triton")
                try:
                    out[key] = torch.library.opcheck(op, args, test_utils=tests)
                except Exception as e:  # noqa: BLE001  (reported, asserted by the test)
                    out[key] = {"error": str(e).splitlines()[0][:400]}
    pw.NATIVE_WEIGHT_GRAD = True
    return out


def bf16(device: str) -> dict[str, Any]:
    """bf16 inputs (what ``runtime.precision=bf16`` hands a depthwise conv): the NCHW and NHWC kernels
    against ``F.conv2d`` in float64 on the same bf16 values and the fp32 weight, every direction; on
    CUDA also the module under bf16 autocast, each channels_last route forced, against the same reference.

    The output and input gradient are rounded to bf16 once (fp32 accumulation): within one bf16 ulp of
    the largest value, 2**-7 (the CPU interpreter truncates, a GPU rounds to nearest).  The weight
    gradient is fp32 from products of bf16 values, which fp32 holds exactly: fp32 accuracy.
    """
    from nas_cli.spaces import depthwise as dw
    from nas_cli.spaces import depthwise_nhwc as nh

    out: dict[str, Any] = {"nchw": {}, "nhwc": {}, "module": {}}
    g = torch.Generator(device=device).manual_seed(0)

    def errors(got: tuple, ref: tuple) -> list[float]:
        return [_rel(a, b) for a, b in zip(got, ref)] + [float(got[0].dtype == got[1].dtype == torch.bfloat16
                                                                and got[2].dtype == torch.float32)]

    for k in (3, 5):
        for s in (1, 2):
            for d in (1, 2):
                p = d * (k - 1) // 2
                x = torch.randn(2, 3, 11, 10, device=device, generator=g).bfloat16().requires_grad_(True)
                wt = torch.randn(3, 1, k, k, device=device, generator=g, requires_grad=True)
                y = dw.depthwise_conv2d(x, wt, s, p, d)
                gy = torch.randn(y.shape, device=device, generator=g).bfloat16()
                ref = _conv_reference(x, wt, gy, s, p, d)
                out["nchw"][f"k{k} s{s} d{d}"] = errors((y, *torch.autograd.grad(y, (x, wt), gy)), ref)
                if s == 1:
                    xl = x.detach().to(memory_format=torch.channels_last).requires_grad_(True)
                    gyl = gy.to(memory_format=torch.channels_last)
                    for native_gather in (False, True):
                        yl = nh.depthwise_conv2d_nhwc(xl, wt, p, d, native_gather)
                        out["nhwc"][f"k{k} d{d}" + (" native gather" if native_gather else "")] = errors(
                            (yl, *torch.autograd.grad(yl, (xl, wt), gyl)), ref)
    # the measured rule's routes for a bf16 conv of a channels_last input: a bf16 input, and on CUDA an
    # fp32 input under bf16 autocast (what the conv computes in decides, not the input's dtype)
    out["routes"] = {}
    for name, (c, h, k, s, d) in {"dilated 16x16": (3, 16, 3, 1, 2), "plain 8x8": (3, 8, 5, 1, 1),
                                  "strided 16->8": (3, 16, 5, 2, 1), "plain 16x16": (3, 16, 3, 1, 1),
                                  "strided dilated 16->8": (2, 16, 3, 2, 2)}.items():
        xs = torch.randn(2, c, h, h, device=device, generator=g).to(memory_format=torch.channels_last)
        wt = torch.randn(c, 1, k, k, device=device, generator=g)
        args = (wt, k, s, d * (k - 1) // 2, d)
        out["routes"][name] = [dw.channels_last_route(xs, *args), dw.channels_last_route(xs.bfloat16(), *args)]
        if device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out["routes"][name].append(dw.channels_last_route(xs, *args))
    if device == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # cuDNN's route: bf16 products, no TF32 question
        for name, (c, h, k, s, d) in {"dilated 16x16": (8, 16, 3, 1, 2), "plain 8x8": (8, 8, 5, 1, 1),
                                      "strided 16->8": (8, 16, 5, 2, 1)}.items():
            p = d * (k - 1) // 2
            conv = torch.nn.Conv2d(c, c, k, s, p, d, groups=c, bias=False).to(device)
            conv = conv.to(memory_format=torch.channels_last)
            dw.use_depthwise_impl(conv, "triton")
            x = torch.randn(4, c, h, h, device=device, generator=g).bfloat16()
            x = x.to(memory_format=torch.channels_last).requires_grad_(True)
            gy = None
            for policy in dw.CHANNELS_LAST_ROUTES:
                dw.channels_last_policy = policy
                if dw.channels_last_route(x, conv.weight, k, s, p, d) != policy:
                    continue  # the NHWC kernels: stride 1 only
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    y = conv(x)
                if gy is None:
                    gy = torch.randn(y.shape, device=device, generator=g).bfloat16()
                    gy = gy.to(memory_format=torch.channels_last)
                    ref = _conv_reference(x, conv.weight, gy, s, p, d)
                got = (y, *torch.autograd.grad(y, (x, conv.weight), gy))
                out["module"][f"{name} {policy}"] = errors(got, ref)[:3] + [
                    float(y.is_contiguous(memory_format=torch.channels_last))]
        dw.channels_last_policy = "measured"
    return out


CHECKS: dict[str, Callable[[str], dict[str, Any]]] = {
    "kernels": kernels, "nhwc": nhwc, "pointwise": pointwise, "mixing": mixing, "nb201": nb201, "maxpool": maxpool, "batchnorm": batchnorm, "supernet": supernet, "search": search, "opcheck": opcheck,
    "dense1x1": dense1x1, "bf16": bf16, "wiring": lambda device: search(device, steps=0)}

if __name__ == "__main__":
    check, dest = sys.argv[1], Path(sys.argv[2])
    result = CHECKS[check](sys.argv[3] if len(sys.argv) > 3 else "cpu")
    dest.write_text(json.dumps(result, indent=1))

"""The fused cells' weighted sums as Triton kernels (``runtime.mixing``).

Why: both fused supernets end every group of ops with a weighted sum over stacked op outputs,
``out[n, q] = acc[n, q] + Σ_p M[q, p] · O[n, p]`` with a handful of destinations q (1 in the DARTS
space, up to 3 in NB201) and 4..35 rows p, each row a whole C·H·W feature map.  As batched matmuls
those are GEMMs with an inner dimension of 4..35 and an outer one of 1..3 per image: cuBLAS runs
them far below memory bandwidth, and the coefficient gradient becomes a split-K product per image
followed by a sum over the batch.  In the NB201 GAEA DARTS step's H200 profile (2026-12-02) these
GEMMs took about 6.5 of 30.4 ms of device time, where reading their operands once takes under 1 ms.

The kernels read every operand once per direction:

* forward: a program owns one image and a block of C·H·W positions, loads each row of O once and
  accumulates all destinations in registers, adding ``acc`` (the contributions of the node's other
  groups) on the way out;
* backward: the same tiling reads the output gradient once, writes ``M^T g`` and, when the pass needs
  the coefficient gradient, reduces ``g · O`` over the block into per-program partial sums that are
  added in a fixed order afterwards (deterministic, no atomics).

Only the gradients the running backward pass needs are computed (``pass_needs``): the weight step of
a first-order search needs no coefficient gradient, the architecture step's ``autograd.grad(loss,
arch)`` does.  Accumulation is fp32; same function as ``torch.baddbmm(acc, M.expand(N, -1, -1), O)``.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from nas_cli.spaces.triton_support import as_graph_input, available, pass_needs, pow2, set_kernel_impl, tl, triton

#: rows the kernels unroll (the DARTS space's largest group: 7 ops x 5 edges)
MAX_ROWS = 64
#: destinations per call (NB201: a node feeds at most 3 later nodes)
MAX_DESTS = 8

if triton is not None:

    @triton.jit
    def _wsum_fwd_kernel(o_ptr, m_ptr, acc_ptr, y_ptr, N, E, o_sn, o_sp, a_sn, a_sq,
                    P: tl.constexpr, Q: tl.constexpr, QP: tl.constexpr, HAS_ACC: tl.constexpr,
                    BLOCK: tl.constexpr):
        """y[n, q, e] = acc[n, q, e] + sum_p m[q, p] o[n, p, e]; one program per (image, block of e)."""
        n = tl.program_id(0)
        e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = e < E
        q = tl.arange(0, QP)
        q_live = q < Q
        acc = tl.zeros([QP, BLOCK], dtype=tl.float32)
        o_row = o_ptr + n.to(tl.int64) * o_sn + e
        for p in tl.static_range(P):
            ov = tl.load(o_row + p * o_sp, mask=live, other=0.0).to(tl.float32)
            mv = tl.load(m_ptr + q * P + p, mask=q_live, other=0.0).to(tl.float32)
            acc += mv[:, None] * ov[None, :]
        both = q_live[:, None] & live[None, :]
        if HAS_ACC:
            acc += tl.load(acc_ptr + n.to(tl.int64) * a_sn + q[:, None] * a_sq + e[None, :], mask=both,
                           other=0.0).to(tl.float32)
        # destination-major output: y[n, q, e] lives at (q * N + n) * E + e
        tl.store(y_ptr + (q[:, None] * N + n.to(tl.int64)) * E + e[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=both)

    @triton.jit
    def _wsum_bwd_kernel(g_ptr, o_ptr, m_ptr, go_ptr, part_ptr, E, BLOCKS, g_sn, g_sq, o_sn, o_sp,
                    P: tl.constexpr, Q: tl.constexpr, QP: tl.constexpr, NEED_GO: tl.constexpr,
                    NEED_GM: tl.constexpr, BLOCK: tl.constexpr):
        """go[n, p, e] = sum_q m[q, p] g[n, q, e];  part[n*BLOCKS + b, q, p] = sum_e g[n, q, e] o[n, p, e]."""
        n = tl.program_id(0)
        b = tl.program_id(1)
        e = b * BLOCK + tl.arange(0, BLOCK)
        live = e < E
        q = tl.arange(0, QP)
        q_live = q < Q
        g = tl.load(g_ptr + n.to(tl.int64) * g_sn + q[:, None] * g_sq + e[None, :],
                    mask=q_live[:, None] & live[None, :], other=0.0).to(tl.float32)
        o_row = o_ptr + n.to(tl.int64) * o_sn + e
        go_row = go_ptr + n.to(tl.int64) * (P * E) + e
        part_row = part_ptr + ((n * BLOCKS + b) * QP + q) * P
        for p in tl.static_range(P):
            mv = tl.load(m_ptr + q * P + p, mask=q_live, other=0.0).to(tl.float32)
            if NEED_GO:
                tl.store(go_row + p * E, tl.sum(mv[:, None] * g, axis=0).to(go_ptr.dtype.element_ty), mask=live)
            if NEED_GM:
                ov = tl.load(o_row + p * o_sp, mask=live, other=0.0).to(tl.float32)
                tl.store(part_row + p, tl.sum(g * ov[None, :], axis=1))


#: positions per program: enough work per program to hide latency, few enough partial sums
_BLOCK = 1024


def _blocks(e: int) -> int:
    return (e + _BLOCK - 1) // _BLOCK


def _rows_contiguous(t: Tensor) -> Tensor:
    """``t`` (N, rows, E) with unit stride along E, as the kernels address it (a copy only if not)."""
    return t if t.stride(2) == 1 else t.contiguous()


@torch.library.custom_op("nas_cli::mix_rows", mutates_args=())
def _mix(m: Tensor, o: Tensor, acc: Optional[Tensor]) -> Tensor:
    n, p, e = o.shape
    q = m.shape[0]
    o = _rows_contiguous(o)
    if acc is not None:
        acc = _rows_contiguous(acc)
    y = _output(o, q)
    a = acc if acc is not None else y
    _wsum_fwd_kernel[(n, _blocks(e))](o, m.contiguous(), a, y, n, e, o.stride(0), o.stride(1), a.stride(0), a.stride(1),
                                 P=p, Q=q, QP=pow2(q), HAS_ACC=acc is not None, BLOCK=_BLOCK)
    return y


def _output(o: Tensor, q: int) -> Tensor:
    """The (N, Q, E) output stored destination-major, (Q, N, E) in memory: each destination's slice
    ``y[:, d]`` is then one contiguous (N, E) block, so the node a fused cell takes from it and the
    pending contributions to later nodes are contiguous tensors (the next ops read them without
    copies, and the Triton pooling kernels take them)."""
    return o.new_empty((q, o.shape[0], o.shape[2])).permute(1, 0, 2)


@_mix.register_fake
def _mix_fake(m: Tensor, o: Tensor, acc: Optional[Tensor]) -> Tensor:
    return _output(o, m.shape[0])


@torch.library.custom_op("nas_cli::mix_rows_backward", mutates_args=())
def _mix_backward(g: Tensor, m: Tensor, o: Tensor, need_go: bool, need_gm: bool) -> tuple[Tensor, Tensor]:
    n, p, e = o.shape
    q = m.shape[0]
    g, o = _rows_contiguous(g), _rows_contiguous(o)
    blocks = _blocks(e)
    go = torch.empty((n, p, e) if need_go else (0,), device=o.device, dtype=o.dtype)
    part = torch.empty((n * blocks, pow2(q), p) if need_gm else (0,), device=o.device, dtype=torch.float32)
    if need_go or need_gm:
        _wsum_bwd_kernel[(n, blocks)](g, o, m.contiguous(), go, part, e, blocks, g.stride(0), g.stride(1), o.stride(0),
                                 o.stride(1), P=p, Q=q, QP=pow2(q), NEED_GO=need_go, NEED_GM=need_gm, BLOCK=_BLOCK)
    gm = part.sum(0)[:q].to(m.dtype) if need_gm else m.new_empty((0,))
    return go, gm


@_mix_backward.register_fake
def _mix_backward_fake(g: Tensor, m: Tensor, o: Tensor, need_go: bool, need_gm: bool) -> tuple[Tensor, Tensor]:
    return (o.new_empty(o.shape if need_go else (0,)), m.new_empty(m.shape if need_gm else (0,)))


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    m, o, acc = inputs
    ctx.save_for_backward(m, o)
    ctx.nodes = (m.grad_fn, o.grad_fn)  # which gradients a backward pass needs (pass_needs)


def _backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
    m, o = ctx.saved_tensors
    need_gm = pass_needs(ctx, 0, ctx.nodes[0])
    need_go = pass_needs(ctx, 1, ctx.nodes[1])
    go, gm = _mix_backward(g, m, o, need_go, need_gm)
    return (gm if need_gm else None, go if need_go else None, g if ctx.needs_input_grad[2] else None)


_mix.register_autograd(_backward, setup_context=_setup)


def mix_rows_native(m: Tensor, o: Tensor, acc: Tensor | None = None) -> Tensor:
    """``acc + M @ O`` per image as batched matmuls (the reference formulation)."""
    mm = m.to(o.dtype).expand(o.shape[0], -1, -1)
    return torch.bmm(mm, o) if acc is None else torch.baddbmm(acc, mm, o)


def supported(m: Tensor, o: Tensor, acc: Tensor | None) -> bool:
    """Whether the Triton kernels compute this weighted sum."""
    return (o.dim() == 3 and m.dim() == 2 and m.shape[1] == o.shape[1]
            and 1 <= o.shape[1] <= MAX_ROWS and 1 <= m.shape[0] <= MAX_DESTS
            and o.dtype in (torch.float32, torch.bfloat16, torch.float16)
            and (acc is None or (acc.shape == (o.shape[0], m.shape[0], o.shape[2]) and acc.dtype == o.dtype))
            and available(o.device) and o.numel() < 2**31)


def mix_rows(m: Tensor, o: Tensor, acc: Tensor | None = None, impl: str = "native") -> Tensor:
    """``out[n, q] = acc[n, q] + Σ_p m[q, p] o[n, p]`` for ``m`` (Q, P), ``o`` (N, P, E), ``acc`` (N, Q, E).

    ``impl="triton"`` runs the kernels above where :func:`supported` allows, batched matmuls otherwise.
    """
    if impl == "triton" and supported(m, o, acc):
        return _mix(as_graph_input(m.to(o.dtype)), as_graph_input(o), acc)  # type: ignore[arg-type]
    return mix_rows_native(m, o, acc)


def use_mixing_impl(model: nn.Module, impl: str) -> int:
    """Run the fused cells' weighted sums (``supports_mixing_impl``) with ``impl``; returns how many cells were set."""
    return set_kernel_impl(model, "mixing", impl)

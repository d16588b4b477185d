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

A per-destination constant ``bias[q]`` may be added as well (``out[n, q] += bias[q]`` at every
position): the masked one-hot NB201 forward adds each node's ``rest``, a sum of zero-valued sample
entries that exists only for its gradient, ``Σ_{n,e} g[n, q, e]``.  As a separate broadcast add it
cost each node a non-vectorised elementwise kernel forward and a full reduction backward; here the
forward adds it in registers and the backward sums ``g`` in the pass that already reads it.

The rows of O may come from up to ``MAX_OPERANDS`` tensors (NB201: a source's conv/BN rows, its skip
row and its pool row), read in place: the Triton path never concatenates them, and the backward
writes one gradient per operand, only for the operands the pass needs.  The native path concatenates
them and gives the same bits as before.

Only the gradients the running backward pass needs are computed (``pass_needs``): the weight step of
a first-order search needs no coefficient gradient, the architecture step's ``autograd.grad(loss,
arch)`` does.  Accumulation is fp32; same function as ``torch.baddbmm(acc, M.expand(N, -1, -1), O)``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from nas_cli.spaces.triton_support import as_graph_input, available, pass_needs, pow2, set_kernel_impl, tl, triton

#: rows the kernels unroll (the DARTS space's largest group: 7 ops x 5 edges)
MAX_ROWS = 64
#: destinations per call (NB201: a node feeds at most 3 later nodes)
MAX_DESTS = 8
#: operand tensors one call reads its rows from (NB201: conv/BN rows, skip row, pool row)
MAX_OPERANDS = 3

if triton is not None:

    @triton.jit
    def _rows_fwd(acc, row, sp, m_ptr, q, q_live, live, P: tl.constexpr, START: tl.constexpr, COUNT: tl.constexpr):
        """acc[q] += sum over the COUNT rows at ``row`` (row stride ``sp``) of m[q, START + p] * row p."""
        for p in tl.static_range(COUNT):
            ov = tl.load(row + p * sp, mask=live, other=0.0).to(tl.float32)
            mv = tl.load(m_ptr + q * P + START + p, mask=q_live, other=0.0).to(tl.float32)
            acc += mv[:, None] * ov[None, :]
        return acc

    @triton.jit
    def _wsum_fwd_kernel(o0_ptr, o1_ptr, o2_ptr, m_ptr, acc_ptr, b_ptr, y_ptr, N, E, o0_sn, o0_sp, o1_sn, o1_sp,
                         o2_sn, o2_sp, a_sn, a_sq, P0: tl.constexpr, P1: tl.constexpr, P2: tl.constexpr,
                         Q: tl.constexpr, QP: tl.constexpr, HAS_ACC: tl.constexpr, HAS_BIAS: tl.constexpr,
                         BLOCK: tl.constexpr):
        """y[n, q, e] = acc[n, q, e] + b[q] + sum_p m[q, p] o[n, p, e], the rows p of o held by up to
        three operands (P0, P1, P2 rows); one program per (image, block of e)."""
        n = tl.program_id(0)
        e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = e < E
        q = tl.arange(0, QP)
        q_live = q < Q
        n64 = n.to(tl.int64)
        acc = tl.zeros([QP, BLOCK], dtype=tl.float32)
        if HAS_BIAS:
            acc += tl.load(b_ptr + q, mask=q_live, other=0.0).to(tl.float32)[:, None]
        acc = _rows_fwd(acc, o0_ptr + n64 * o0_sn + e, o0_sp, m_ptr, q, q_live, live, P0 + P1 + P2, 0, P0)
        acc = _rows_fwd(acc, o1_ptr + n64 * o1_sn + e, o1_sp, m_ptr, q, q_live, live, P0 + P1 + P2, P0, P1)
        acc = _rows_fwd(acc, o2_ptr + n64 * o2_sn + e, o2_sp, m_ptr, q, q_live, live, P0 + P1 + P2, P0 + P1, P2)
        both = q_live[:, None] & live[None, :]
        if HAS_ACC:
            acc += tl.load(acc_ptr + n64 * a_sn + q[:, None] * a_sq + e[None, :], mask=both,
                           other=0.0).to(tl.float32)
        # destination-major output: y[n, q, e] lives at (q * N + n) * E + e
        tl.store(y_ptr + (q[:, None] * N + n64) * E + e[None, :], acc.to(y_ptr.dtype.element_ty), mask=both)

    @triton.jit
    def _rows_bwd(g, row, sp, go_row, go_sp, part_row, m_ptr, q, q_live, live, P: tl.constexpr,
                  START: tl.constexpr, COUNT: tl.constexpr, NEED_GO: tl.constexpr, NEED_GM: tl.constexpr):
        """For the COUNT rows at ``row``: go[p] = sum_q m[q, START + p] g[q] and the partial sums
        part[q, START + p] = sum_e g[q, e] o[p, e]."""
        for p in tl.static_range(COUNT):
            mv = tl.load(m_ptr + q * P + START + p, mask=q_live, other=0.0).to(tl.float32)
            if NEED_GO:
                tl.store(go_row + p * go_sp, tl.sum(mv[:, None] * g, axis=0).to(go_row.dtype.element_ty),
                         mask=live)
            if NEED_GM:
                ov = tl.load(row + p * sp, mask=live, other=0.0).to(tl.float32)
                tl.store(part_row + START + p, tl.sum(g * ov[None, :], axis=1))

    @triton.jit
    def _wsum_bwd_kernel(g_ptr, o0_ptr, o1_ptr, o2_ptr, m_ptr, go0_ptr, go1_ptr, go2_ptr, part_ptr, E,
                         BLOCKS, g_sn, g_sq, o0_sn, o0_sp, o1_sn, o1_sp, o2_sn, o2_sp, P0: tl.constexpr,
                         P1: tl.constexpr, P2: tl.constexpr, Q: tl.constexpr, QP: tl.constexpr,
                         GO0: tl.constexpr, GO1: tl.constexpr, GO2: tl.constexpr, NEED_GM: tl.constexpr,
                         NEED_GB: tl.constexpr, BLOCK: tl.constexpr):
        """go_i[n, p, e] = sum_q m[q, p] g[n, q, e] per operand i (contiguous (N, P_i, E)); the partial
        sums part[n*BLOCKS + b, q, :] = [sum_e g[n, q, e] o[n, p, e] for each p (with NEED_GM),
        sum_e g[n, q, e] (the bias's gradient, with NEED_GB)], summed over the programs afterwards in
        one reduction for both."""
        n = tl.program_id(0)
        b = tl.program_id(1)
        e = b * BLOCK + tl.arange(0, BLOCK)
        live = e < E
        q = tl.arange(0, QP)
        q_live = q < Q
        n64 = n.to(tl.int64)
        g = tl.load(g_ptr + n64 * g_sn + q[:, None] * g_sq + e[None, :],
                    mask=q_live[:, None] & live[None, :], other=0.0).to(tl.float32)
        P = P0 + P1 + P2
        W = P * NEED_GM + NEED_GB  # partial sums per (program, destination): the coefficients', the bias's
        part_row = part_ptr + ((n * BLOCKS + b) * QP + q) * W
        _rows_bwd(g, o0_ptr + n64 * o0_sn + e, o0_sp, go0_ptr + n64 * (P0 * E) + e, E, part_row, m_ptr, q,
                  q_live, live, P, 0, P0, GO0, NEED_GM)
        _rows_bwd(g, o1_ptr + n64 * o1_sn + e, o1_sp, go1_ptr + n64 * (P1 * E) + e, E, part_row, m_ptr, q,
                  q_live, live, P, P0, P1, GO1, NEED_GM)
        _rows_bwd(g, o2_ptr + n64 * o2_sn + e, o2_sp, go2_ptr + n64 * (P2 * E) + e, E, part_row, m_ptr, q,
                  q_live, live, P, P0 + P1, P2, GO2, NEED_GM)
        if NEED_GB:
            tl.store(part_row + P * NEED_GM, tl.sum(g, axis=1))


#: positions per program: enough work per program to hide latency, few enough partial sums
_BLOCK = 1024


def _blocks(e: int) -> int:
    return (e + _BLOCK - 1) // _BLOCK


def _rows_contiguous(t: Tensor) -> Tensor:
    """``t`` (N, rows, E) with unit stride along E, as the kernels address it (a copy only if not)."""
    return t if t.stride(2) == 1 else t.contiguous()


def _operands(o0: Tensor, o1: Optional[Tensor], o2: Optional[Tensor]) -> tuple[list[Tensor], list[int], list[int]]:
    """The operands with unit stride along E, each operand's rows (0 for an absent one, whose place
    ``o0`` fills), and the six (image, row) strides the kernels take."""
    ops = [_rows_contiguous(o) if o is not None else None for o in (o0, o1, o2)]
    rows = [o.shape[1] if o is not None else 0 for o in ops]
    full = [o if o is not None else ops[0] for o in ops]
    strides = [s for o in full for s in (o.stride(0), o.stride(1))]
    return full, rows, strides  # type: ignore[return-value]


@torch.library.custom_op("nas_cli::mix_rows", mutates_args=())
def _mix(m: Tensor, o0: Tensor, o1: Optional[Tensor], o2: Optional[Tensor], acc: Optional[Tensor],
         bias: Optional[Tensor]) -> Tensor:
    n, _, e = o0.shape
    q = m.shape[0]
    full, (p0, p1, p2), strides = _operands(o0, o1, o2)
    if acc is not None:
        acc = _rows_contiguous(acc)
    y = _output(o0, q)
    a = acc if acc is not None else y
    b = bias.contiguous() if bias is not None else m
    _wsum_fwd_kernel[(n, _blocks(e))](*full, m.contiguous(), a, b, y, n, e, *strides, a.stride(0), a.stride(1),
                                      P0=p0, P1=p1, P2=p2, Q=q, QP=pow2(q), HAS_ACC=acc is not None,
                                      HAS_BIAS=bias is not None, BLOCK=_BLOCK)
    return y


def _output(o: Tensor, q: int) -> Tensor:
    """The (N, Q, E) output stored destination-major, (Q, N, E) in memory: each destination's slice
    ``y[:, d]`` is then one contiguous (N, E) block, so the node a fused cell takes from it and the
    pending contributions to later nodes are contiguous tensors (the next ops read them without
    copies, and the Triton pooling kernels take them)."""
    return o.new_empty((q, o.shape[0], o.shape[2])).permute(1, 0, 2)


@_mix.register_fake
def _mix_fake(m: Tensor, o0: Tensor, o1: Optional[Tensor], o2: Optional[Tensor], acc: Optional[Tensor],
              bias: Optional[Tensor]) -> Tensor:
    return _output(o0, m.shape[0])


@torch.library.custom_op("nas_cli::mix_rows_backward", mutates_args=())
def _mix_backward(g: Tensor, m: Tensor, o0: Tensor, o1: Optional[Tensor], o2: Optional[Tensor],
                  need_go: list[bool], need_gm: bool, need_gb: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(go0, go1, go2, sums): each operand's gradient where ``need_go`` says so (else empty); ``sums``
    (Q, P * need_gm + need_gb): the coefficients' gradient (its first P columns, with ``need_gm``) and
    the bias's (its last column, with ``need_gb``), from one reduction of the kernel's partial sums
    (empty when neither is needed; :func:`_backward` takes the views)."""
    n, _, e = o0.shape
    q = m.shape[0]
    g = _rows_contiguous(g)
    full, rows, strides = _operands(o0, o1, o2)
    blocks = _blocks(e)
    wanted = [bool(w) and r > 0 for w, r in zip(need_go, rows)]
    gos = [torch.empty((n, r, e) if w else (0,), device=o0.device, dtype=o0.dtype) for w, r in zip(wanted, rows)]
    p = sum(rows)
    # the coefficients' partial sums, then the bias's: one reduction for both (no bool arithmetic on
    # sizes, which may be symbolic under torch.compile)
    width = (p if need_gm else 0) + (1 if need_gb else 0)
    part = torch.empty((n * blocks, pow2(q), width) if need_gm or need_gb else (0,), device=o0.device,
                       dtype=torch.float32)
    if any(wanted) or need_gm or need_gb:
        _wsum_bwd_kernel[(n, blocks)](g, *full, m.contiguous(), *gos, part, e, blocks, g.stride(0),
                                      g.stride(1), *strides, P0=rows[0], P1=rows[1], P2=rows[2], Q=q, QP=pow2(q),
                                      GO0=wanted[0], GO1=wanted[1], GO2=wanted[2], NEED_GM=need_gm,
                                      NEED_GB=need_gb, BLOCK=_BLOCK)
    sums = part.sum(0)[:q].to(m.dtype) if need_gm or need_gb else m.new_empty((0,))
    return gos[0], gos[1], gos[2], sums


@_mix_backward.register_fake
def _mix_backward_fake(g: Tensor, m: Tensor, o0: Tensor, o1: Optional[Tensor], o2: Optional[Tensor],
                       need_go: list[bool], need_gm: bool, need_gb: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    gos = [o.new_empty(o.shape if w else (0,)) if o is not None else o0.new_empty((0,))
           for w, o in zip(need_go, (o0, o1, o2))]
    width = (m.shape[1] if need_gm else 0) + (1 if need_gb else 0)
    return gos[0], gos[1], gos[2], m.new_empty((m.shape[0], width) if need_gm or need_gb else (0,))


def _setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    m, o0, o1, o2, acc, bias = inputs
    ctx.save_for_backward(m, o0, o1, o2)
    # which gradients a backward pass needs (pass_needs)
    ctx.nodes = tuple(t.grad_fn if t is not None else None for t in (m, o0, o1, o2, acc, bias))


def _backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, ...]:
    m, o0, o1, o2 = ctx.saved_tensors
    need_gm = pass_needs(ctx, 0, ctx.nodes[0])
    need_go = [o is not None and pass_needs(ctx, i + 1, ctx.nodes[i + 1]) for i, o in enumerate((o0, o1, o2))]
    need_gb = pass_needs(ctx, 5, ctx.nodes[5])
    go0, go1, go2, sums = _mix_backward(g, m, o0, o1, o2, need_go, need_gm, need_gb)
    p = m.shape[1]
    return (sums[:, :p] if need_gm else None, *(go if need else None for go, need in zip((go0, go1, go2), need_go)),
            g if ctx.needs_input_grad[4] else None, sums[:, p if need_gm else 0] if need_gb else None)


_mix.register_autograd(_backward, setup_context=_setup)


def _rows(o: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [o] if isinstance(o, Tensor) else list(o)


def mix_rows_native(m: Tensor, o: Tensor | Sequence[Tensor], acc: Tensor | None = None,
                    bias: Tensor | None = None) -> Tensor:
    """``acc + M @ O (+ bias)`` per image as batched matmuls (the reference formulation); a sequence
    ``o`` is concatenated along its rows first; ``bias`` (Q,) is a broadcast add afterwards."""
    rows = _rows(o)
    cat = rows[0] if len(rows) == 1 else torch.cat(rows, 1)
    mm = m.to(cat.dtype).expand(cat.shape[0], -1, -1)
    y = torch.bmm(mm, cat) if acc is None else torch.baddbmm(acc, mm, cat)
    return y if bias is None else y + bias.to(y.dtype).view(1, -1, 1)


def supported(m: Tensor, o: Tensor | Sequence[Tensor], acc: Tensor | None, bias: Tensor | None = None) -> bool:
    """Whether the Triton kernels compute this weighted sum."""
    rows = _rows(o)
    if not 1 <= len(rows) <= MAX_OPERANDS or any(t.dim() != 3 for t in rows):
        return False
    n, _, e = rows[0].shape
    p = sum(t.shape[1] for t in rows)
    return (m.dim() == 2 and m.shape[1] == p and 1 <= p <= MAX_ROWS and 1 <= m.shape[0] <= MAX_DESTS
            and all(t.shape[0] == n and t.shape[2] == e and t.shape[1] > 0 and t.dtype == rows[0].dtype
                    for t in rows)
            and rows[0].dtype in (torch.float32, torch.bfloat16, torch.float16)
            and (acc is None or (acc.shape == (n, m.shape[0], e) and acc.dtype == rows[0].dtype))
            and (bias is None or (bias.shape == (m.shape[0],) and bias.device == rows[0].device))
            and available(rows[0].device) and max(t.numel() for t in rows) < 2**31 and n * m.shape[0] * e < 2**31)


def mix_rows(m: Tensor, o: Tensor | Sequence[Tensor], acc: Tensor | None = None, impl: str = "native",
             bias: Tensor | None = None) -> Tensor:
    """``out[n, q] = acc[n, q] + Σ_p m[q, p] o[n, p] + bias[q]`` for ``m`` (Q, P), ``o`` (N, P, E),
    ``acc`` (N, Q, E) and ``bias`` (Q,) (added at every position; both optional).

    ``o`` may also be up to :data:`MAX_OPERANDS` tensors (N, P_i, E) whose rows, in order, make up
    the P rows: the Triton kernels then read each where it lies, so the caller needs no
    concatenation (the NB201 cell's conv/BN rows, skip row and pool row).  ``impl="triton"`` runs the
    kernels above where :func:`supported` allows, batched matmuls otherwise.
    """
    if impl == "triton" and supported(m, o, acc, bias):
        rows = [as_graph_input(t) for t in _rows(o)] + [None] * (MAX_OPERANDS - len(_rows(o)))
        b = as_graph_input(bias.to(rows[0].dtype)) if bias is not None else None
        return _mix(as_graph_input(m.to(rows[0].dtype)), *rows, acc, b)  # type: ignore[arg-type]
    return mix_rows_native(m, o, acc, bias)


def use_mixing_impl(model: nn.Module, impl: str) -> int:
    """Run the fused cells' weighted sums (``supports_mixing_impl``) with ``impl``; returns how many cells were set."""
    return set_kernel_impl(model, "mixing", impl)

"""Training-mode non-affine BatchNorm as Triton kernels (``runtime.batchnorm=triton``; ``auto`` on CUDA).

Why: with the conv and weighted-sum kernels in place, the largest items of the GAEA PC-DARTS search
step's H200 profile (2026-12-02, fifth session) were elementwise and reduction kernels, most of them
``function2`` BatchNorm: per BN about nine full passes over the tensor (a statistics reduction,
subtract and multiply forward; two reductions, a product and three elementwise passes backward) plus
about ten tiny kernels on the per-channel statistics.

Here each direction is three kernels and two full passes:

* forward: per (sample, channel) row the mean and the sum of squared deviations (one read; rows
  longer than a block are combined with Chan's formula), then per channel the exact combination of
  the rows (law of total variance, equal row sizes), then ``xhat = (x - mean) * invstd``; the running
  statistics take the batch mean and unbiased variance as ``F.batch_norm`` updates them;
* backward: per row the sums of ``g`` and ``g * xhat``, then per channel their means, then
  ``dx = invstd * (g - mean(g) - xhat * mean(g * xhat))``.

The output ``xhat`` is what the backward reads (as ``function2`` saves it).  fp32, NCHW-contiguous
inputs only; anything else falls back to ``function2``.  On CPU the kernels run only under Triton's
interpreter.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nas_cli.spaces.triton_support import available, pow2, tl, triton

if triton is not None:

    @triton.jit
    def _row_stats_kernel(x_ptr, mean_ptr, m2_ptr, L, BLOCK: tl.constexpr):
        """mean and Σ (x - mean)² of row r = (n, c) of an NCHW tensor (rows of L = H*W values)."""
        r = tl.program_id(0)
        base = x_ptr + r.to(tl.int64) * L
        offs = tl.arange(0, BLOCK)
        count = 0.0
        mean = 0.0
        m2 = 0.0
        for start in range(0, L, BLOCK):
            live = start + offs < L
            v = tl.load(base + start + offs, mask=live, other=0.0).to(tl.float32)
            k = tl.sum(live.to(tl.float32), axis=0)
            bmean = tl.sum(v, axis=0) / k
            bm2 = tl.sum(tl.where(live, (v - bmean) * (v - bmean), 0.0), axis=0)
            total = count + k
            delta = bmean - mean
            mean = mean + delta * (k / total)
            m2 = m2 + bm2 + delta * delta * (count * k / total)
            count = total
        tl.store(mean_ptr + r, mean)
        tl.store(m2_ptr + r, m2)

    @triton.jit
    def _combine_kernel(mean_i_ptr, m2_i_ptr, mean_ptr, var_ptr, invstd_ptr, N, C, L, eps, unbias,
                        BLOCK: tl.constexpr):
        """Per channel c: mean over the N rows, invstd from the biased variance (exact), and the
        unbiased variance (biased times ``unbias``), which the running estimate takes."""
        c = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        s = 0.0
        for start in range(0, N, BLOCK):
            live = start + offs < N
            s += tl.sum(tl.load(mean_i_ptr + (start + offs) * C + c, mask=live, other=0.0), axis=0)
        mean = s / N
        acc = 0.0
        for start in range(0, N, BLOCK):
            live = start + offs < N
            mi = tl.load(mean_i_ptr + (start + offs) * C + c, mask=live, other=0.0)
            m2 = tl.load(m2_i_ptr + (start + offs) * C + c, mask=live, other=0.0)
            acc += tl.sum(tl.where(live, m2 / L + (mi - mean) * (mi - mean), 0.0), axis=0)
        var = acc / N
        tl.store(mean_ptr + c, mean)
        tl.store(var_ptr + c, var * unbias)
        tl.store(invstd_ptr + c, 1.0 / tl.sqrt(var + eps))

    @triton.jit
    def _normalize_kernel(x_ptr, mean_ptr, invstd_ptr, y_ptr, C, L, BLOCK: tl.constexpr):
        r = tl.program_id(0)
        c = r % C
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = offs < L
        at = r.to(tl.int64) * L + offs
        v = tl.load(x_ptr + at, mask=live, other=0.0).to(tl.float32)
        y = (v - tl.load(mean_ptr + c)) * tl.load(invstd_ptr + c)
        tl.store(y_ptr + at, y.to(y_ptr.dtype.element_ty), mask=live)

    @triton.jit
    def _grad_sums_kernel(g_ptr, xhat_ptr, sg_ptr, sgx_ptr, L, BLOCK: tl.constexpr):
        """Σ g and Σ g * xhat over row r."""
        r = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        sg = tl.zeros([BLOCK], dtype=tl.float32)
        sgx = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, L, BLOCK):
            live = start + offs < L
            at = r.to(tl.int64) * L + start + offs
            g = tl.load(g_ptr + at, mask=live, other=0.0).to(tl.float32)
            sg += g
            sgx += g * tl.load(xhat_ptr + at, mask=live, other=0.0).to(tl.float32)
        tl.store(sg_ptr + r, tl.sum(sg, axis=0))
        tl.store(sgx_ptr + r, tl.sum(sgx, axis=0))

    @triton.jit
    def _grad_means_kernel(sg_ptr, sgx_ptr, mg_ptr, mgx_ptr, N, C, count, BLOCK: tl.constexpr):
        c = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        a = 0.0
        b = 0.0
        for start in range(0, N, BLOCK):
            live = start + offs < N
            a += tl.sum(tl.load(sg_ptr + (start + offs) * C + c, mask=live, other=0.0), axis=0)
            b += tl.sum(tl.load(sgx_ptr + (start + offs) * C + c, mask=live, other=0.0), axis=0)
        tl.store(mg_ptr + c, a / count)
        tl.store(mgx_ptr + c, b / count)

    @triton.jit
    def _input_grad_kernel(g_ptr, xhat_ptr, invstd_ptr, mg_ptr, mgx_ptr, dx_ptr, C, L, BLOCK: tl.constexpr):
        r = tl.program_id(0)
        c = r % C
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = offs < L
        at = r.to(tl.int64) * L + offs
        g = tl.load(g_ptr + at, mask=live, other=0.0).to(tl.float32)
        xh = tl.load(xhat_ptr + at, mask=live, other=0.0).to(tl.float32)
        dx = (g - tl.load(mg_ptr + c) - xh * tl.load(mgx_ptr + c)) * tl.load(invstd_ptr + c)
        tl.store(dx_ptr + at, dx.to(dx_ptr.dtype.element_ty), mask=live)


#: the largest block a program reduces at once; longer rows and larger batches loop over blocks
_MAX_BLOCK = 1024


def _block(length: int) -> int:
    """Block size of a loop over ``length`` values (a row, or the samples of a channel)."""
    return max(16, min(_MAX_BLOCK, pow2(length)))


@torch.library.custom_op("nas_cli::batch_norm_train", mutates_args=())
def _bn(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(xhat, invstd, batch mean, unbiased batch variance) of training-mode non-affine BN (the
    unbiased variance is what the running estimate takes, as in ``F.batch_norm``)."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    mean_i = torch.empty((n, c), device=x.device, dtype=torch.float32)
    m2_i = torch.empty_like(mean_i)
    _row_stats_kernel[(n * c,)](x, mean_i, m2_i, length, BLOCK=_block(length))
    mean = torch.empty(c, device=x.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    invstd = torch.empty_like(mean)
    count = n * length
    _combine_kernel[(c,)](mean_i, m2_i, mean, var, invstd, n, c, length, eps, count / max(count - 1, 1),
                          BLOCK=_block(n))
    y = torch.empty_like(x)
    block = _block(length)
    _normalize_kernel[(n * c, (length + block - 1) // block)](x, mean, invstd, y, c, length, BLOCK=block)
    return y, invstd, mean, var


@_bn.register_fake
def _bn_fake(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    stat = x.new_empty((x.shape[1],), dtype=torch.float32)
    return torch.empty_like(x), stat, torch.empty_like(stat), torch.empty_like(stat)


@torch.library.custom_op("nas_cli::batch_norm_train_backward", mutates_args=())
def _bn_backward(g: Tensor, xhat: Tensor, invstd: Tensor) -> Tensor:
    g = g.contiguous()
    n, c = xhat.shape[:2]
    length = xhat.numel() // (n * c)
    sg = torch.empty((n, c), device=g.device, dtype=torch.float32)
    sgx = torch.empty_like(sg)
    block = _block(length)
    _grad_sums_kernel[(n * c,)](g, xhat, sg, sgx, length, BLOCK=block)
    mg = torch.empty(c, device=g.device, dtype=torch.float32)
    mgx = torch.empty_like(mg)
    _grad_means_kernel[(c,)](sg, sgx, mg, mgx, n, c, float(n * length), BLOCK=_block(n))
    dx = torch.empty_like(xhat)
    _input_grad_kernel[(n * c, (length + block - 1) // block)](g, xhat, invstd, mg, mgx, dx, c, length, BLOCK=block)
    return dx


@_bn_backward.register_fake
def _bn_backward_fake(g: Tensor, xhat: Tensor, invstd: Tensor) -> Tensor:
    return torch.empty_like(xhat)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    y, invstd, mean, var = output
    ctx.mark_non_differentiable(invstd, mean, var)
    # no zero-filled gradients for the three statistics (one fill kernel each per BN and backward)
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(y, invstd)


def _backward(ctx: Any, g: Tensor | None, *_stats: Any) -> tuple[Tensor | None, ...]:
    if g is None:  # grads are not materialised: the output took no gradient
        return None, None
    y, invstd = ctx.saved_tensors
    return _bn_backward(g, y, invstd), None


_bn.register_autograd(_backward, setup_context=_setup)


def supported(x: Tensor) -> bool:
    """Whether the kernels take ``x`` (fp32, NCHW-contiguous, on CUDA or under the interpreter)."""
    return (x.dim() == 4 and x.is_contiguous() and x.dtype == torch.float32
            and x.numel() > 0 and x.numel() < 2**31 and available(x.device))


def batch_norm_triton(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float,
                      fallback: Any) -> Tensor:
    """Training-mode non-affine BN through the kernels; ``fallback(x, rm, rv, momentum, eps)`` for
    inputs they do not take."""
    if not supported(x):
        return fallback(x, rm, rv, momentum, eps)
    y, _, mean, var = _bn(x, float(eps))
    if rm is not None and rv is not None:  # as F.batch_norm: the unbiased variance enters the estimate
        with torch.no_grad():  # one multi-tensor kernel for both estimates
            torch._foreach_lerp_([rm, rv], [mean.to(rm.dtype), var.to(rv.dtype)], momentum)
    return y

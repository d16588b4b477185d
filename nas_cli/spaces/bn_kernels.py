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
or channels_last inputs only; anything else falls back to ``function2``.  On CPU the kernels run only
under Triton's interpreter.

**channels_last input** (thirteenth session): the fused NB201 cell runs its merged conv on NHWC tensors,
so that cuDNN's NHWC conv kernels need no NCHW<->NHWC transposes around them (about 600 transpose
kernels per GDAS step).  The BN behind the conv takes its NHWC output and hands the weighted sum an
NCHW-contiguous ``xhat``: the statistics kernel reads (pixels x channels) tiles, the normalise kernel
reads NHWC and writes NCHW, and the backward's input-gradient kernel reads the NCHW gradient and
``xhat`` and writes the NHWC ``dx`` the conv's backward takes.  Each layout change happens inside a
pass the BN makes anyway, as a tile transposed on chip.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nas_cli.spaces.batchnorm import update_running_estimates  # (batchnorm imports this module lazily)
from nas_cli.spaces.triton_support import available, nhwc_only, pow2, sm_count, tl, triton

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

    # ---- channels_last input: the same statistics, the layout changed inside the passes
    @triton.jit
    def _row_stats_nhwc_kernel(x_ptr, mean_ptr, m2_ptr, C, L, BP: tl.constexpr, BC: tl.constexpr):
        """Per (row n, channel c) of an NHWC tensor seen as rows of L pixels (a sample, or an equal part of
        one): the mean and Σ (x - mean)² over the row's pixels, as ``_row_stats_kernel`` (blocks of BP
        pixels x BC channels combined with Chan's formula)."""
        n = tl.program_id(0)
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        c_ok = c < C
        base = x_ptr + n.to(tl.int64) * L * C
        p = tl.arange(0, BP)
        count = 0.0
        mean = tl.zeros([BC], dtype=tl.float32)
        m2 = tl.zeros([BC], dtype=tl.float32)
        for start in range(0, L, BP):
            live = start + p < L
            ok = live[:, None] & c_ok[None, :]
            v = tl.load(base + (start + p)[:, None] * C + c[None, :], mask=ok, other=0.0).to(tl.float32)
            k = tl.sum(live.to(tl.float32), axis=0)
            bmean = tl.sum(v, axis=0) / k
            d = tl.where(ok, v - bmean[None, :], 0.0)
            bm2 = tl.sum(d * d, axis=0)
            total = count + k
            delta = bmean - mean
            mean = mean + delta * (k / total)
            m2 = m2 + bm2 + delta * delta * (count * k / total)
            count = total
        tl.store(mean_ptr + n * C + c, mean, mask=c_ok)
        tl.store(m2_ptr + n * C + c, m2, mask=c_ok)

    @triton.jit
    def _nhwc_tile(C, L, BP: tl.constexpr, BC: tl.constexpr):
        """This program's tile of BP pixels x BC channels of sample program_id(0): (pixels, channels,
        channels in range, tile values in range, the sample's offset, the same in NCHW and NHWC)."""
        p = tl.program_id(1) * BP + tl.arange(0, BP)
        c = tl.program_id(2) * BC + tl.arange(0, BC)
        c_ok = c < C
        ok = (p < L)[:, None] & c_ok[None, :]
        return p, c, c_ok, ok, tl.program_id(0).to(tl.int64) * L * C

    @triton.jit
    def _normalize_nhwc_kernel(x_ptr, mean_ptr, invstd_ptr, y_ptr, C, L, BP: tl.constexpr, BC: tl.constexpr):
        """y (NCHW) = (x (NHWC) - mean) * invstd over a tile of BP pixels x BC channels of one sample."""
        p, c, c_ok, ok, base = _nhwc_tile(C, L, BP, BC)
        v = tl.load(x_ptr + base + p[:, None] * C + c[None, :], mask=ok, other=0.0).to(tl.float32)
        mean = tl.load(mean_ptr + c, mask=c_ok, other=0.0)
        invstd = tl.load(invstd_ptr + c, mask=c_ok, other=0.0)
        y = (v - mean[None, :]) * invstd[None, :]
        tl.store(y_ptr + base + c[None, :] * L + p[:, None], y.to(y_ptr.dtype.element_ty), mask=ok)

    @triton.jit
    def _input_grad_nhwc_kernel(g_ptr, xhat_ptr, invstd_ptr, mg_ptr, mgx_ptr, dx_ptr, C, L, BP: tl.constexpr,
                                BC: tl.constexpr):
        """dx (NHWC) from g and xhat (NCHW), as ``_input_grad_kernel``, over a tile of BP pixels x BC channels."""
        p, c, c_ok, ok, base = _nhwc_tile(C, L, BP, BC)
        at = base + c[None, :] * L + p[:, None]
        g = tl.load(g_ptr + at, mask=ok, other=0.0).to(tl.float32)
        xh = tl.load(xhat_ptr + at, mask=ok, other=0.0).to(tl.float32)
        mg = tl.load(mg_ptr + c, mask=c_ok, other=0.0)
        mgx = tl.load(mgx_ptr + c, mask=c_ok, other=0.0)
        invstd = tl.load(invstd_ptr + c, mask=c_ok, other=0.0)
        dx = (g - mg[None, :] - xh * mgx[None, :]) * invstd[None, :]
        tl.store(dx_ptr + base + p[:, None] * C + c[None, :], dx.to(dx_ptr.dtype.element_ty), mask=ok)


#: the largest block a program reduces at once; longer rows and larger batches loop over blocks
_MAX_BLOCK = 1024


def _block(length: int) -> int:
    """Block size of a loop over ``length`` values (a row, or the samples of a channel)."""
    return max(16, min(_MAX_BLOCK, pow2(length)))


#: pixels x channels of the channels_last kernels' tiles (about 2048 values)
_NHWC_TILE = 2048


def _nhwc_blocks(c: int, length: int) -> tuple[int, int]:
    """(BP, BC): pixels and channels per tile of the channels_last kernels."""
    bc = max(16, min(64, pow2(c)))
    return max(16, min(pow2(length), _NHWC_TILE // bc)), bc


#: split each sample's pixels over several programs in the channels_last statistics kernel (see
#: :func:`_pixel_splits`); off, one program per (sample, channel block) loops over all of them
#: (set per run with ``runtime.kernel_switches.split_nhwc_stats``: nas_cli/runtime/switches.py)
SPLIT_NHWC_STATS = True


def _pixel_splits(x: Tensor, n: int, c_blocks: int, length: int, bp: int) -> int:
    """Equal parts of each sample's ``length`` pixels, one program each, for the channels_last statistics:
    with one program per (sample, channel block), an NB201 stage-1 BN (N=64, 96 channels, 32x32) is 128
    programs looping over 1,024 pixels each, fewer programs than the H200 has SMs.  A power of two that
    divides ``length`` (the parts must be equal for the exact combination), at most ``length // bp``
    (a part is at least one tile), aiming at about 8 programs per SM."""
    if not SPLIT_NHWC_STATS:
        return 1
    want = max(1, 8 * sm_count(x) // max(1, n * c_blocks))
    splits = 1
    while splits * 2 <= min(want, length // bp) and length % (splits * 2) == 0:
        splits *= 2
    return splits


def _stats(x: Tensor, eps: float, nhwc: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(invstd, batch mean, unbiased batch variance) of x's channels: per (sample, channel) rows (or
    equal parts of them), then their exact combination per channel."""
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    count = n * length
    rows, per = n, length
    if nhwc:
        bp, bc = _nhwc_blocks(c, length)
        c_blocks = (c + bc - 1) // bc
        splits = _pixel_splits(x, n, c_blocks, length, bp)
        # part s of sample i is the contiguous NHWC block of row i * splits + s: the kernel sees rows of per pixels
        rows, per = n * splits, length // splits
        mean_i = torch.empty((rows, c), device=x.device, dtype=torch.float32)
        m2_i = torch.empty_like(mean_i)
        _row_stats_nhwc_kernel[(rows, c_blocks)](x, mean_i, m2_i, c, per, BP=bp, BC=bc)
    else:
        mean_i = torch.empty((n, c), device=x.device, dtype=torch.float32)
        m2_i = torch.empty_like(mean_i)
        _row_stats_kernel[(n * c,)](x, mean_i, m2_i, length, BLOCK=_block(length))
    mean = torch.empty(c, device=x.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    invstd = torch.empty_like(mean)
    _combine_kernel[(c,)](mean_i, m2_i, mean, var, invstd, rows, c, per, eps, count / max(count - 1, 1),
                          BLOCK=_block(rows))
    return invstd, mean, var


def _grad_means(g: Tensor, xhat: Tensor) -> tuple[Tensor, Tensor]:
    """Per channel the means of g and g * xhat (both NCHW-contiguous)."""
    n, c = xhat.shape[:2]
    length = xhat.numel() // (n * c)
    sg = torch.empty((n, c), device=g.device, dtype=torch.float32)
    sgx = torch.empty_like(sg)
    _grad_sums_kernel[(n * c,)](g, xhat, sg, sgx, length, BLOCK=_block(length))
    mg = torch.empty(c, device=g.device, dtype=torch.float32)
    mgx = torch.empty_like(mg)
    _grad_means_kernel[(c,)](sg, sgx, mg, mgx, n, c, float(n * length), BLOCK=_block(n))
    return mg, mgx


@torch.library.custom_op("nas_cli::batch_norm_train", mutates_args=())
def _bn(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(xhat, invstd, batch mean, unbiased batch variance) of training-mode non-affine BN (the
    unbiased variance is what the running estimate takes, as in ``F.batch_norm``)."""
    invstd, mean, var = _stats(x, eps, nhwc=False)
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
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
    mg, mgx = _grad_means(g, xhat)
    n, c = xhat.shape[:2]
    length = xhat.numel() // (n * c)
    block = _block(length)
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


def _nhwc_grid(x: Tensor) -> tuple[tuple[int, int, int], dict[str, int]]:
    n, c = x.shape[:2]
    length = x.numel() // (n * c)
    bp, bc = _nhwc_blocks(c, length)
    return (n, (length + bp - 1) // bp, (c + bc - 1) // bc), {"BP": bp, "BC": bc}


@torch.library.custom_op("nas_cli::batch_norm_train_nhwc", mutates_args=())
def _bn_nhwc(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """As ``batch_norm_train`` for a channels_last ``x``; ``xhat`` comes NCHW-contiguous."""
    invstd, mean, var = _stats(x, eps, nhwc=True)
    n, c = x.shape[:2]
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    grid, blocks = _nhwc_grid(x)
    _normalize_nhwc_kernel[grid](x, mean, invstd, y, c, x.numel() // (n * c), **blocks)
    return y, invstd, mean, var


@_bn_nhwc.register_fake
def _bn_nhwc_fake(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    stat = x.new_empty((x.shape[1],), dtype=torch.float32)
    return (torch.empty_like(x, memory_format=torch.contiguous_format), stat, torch.empty_like(stat),
            torch.empty_like(stat))


@torch.library.custom_op("nas_cli::batch_norm_train_nhwc_backward", mutates_args=())
def _bn_nhwc_backward(g: Tensor, xhat: Tensor, invstd: Tensor) -> Tensor:
    """x's gradient (channels_last) from the NCHW output gradient and ``xhat``."""
    g = g.contiguous()
    mg, mgx = _grad_means(g, xhat)
    n, c = xhat.shape[:2]
    dx = torch.empty_like(xhat, memory_format=torch.channels_last)
    grid, blocks = _nhwc_grid(xhat)
    _input_grad_nhwc_kernel[grid](g, xhat, invstd, mg, mgx, dx, c, xhat.numel() // (n * c), **blocks)
    return dx


@_bn_nhwc_backward.register_fake
def _bn_nhwc_backward_fake(g: Tensor, xhat: Tensor, invstd: Tensor) -> Tensor:
    return torch.empty_like(xhat, memory_format=torch.channels_last)


def _backward_nhwc(ctx: Any, g: Tensor | None, *_stats: Any) -> tuple[Tensor | None, ...]:
    if g is None:
        return None, None
    y, invstd = ctx.saved_tensors
    return _bn_nhwc_backward(g, y, invstd), None


_bn_nhwc.register_autograd(_backward_nhwc, setup_context=_setup)


def supported(x: Tensor) -> bool:
    """Whether the kernels take ``x`` (fp32, NCHW-contiguous or channels_last, on CUDA or under the
    interpreter)."""
    return (x.dim() == 4 and (x.is_contiguous() or nhwc_only(x)) and x.dtype == torch.float32
            and x.numel() > 0 and x.numel() < 2**31 and available(x.device))


def batch_norm_triton(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float,
                      fallback: Any, repeat: int = 1) -> Tensor:
    """Training-mode non-affine BN through the kernels; ``fallback(x, rm, rv, momentum, eps)`` for
    inputs they do not take.  The output is NCHW-contiguous, also for a channels_last ``x``.
    ``repeat``: the running estimates hold that many blocks of x's channels, each of which takes the
    batch statistics (``batchnorm.batch_norm_repeated``; the fallback is then never called)."""
    if not supported(x):
        return fallback(x, rm, rv, momentum, eps)
    # a 1x1-plane or one-channel x is NCHW-contiguous as well: the NCHW kernels
    y, _, mean, var = (_bn_nhwc if nhwc_only(x) else _bn)(x, float(eps))
    if rm is not None and rv is not None:  # as F.batch_norm: the unbiased variance enters the estimate
        update_running_estimates(rm, rv, mean, var, momentum, repeat)
    return y

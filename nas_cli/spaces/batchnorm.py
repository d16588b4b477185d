"""Training-mode BatchNorm for the search supernets: the same function, faster kernels.

The supernets' BatchNorms are non-affine and see few channels (PC-DARTS: C/K = 4..16) over large
N*H*W (256 x 32 x 32).  PyTorch's native CUDA kernels for non-affine BN parallelise over channels
-- a handful of thread blocks on a GPU with >100 SMs -- and dominate the profile of a PC-DARTS step
(about 60 % of its device time on an H100/H200).  The implementations here compute exactly the
same normalisation (biased batch variance for normalising, unbiased for the running estimate,
running statistics updated with ``momentum``), with kernels that parallelise over the whole tensor:

* ``native``   -- ``F.batch_norm`` (the reference);
* ``cudnn``    -- ``F.batch_norm`` with a constant unit scale and zero shift: mathematically the
  same non-affine BN, but eligible for cuDNN's kernels (PyTorch only dispatches affine BN to cuDNN);
* ``function`` -- a custom autograd function: one ``var_mean`` reduction forward, and the textbook
  backward ``dx = invstd * (g - mean(g) - xhat * mean(g * xhat))`` with two reductions;
* ``function2`` -- the same with every reduction split into a contiguous per-row stage and a tiny
  across-samples stage (law of total variance: exact);
* ``triton``   -- the ``function2`` math as Triton kernels, two full passes per direction
  (``spaces/bn_kernels.py``; fp32 NCHW-contiguous inputs, ``function2`` for others).

``runtime.batchnorm`` picks one (``auto``: ``triton`` for CUDA-graph-replayed steps where Triton is
installed -- the H200 GAEA PC-DARTS search step took 0.0950 s against 0.1127 s with ``function2``,
which had itself beaten ``function`` (0.210 s vs 0.226 s) and ``cudnn`` (0.402 s) --, ``function2``
there without Triton, ``native`` for eager steps, where every extra op costs host dispatch time, and
on CPU).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas_cli.errors import ConfigError

BNFn = Callable[[Tensor, "Tensor | None", "Tensor | None", float, float], Tensor]
_DIMS = (0, 2, 3)


def _native(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float) -> Tensor:
    return F.batch_norm(x, rm, rv, None, None, True, momentum, eps)


_UNIT: dict[tuple[int, torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}


def _unit(c: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    key = (c, device, dtype)
    if key not in _UNIT:
        _UNIT[key] = (torch.ones(c, device=device, dtype=dtype), torch.zeros(c, device=device, dtype=dtype))
    return _UNIT[key]


def _cudnn(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float) -> Tensor:
    w, b = _unit(x.shape[1], x.device, torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype)
    return F.batch_norm(x, rm, rv, w, b, True, momentum, eps)


def _channel_stats(x: Tensor, two_stage: bool) -> tuple[Tensor, Tensor]:
    """Per-channel biased variance and mean of an NCHW tensor, as (1, C, 1, 1) tensors.

    ``two_stage``: per (sample, channel) rows of H*W contiguous values first, then across samples
    with the law of total variance (equal group sizes, so it is exact).  A row reduction over
    contiguous memory runs at memory bandwidth, unlike one reduction over the strided dims (0, 2, 3)."""
    n, c = x.shape[:2]
    if not two_stage or not x.is_contiguous() or n == 1:
        return torch.var_mean(x, dim=_DIMS, correction=0, keepdim=True)
    var_i, mean_i = torch.var_mean(x.view(n, c, -1), dim=2, correction=0)
    mean = mean_i.mean(0)
    var = (var_i + (mean_i - mean).square()).mean(0)
    return var.view(1, c, 1, 1), mean.view(1, c, 1, 1)


def _channel_mean(x: Tensor, two_stage: bool) -> Tensor:
    n, c = x.shape[:2]
    if not two_stage or not x.is_contiguous():
        return x.mean(_DIMS, keepdim=True)
    return x.view(n, c, -1).mean(2).mean(0).view(1, c, 1, 1)


def _normalize(xf: Tensor, mean: Tensor, var: Tensor, eps: float, rm: Tensor | None, rv: Tensor | None,
               momentum: float, n: float | Tensor) -> tuple[Tensor, Tensor]:
    """``(xhat, invstd)`` from (1, C, 1, 1) batch statistics over ``n`` values per channel (a number,
    or a 0-dim device tensor, which avoids a host sync); updates the running estimates (unbiased
    variance) in place, as ``F.batch_norm`` does."""
    invstd = torch.rsqrt(var + eps)
    xhat = (xf - mean) * invstd
    if rm is not None and rv is not None:
        unbias = n / (n - 1).clamp_min(1) if isinstance(n, Tensor) else n / max(n - 1, 1)
        rm.lerp_(mean.view(-1).to(rm.dtype), momentum)
        rv.lerp_((var.view(-1) * unbias).to(rv.dtype), momentum)
    return xhat, invstd


def _input_grad(g: Tensor, xhat: Tensor, invstd: Tensor, mg: Tensor, mgx: Tensor) -> Tensor:
    """BN's input gradient ``invstd * (g - mean(g) - xhat * mean(g * xhat))`` from the two means."""
    return torch.addcmul(g - mg, xhat, mgx, value=-1.0) * invstd


class _BatchNormFn(torch.autograd.Function):
    """Non-affine training-mode BN with the closed-form backward; ``two_stage`` picks the reductions."""

    @staticmethod
    def forward(ctx, x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float,  # type: ignore[override]
                eps: float, two_stage: bool) -> Tensor:
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        var, mean = _channel_stats(xf, two_stage)
        xhat, invstd = _normalize(xf, mean, var, eps, rm, rv, momentum, x.numel() // x.shape[1])
        ctx.save_for_backward(xhat, invstd)
        ctx.two_stage = two_stage
        return xhat.to(x.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        xhat, invstd = ctx.saved_tensors
        gf = g.to(xhat.dtype)
        if ctx.two_stage:
            gf = gf.contiguous()
        mg = _channel_mean(gf, ctx.two_stage)
        mgx = _channel_mean(gf * xhat, ctx.two_stage)
        return _input_grad(gf, xhat, invstd, mg, mgx).to(g.dtype), None, None, None, None, None


def _function(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float) -> Tensor:
    return _BatchNormFn.apply(x, rm, rv, momentum, eps, False)


def _function2(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float) -> Tensor:
    return _BatchNormFn.apply(x, rm, rv, momentum, eps, True)


def _triton(x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float, eps: float) -> Tensor:
    from nas_cli.spaces.bn_kernels import batch_norm_triton  # lazy: Triton is optional

    return batch_norm_triton(x, rm, rv, momentum, eps, _function2)


BN_IMPLS: dict[str, BNFn] = {"native": _native, "cudnn": _cudnn, "function": _function, "function2": _function2,
                             "triton": _triton}


def batch_norm_repeated(x: Tensor, rm: Tensor, rv: Tensor, momentum: float, eps: float, impl: str,
                        repeat: int) -> Tensor:
    """Training-mode non-affine BN of ``x`` (C channels) whose running estimates ``rm``, ``rv`` hold
    ``repeat`` blocks of C channels, every block taking this batch's statistics.

    Why: the masked one-hot NB201 forward runs each edge's *selected* conv op only, so one output
    channel block stands for either of the edge's two conv ops, whose statistics are separate blocks
    of the buffers (``nb201_fused.SELECT_CONVS``).  Every block takes the update here; the caller
    keeps it only on the selected op's block (``darts_fused.HeldBackStats``).  The Triton kernels
    update both blocks in the kernel they update one with; other ``impl`` s normalise without
    running estimates and the update follows from ``torch.var_mean`` (unbiased, as ``F.batch_norm``)."""
    if impl == "triton":
        from nas_cli.spaces import bn_kernels  # lazy: Triton is optional

        if bn_kernels.supported(x):
            return bn_kernels.batch_norm_triton(x, rm, rv, momentum, eps, None, repeat)
    y = BN_IMPLS[impl](x, None, None, momentum, eps)
    var, mean = torch.var_mean(x.detach().float(), dim=_DIMS, correction=1)
    update_running_estimates(rm, rv, mean, var, momentum, repeat)
    return y


def update_running_estimates(rm: Tensor, rv: Tensor, mean: Tensor, var: Tensor, momentum: float,
                             repeat: int = 1) -> None:
    """``rm``/``rv`` take the batch ``mean`` and unbiased ``var`` with ``momentum`` (as ``F.batch_norm``),
    in one multi-tensor kernel; with ``repeat`` they hold that many blocks of the batch's channels and
    every block takes them (:func:`batch_norm_repeated`)."""
    with torch.no_grad():
        if repeat == 1:
            torch._foreach_lerp_([rm, rv], [mean.to(rm.dtype), var.to(rv.dtype)], momentum)
        else:
            torch._foreach_lerp_([rm.view(repeat, -1), rv.view(repeat, -1)],
                                 [mean.to(rm.dtype).expand(repeat, -1), var.to(rv.dtype).expand(repeat, -1)],
                                 momentum)


# ------------------------------------------------------------------ data-parallel (torchrun)
def _all_reduce_sum(t: Tensor) -> Tensor:
    import torch.distributed as tdist

    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def _all_gather(t: Tensor) -> Tensor:
    """(world_size, *t.shape): every rank's ``t``, in rank order."""
    import torch.distributed as tdist

    parts = [torch.empty_like(t) for _ in range(tdist.get_world_size())]
    tdist.all_gather(parts, t.contiguous())
    return torch.stack(parts)


class _SyncBatchNormFn(torch.autograd.Function):
    """Training-mode BN over the *global* batch of all ranks: the same function one process computes.

    Forward: every rank reduces its shard to (count, per-channel mean, per-channel biased variance);
    one all-gather of those 2C+1 numbers gives each rank all shards' statistics, combined exactly by
    the parallel-variance formula ``var = Σ_r n_r (var_r + (mean_r - mean)²) / n`` (within-shard
    plus between-shard variance; no cancellation, any shard sizes, empty shards included).
    Backward: with ``g`` the gradient of this rank's loss, the global means of ``g`` and
    ``g * xhat`` (one all-reduce of 2C numbers) give ``dx = invstd * (g - mean(g) - xhat * mean(g * xhat))``.
    That is ``world_size`` times the gradient of the global loss (the mean of the ranks' losses), so
    once the ranks average their parameter gradients -- as the search and DDP do -- every gradient
    equals the one-process value.  The global count stays a device tensor: no host synchronisation
    per BatchNorm (a supernet forward has hundreds).
    """

    @staticmethod
    def forward(ctx, x: Tensor, rm: Tensor | None, rv: Tensor | None, momentum: float,  # type: ignore[override]
                eps: float) -> Tensor:
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        c = x.shape[1]
        n_local = x.numel() // c
        if n_local:
            var_l, mean_l = torch.var_mean(xf, dim=_DIMS, correction=0)
        else:
            var_l = mean_l = xf.new_zeros(c)
        count = torch.full((1,), float(n_local), dtype=xf.dtype, device=x.device)
        shards = _all_gather(torch.cat([count, mean_l, var_l]))  # (world, 1 + 2C)
        counts, means, variances = shards[:, :1], shards[:, 1 : 1 + c], shards[:, 1 + c :]
        n = counts.sum()  # stays on the device: no host sync per BatchNorm
        mean = (counts * means).sum(0) / n
        var = (counts * (variances + (means - mean).square())).sum(0) / n
        xhat, invstd = _normalize(xf, mean.view(1, c, 1, 1), var.view(1, c, 1, 1), eps, rm, rv, momentum, n)
        ctx.save_for_backward(xhat, invstd)
        ctx.n = n
        return xhat.to(x.dtype)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        xhat, invstd = ctx.saved_tensors
        gf = g.to(xhat.dtype)
        c = gf.shape[1]
        sums = torch.cat([gf.sum(_DIMS), (gf * xhat).sum(_DIMS)]) if gf.numel() else gf.new_zeros(2 * c)
        sums = _all_reduce_sum(sums) / ctx.n
        mg, mgx = sums[:c].view(1, c, 1, 1), sums[c:].view(1, c, 1, 1)
        return _input_grad(gf, xhat, invstd, mg, mgx).to(g.dtype), None, None, None, None


def sync_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, momentum: float,
                    eps: float, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """Training-mode BatchNorm2d with statistics over every rank's shard (see :class:`_SyncBatchNormFn`)."""
    y = _SyncBatchNormFn.apply(x, running_mean, running_var, momentum, eps)
    if weight is not None:
        c = x.shape[1]
        y = torch.addcmul(bias.view(1, c, 1, 1).to(y.dtype), y, weight.view(1, c, 1, 1).to(y.dtype)) \
            if bias is not None else y * weight.view(1, c, 1, 1).to(y.dtype)
    return y


def resolve_impl(name: str, device: torch.device, replayed: bool = True) -> str:
    """``auto``: ``triton`` (``function2`` without Triton) for graph-replayed CUDA steps (GPU-bound:
    fewer, faster kernels); ``native`` for eager steps (host-bound: one dispatch per BN instead of about six -- the
    discrete NB201 GDAS forward+backward dispatches 3317 ops with function2, 1577 with native)."""
    from nas_cli.spaces.triton_support import available

    name = str(name).lower()
    if name == "auto":
        if device.type != "cuda" or not replayed:
            return "native"
        return "triton" if available(device) else "function2"
    if name not in BN_IMPLS:
        raise ConfigError(f"runtime.batchnorm must be auto or one of {', '.join(BN_IMPLS)}, got '{name}'")
    if name == "triton":
        if not available(device):
            raise ConfigError(f"runtime.batchnorm=triton needs Triton and a CUDA device (here: {device.type}); "
                              "use runtime.batchnorm=auto")
    return name


def batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, training: bool,
               momentum: float, eps: float, impl: str = "native") -> Tensor:
    """Non-affine BatchNorm2d with the selected training-mode implementation (eval mode: native)."""
    if not training:
        return F.batch_norm(x, running_mean, running_var, None, None, False, momentum, eps)
    return BN_IMPLS[impl](x, running_mean, running_var, momentum, eps)


class SearchBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d(affine=False)`` whose training-mode kernels are chosen by ``impl``.

    Same parameters, buffers and state_dict as ``nn.BatchNorm2d``; only the kernels differ.
    """

    impl: str = "native"
    #: training-mode statistics over all data-parallel ranks (:func:`use_sync_batchnorm`)
    sync: bool = False

    def forward(self, x: Tensor) -> Tensor:
        if self.sync and self.training and self.momentum is not None:
            if self.track_running_stats and self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
            rm = self.running_mean if self.track_running_stats else None
            rv = self.running_var if self.track_running_stats else None
            return sync_batch_norm(x, rm, rv, float(self.momentum), self.eps, self.weight, self.bias)
        if self.affine or not self.training or self.impl == "native" or self.momentum is None:
            return super().forward(x)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        rm = self.running_mean if self.track_running_stats else None
        rv = self.running_var if self.track_running_stats else None
        return BN_IMPLS[self.impl](x, rm, rv, float(self.momentum), self.eps)


def _switchable_bns(model: nn.Module, affine: bool) -> list[nn.Module]:
    """Every ``BatchNorm2d`` of ``model`` (only the non-affine ones unless ``affine``), switched in
    place to :class:`SearchBatchNorm2d` (same parameters, buffers and state_dict), and every fused
    stacked BN (``supports_bn_impl``): the modules whose kernels ``impl``/``sync`` choose."""
    out: list[nn.Module] = []
    for m in model.modules():
        if type(m) in (nn.BatchNorm2d, SearchBatchNorm2d) and (affine or not m.affine):
            m.__class__ = SearchBatchNorm2d
            out.append(m)
        elif getattr(m, "supports_bn_impl", False):  # e.g. the fused cell's stacked BNs
            out.append(m)
    return out


def use_batchnorm_impl(model: nn.Module, impl: str) -> int:
    """Switch every non-affine ``BatchNorm2d`` of ``model`` to ``impl`` in place; returns how many."""
    bns = _switchable_bns(model, affine=False)
    for m in bns:
        m.impl = impl  # type: ignore[attr-defined]
    return len(bns)


def use_sync_batchnorm(model: nn.Module) -> int:
    """Make every ``BatchNorm2d`` of ``model`` (affine or not) and every fused stacked BN normalise
    training batches with statistics over all data-parallel ranks; returns how many.

    Same parameters, buffers and state_dict; needs an initialised default process group.  Without
    it each rank normalises its shard alone (plain DDP), which is not the one-process math.
    """
    if any(type(m) in (nn.BatchNorm2d, SearchBatchNorm2d) and m.momentum is None for m in model.modules()):
        raise ConfigError("runtime.sync_bn needs BatchNorms with a fixed momentum")
    bns = _switchable_bns(model, affine=True)
    for m in bns:
        m.sync = True  # type: ignore[attr-defined]
    return len(bns)

"""GPU-resident input pipeline: whole dataset on the device, augmentation as tensor ops.

Why not ``torch.utils.data.DataLoader``: a NAS supernet step on CIFAR-sized
images is short enough that per-sample PIL transforms in worker processes, the
host->device copy and Python per-batch overhead dominate.  Here the uint8
dataset (150 MB for CIFAR-10) lives on the device once; a batch is an
``index_select`` plus a handful of vectorised kernels, with **static shapes**
and no host synchronisation, so steps can later be captured in CUDA graphs.

All randomness comes from an explicit ``torch.Generator`` on the data's device,
so a run is reproducible and -- via :meth:`BatchStream.state_dict` -- resumable
mid-epoch with identical batches.  The random streams of CPU and CUDA
generators differ, so CPU and CUDA runs are equivalent, not bit-identical.

Transform semantics follow training.md section 3 (and torchvision): random crop
with zero padding applied to the *uint8* image (black padding), horizontal flip
with p=0.5, ``/255``, per-channel normalisation, then Cutout, which zeroes
*normalised* values.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F

from nas_cli.errors import ConfigError

ChannelStats = torch.Tensor | Sequence[float]


def _channel_tensor(v: ChannelStats, device: torch.device) -> torch.Tensor:
    """Per-channel constants as a float32 (1, C, 1, 1) tensor that broadcasts over NCHW."""
    t = torch.as_tensor(v, dtype=torch.float32, device=device)
    return t.reshape(1, -1, 1, 1)


class DeviceData:
    """A split's images (uint8 NCHW) and labels (int64) resident on one device.

    ``mean``/``std`` are stored as (1, C, 1, 1) float32 tensors on the same
    device so normalisation never touches the host.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"x must be uint8 NCHW, got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            raise ValueError(f"y must be int64 of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        if not (x.device == y.device == mean.device == std.device):
            raise ValueError("x, y, mean and std must be on the same device")
        self.x = x
        self.y = y
        self.mean = mean
        self.std = std

    @classmethod
    def from_arrays(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        mean: ChannelStats,
        std: ChannelStats,
        device: torch.device | str,
    ) -> "DeviceData":
        """Copy CPU arrays to ``device`` once (contiguous, so gathers are coalesced)."""
        device = torch.device(device)
        return cls(
            x.to(device).contiguous(),
            y.to(device=device, dtype=torch.int64).contiguous(),
            _channel_tensor(mean, device),
            _channel_tensor(std, device),
        )

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return int(self.x.shape[0])


def normalize(x_u8: torch.Tensor, mean: ChannelStats, std: ChannelStats) -> torch.Tensor:
    """Test transform (``ToTensor -> Normalize``): uint8 NCHW -> float32 ``(x/255 - mean)/std``."""
    m = _channel_tensor(mean, x_u8.device)
    s = _channel_tensor(std, x_u8.device)
    return x_u8.to(torch.float32).div_(255.0).sub_(m).div_(s)


def augment(
    x_u8: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    cutout: int,
    mean: ChannelStats,
    std: ChannelStats,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training transform for a uint8 NCHW batch, vectorised over the batch.

    Order (training.md section 3): RandomCrop(H, padding, zero fill) ->
    RandomHorizontalFlip(0.5) -> ToTensor -> Normalize -> Cutout(``cutout``).

    Crop and flip are fused into one ``gather`` over the zero-padded batch: each
    output pixel's flat source index is ``(oy + i) * Wp + ox + j'`` with per-sample
    offsets ``oy, ox`` and ``j' = W-1-j`` for flipped samples.  Random draws, in
    this fixed order, all from ``generator``: crop offsets (N, 2), flip bits (N, 1),
    cutout centre rows (N, 1) then columns (N, 1) -- each only if that transform is enabled.
    """
    n, c, h, w = x_u8.shape
    dev = x_u8.device
    if padding < 0 or cutout < 0:
        raise ValueError(f"padding and cutout must be >= 0, got {padding}, {cutout}")
    if padding > 0 or flip:
        hp, wp = h + 2 * padding, w + 2 * padding
        if padding > 0:
            offsets = torch.randint(0, 2 * padding + 1, (n, 2), device=dev, generator=generator)
            oy, ox = offsets[:, 0:1], offsets[:, 1:2]  # (N, 1)
            src = F.pad(x_u8, (padding, padding, padding, padding))  # zeros = black pixels
        else:
            oy = ox = torch.zeros((n, 1), dtype=torch.int64, device=dev)
            src = x_u8
        rows = oy + torch.arange(h, device=dev)  # (N, H)
        cols = torch.arange(w, device=dev).expand(n, w)  # (N, W)
        if flip:
            flipped = torch.randint(0, 2, (n, 1), device=dev, generator=generator).bool()
            cols = torch.where(flipped, (w - 1) - cols, cols)
        cols = ox + cols
        flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w)
        x_u8 = torch.gather(src.reshape(n, c, hp * wp), 2, flat.expand(n, c, h * w)).reshape(n, c, h, w)
    out = normalize(x_u8, mean, std)
    if cutout > 0:
        half = cutout // 2  # reference Cutout: rows [y - L//2, y + L//2) clipped to the image
        cy = torch.randint(0, h, (n, 1), device=dev, generator=generator)  # uniform over rows
        cx = torch.randint(0, w, (n, 1), device=dev, generator=generator)  # and columns
        r = torch.arange(h, device=dev)
        q = torch.arange(w, device=dev)
        in_rows = (r >= cy - half) & (r < cy + half)  # (N, H)
        in_cols = (q >= cx - half) & (q < cx + half)  # (N, W)
        mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (N, 1, H, W)
        out = out.masked_fill_(mask, 0.0)
    return out


class BatchStream:
    """Fixed-size batches from a subset of a :class:`DeviceData`, on its device.

    Two ways to draw, matching the two samplers NAS objectives need:

    * :meth:`epoch` -- one shuffled pass without replacement (weights stream);
      every index appears exactly once; the final partial batch is kept unless
      ``drop_last`` (keep ``drop_last=True`` where static shapes matter).
    * :meth:`sample` -- one fresh random batch per call (architecture stream):
      distinct indices within the batch, independent across calls, like taking
      the first batch of a newly shuffled loader every step.

    Both consume the same generator, so any interleaving is reproducible.
    An epoch stays open until fully consumed; calling :meth:`epoch` again (or
    after :meth:`load_state_dict`) continues it, which is what makes mid-epoch
    resumption exact.  :meth:`reset` abandons an open epoch.
    """

    def __init__(
        self,
        data: DeviceData,
        indices: torch.Tensor | None,
        batch_size: int,
        *,
        augment: bool = True,
        padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        drop_last: bool = False,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        dev = data.device
        if indices is None:
            indices = torch.arange(len(data), device=dev)
        indices = indices.to(device=dev, dtype=torch.int64).reshape(-1)
        if indices.numel() == 0:
            raise ConfigError("cannot draw batches from an empty split")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if drop_last and batch_size > indices.numel():
            raise ConfigError(
                f"batch_size {batch_size} exceeds the {indices.numel()} samples of the split "
                "(with drop_last there would be no batch at all)"
            )
        if generator is None:
            generator = torch.Generator(device=dev)
            generator.manual_seed(int(seed))
        elif generator.device.type != dev.type:
            raise ValueError(f"generator is on {generator.device} but the data is on {dev}")
        self.data = data
        self.indices = indices
        self.batch_size = int(batch_size)
        self.augment = bool(augment)
        self.padding = int(padding)
        self.flip = bool(flip)
        self.cutout = int(cutout)
        self.drop_last = bool(drop_last)
        self.shuffle = bool(shuffle)
        self.generator = generator
        self._order: torch.Tensor | None = None  # positions into ``indices`` for the open epoch
        self._cursor = 0  # batches of the open epoch already handed out

    @property
    def num_samples(self) -> int:
        return int(self.indices.numel())

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def _batch(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices.index_select(0, positions)
        x = self.data.x.index_select(0, rows)
        y = self.data.y.index_select(0, rows)
        if self.augment:
            xf = augment(
                x,
                padding=self.padding,
                flip=self.flip,
                cutout=self.cutout,
                mean=self.data.mean,
                std=self.data.std,
                generator=self.generator,
            )
        else:
            xf = normalize(x, self.data.mean, self.data.std)
        return xf, y

    def forever(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches across epoch boundaries, as consecutive loop epochs draw them (benchmarks, tests)."""
        while True:
            yield from self.epoch()

    def epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(x_float, y)`` batches for the rest of the current epoch."""
        if self._order is None:
            n = self.num_samples
            self._order = (
                torch.randperm(n, device=self.data.device, generator=self.generator)
                if self.shuffle
                else torch.arange(n, device=self.data.device)
            )
            self._cursor = 0
        b = self.batch_size
        while self._cursor < len(self):
            k = self._cursor
            batch = self._batch(self._order[k * b : (k + 1) * b])
            self._cursor = k + 1  # count it before handing it out: a checkpoint now resumes at k+1
            if self._cursor == len(self):
                self._order = None
            yield batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch()

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One random batch (distinct indices), independent of previous calls."""
        n = self.num_samples
        if self.batch_size > n:
            raise ConfigError(f"batch_size {self.batch_size} exceeds the {n} samples of the split")
        perm = torch.randperm(n, device=self.data.device, generator=self.generator)
        return self._batch(perm[: self.batch_size])

    def reset(self) -> None:
        """Abandon an open epoch; the next :meth:`epoch` starts a fresh shuffle."""
        self._order = None
        self._cursor = 0

    def state_dict(self) -> dict[str, Any]:
        """Generator state plus the open epoch's order and position (CPU tensors)."""
        return {
            "generator": self.generator.get_state(),
            "order": None if self._order is None else self._order.cpu(),
            "cursor": self._cursor,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the next batch equals the original run's."""
        if state.get("num_samples") != self.num_samples or state.get("batch_size") != self.batch_size:
            raise ConfigError(
                "cannot resume the data stream: the checkpoint was written for "
                f"{state.get('num_samples')} samples in batches of {state.get('batch_size')}, "
                f"this run has {self.num_samples} in batches of {self.batch_size}"
            )
        self.generator.set_state(state["generator"].cpu())
        order = state["order"]
        self._order = None if order is None else order.to(self.data.device)
        self._cursor = int(state["cursor"])


def search_split(
    n: int, train_portion: float, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic weights/architecture split of the training set (training.md section 3).

    The first ``floor(train_portion * n)`` indices train the weights, the rest
    the architecture; no shuffling, so the split is identical across seeds,
    methods and machines (DARTS/GAEA use indices 0..24999 / 25000..49999).
    """
    if isinstance(train_portion, bool) or not isinstance(train_portion, (int, float)):
        raise ConfigError(f"train_portion must be a number in (0, 1), got {train_portion!r}")
    if not 0.0 < float(train_portion) < 1.0:
        raise ConfigError(f"train_portion must be strictly between 0 and 1, got {train_portion}")
    k = int(math.floor(float(train_portion) * n))
    if k < 1 or k >= n:
        raise ConfigError(
            f"train_portion={train_portion} of {n} samples leaves an empty "
            f"{'weights' if k < 1 else 'architecture'} split"
        )
    return torch.arange(0, k, device=device), torch.arange(k, n, device=device)

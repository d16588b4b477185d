"""The embedded default dataset: procedural images that need a real CNN.

Why it exists: the tool must run end to end with no network and no files (first
run, CI, laptops), and a search on it must still *mean* something -- different
architectures should reach different accuracies.  So each class is a unique
combination of cues that favour different operations:

* an oriented grating (horizontal / vertical / diagonal plaid) of a
  class-specific period -- needs frequency-selective filters and a receptive
  field of several pixels (dilated / larger convs help for long periods);
* a coloured Gaussian blob of a class-specific hue and scale at a random
  position -- needs colour plus spatial pooling;
* a fine checkerboard texture present or absent -- a purely local 2-pixel cue
  that pooling destroys and small convs pick up.

Per-sample nuisances (random grating phase, orientation/period jitter, blob
position, a random-hue distractor blob, background level, tint and gradient,
contrast, pixel noise) keep it from being linearly separable on pixel means.
Some images lack the grating or the blob ("cue dropout"), which makes a few
classes genuinely ambiguous for them and keeps the best accuracy below 100%:
a small 3-layer CNN reaches about 60% after 2 epochs and 85% after 6, while
1x1-only or pool-first networks stay far lower.  Every cue is invariant to horizontal flips and
survives a 4-pixel random crop, so the standard CIFAR augmentation applies.

Determinism: every variate is derived from PCG64's raw 64-bit stream (which
numpy guarantees across platforms and versions; see :class:`StableRandom`)
and images are rendered in float64, so the uint8 output is the same on every
machine; mean/std come from exact integer sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from nas_cli.data.base import DATASETS, ArrayDataset, cfg_get, from_arrays
from nas_cli.errors import ConfigError

#: Classes are indexed into cue tables by residues modulo these pairwise
#: coprime sizes (orientation 3, period 5, hue 4) plus a texture bit; by the
#: Chinese remainder theorem every class up to this count gets a unique combo.
MAX_CLASSES = 120
#: Render this many images at a time: bounds peak memory (float64 scratch).
#: Noise is drawn per chunk, so this must stay a constant (never derived from
#: available memory) for the output to stay reproducible.
_CHUNK = 1024

# Grating periods as a fraction of the image size (3, 4.2, 5.8, 8, 11 px at 32).
_PERIODS = np.array([3.0, 4.2, 5.8, 8.0, 11.0]) / 32.0
# Blob hues: red, green, blue, yellow (RGB in [0, 1]).
_HUES = np.array([[0.9, 0.15, 0.1], [0.1, 0.8, 0.2], [0.15, 0.25, 0.95], [0.95, 0.85, 0.1]])
# Probability that an image shows no grating / no class blob.
_DROP_GRATING = 0.2
_DROP_BLOB = 0.15
# Blob sigma as a fraction of the image size (small / large).
_BLOB_SIGMAS = np.array([0.07, 0.15])


@dataclass(frozen=True)
class ClassCues:
    """Per-class cue indices (arrays of length num_classes)."""

    orientation: np.ndarray  # 0: vertical stripes, 1: horizontal stripes, 2: diagonal plaid
    period: np.ndarray  # index into _PERIODS
    hue: np.ndarray  # index into _HUES
    blob_scale: np.ndarray  # index into _BLOB_SIGMAS
    texture: np.ndarray  # 1: checkerboard overlay


def class_cues(num_classes: int) -> ClassCues:
    """Assign each class its cue combination (independent of the seed).

    Residues of coprime moduli decorrelate the cues: two classes sharing a hue
    differ in grating, and vice versa, so no single cue solves the task.
    """
    c = np.arange(num_classes)
    return ClassCues(
        orientation=c % 3,
        period=c % 5,
        hue=c % 4,
        blob_scale=(c // 3) % 2,
        texture=((c // 2) + (c // 60)) % 2,
    )


class StableRandom:
    """Uniforms, normals and permutations built directly on PCG64's raw output.

    numpy guarantees the *bit generator* streams (SeedSequence, PCG64) across
    versions and platforms, but explicitly not the distribution methods of
    ``Generator`` (``uniform``, ``normal``, ``permutation`` may change between
    releases).  Deriving every variate from ``random_raw`` with fixed formulas
    keeps the embedded dataset byte-identical for every user.
    """

    def __init__(self, *seed: int) -> None:
        self._bits = np.random.PCG64(np.random.SeedSequence([int(s) for s in seed]))

    def random(self, size: int | tuple[int, ...]) -> np.ndarray:
        """Float64 uniforms in [0, 1): the top 53 bits of each raw 64-bit word."""
        shape = (size,) if isinstance(size, int) else tuple(size)
        raw = np.asarray(self._bits.random_raw(int(np.prod(shape))), dtype=np.uint64)
        return ((raw >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)).reshape(shape)

    def uniform(self, lo: float, hi: float, size: int | tuple[int, ...]) -> np.ndarray:
        return lo + (hi - lo) * self.random(size)

    def integers(self, lo: int, hi: int, size: int) -> np.ndarray:
        return lo + np.floor(self.random(size) * (hi - lo)).astype(np.int64)

    def normal(self, mu: float, sigma: float, size: int | tuple[int, ...]) -> np.ndarray:
        """Box-Muller: each pair of uniforms gives two independent normals."""
        shape = (size,) if isinstance(size, int) else tuple(size)
        count = int(np.prod(shape))
        u = self.random((2, (count + 1) // 2))
        radius = np.sqrt(-2.0 * np.log1p(-u[0]))  # 1 - u in (0, 1]: log is finite
        angle = 2.0 * np.pi * u[1]
        z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:count]
        return mu + sigma * z.reshape(shape)

    def permutation(self, a: np.ndarray) -> np.ndarray:
        return a[np.argsort(self.random(a.shape[0]), kind="stable")]


def _render(labels: np.ndarray, size: int, cues: ClassCues, rng: StableRandom) -> np.ndarray:
    """Draw one split: uint8 array (N, 3, size, size) for the given labels."""
    n = labels.shape[0]
    out = np.empty((n, 3, size, size), dtype=np.uint8)
    # Per-sample parameters are drawn up front (fixed order), pixels per chunk.
    theta_base = np.where(cues.orientation[labels] == 1, np.pi / 2, 0.0)
    plaid = cues.orientation[labels] == 2
    theta = theta_base + rng.uniform(-0.35, 0.35, n)  # about +-20 degrees
    period = _PERIODS[cues.period[labels]] * size * rng.uniform(0.85, 1.15, n)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 2))
    grating_amp = rng.uniform(0.02, 0.09, n)
    grating_tint = 1.0 + rng.normal(0.0, 0.15, (n, 3))

    blob_center = rng.uniform(0.2 * size, 0.8 * size, (n, 2))
    blob_sigma = _BLOB_SIGMAS[cues.blob_scale[labels]] * size * rng.uniform(0.85, 1.15, n)
    blob_rgb = np.clip(_HUES[cues.hue[labels]] + rng.normal(0.0, 0.12, (n, 3)), 0.0, 1.0)
    blob_alpha = rng.uniform(0.2, 0.55, n)

    # Distractor: random hue, position and size, sometimes faint.
    dis_center = rng.uniform(0.1 * size, 0.9 * size, (n, 2))
    dis_sigma = rng.uniform(0.05, 0.16, n) * size
    dis_rgb = rng.uniform(0.0, 1.0, (n, 3))
    dis_alpha = rng.uniform(0.0, 0.5, n)

    texture = cues.texture[labels].astype(np.float64) * rng.uniform(0.02, 0.08, n)
    texture_parity = rng.integers(0, 2, n)

    background = rng.uniform(0.3, 0.7, n)[:, None] + rng.normal(0.0, 0.06, (n, 3))
    gradient_dir = rng.uniform(0.0, 2 * np.pi, n)
    gradient_amp = rng.uniform(0.0, 0.15, n)
    noise_sigma = rng.uniform(0.06, 0.12, n)
    # Cue dropout: some images lack the grating or the blob.  Classes that then
    # share all remaining cues become indistinguishable, which caps the best
    # achievable accuracy below 100% and leaves room between architectures.
    grating_amp *= rng.uniform(0.0, 1.0, n) >= _DROP_GRATING
    blob_alpha *= rng.uniform(0.0, 1.0, n) >= _DROP_BLOB

    # Every image term is separable (a product or sum of a row profile and a
    # column profile), so trig/exp run on (m, S) vectors and only the outer
    # products touch (m, S, S) -- this keeps 5000 images well under a second.
    # A grating is one or two plane waves: angle theta for stripes, theta +- 45
    # degrees (weight 0.7 each) for the plaid.
    angles = np.stack([theta + np.where(plaid, np.pi / 4, 0.0), theta - np.pi / 4], axis=1)
    wave_w = np.stack([np.where(plaid, 0.7, 1.0), np.where(plaid, 0.7, 0.0)], axis=1)
    pos = np.arange(size, dtype=np.float64)
    centred = (pos - (size - 1) / 2) / size
    checker = ((pos[:, None] + pos[None, :]) % 2) * 2.0 - 1.0  # (S, S), +-1

    def outer(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(m, S) row profile x (m, S) column profile -> (m, S, S) image [y, x]."""
        return rows[:, :, None] * cols[:, None, :]

    for lo in range(0, n, _CHUNK):
        sl = slice(lo, min(n, lo + _CHUNK))
        m = sl.stop - sl.start
        k = 2 * np.pi / period[sl]

        grating = np.zeros((m, size, size))
        for i in range(2):
            # cos(ax*x + ay*y + phi) = cos(ax*x + phi)cos(ay*y) - sin(ax*x + phi)sin(ay*y)
            ax = (k * np.cos(angles[sl, i]))[:, None] * pos
            ay = (k * np.sin(angles[sl, i]))[:, None] * pos
            px = ax + phase[sl, i, None]
            wave = outer(np.cos(ay), np.cos(px)) - outer(np.sin(ay), np.sin(px))
            grating += (wave_w[sl, i] * grating_amp[sl])[:, None, None] * wave

        sign = np.where(texture_parity[sl] == 1, -1.0, 1.0) * texture[sl]
        lum = grating + sign[:, None, None] * checker
        gx = (gradient_amp[sl] * np.cos(gradient_dir[sl]))[:, None] * centred
        gy = (gradient_amp[sl] * np.sin(gradient_dir[sl]))[:, None] * centred
        lum += gy[:, :, None] + gx[:, None, :]
        img = background[sl, :, None, None] + lum[:, None] * grating_tint[sl, :, None, None]

        for center, sigma, rgb, alpha in (
            (dis_center, dis_sigma, dis_rgb, dis_alpha),
            (blob_center, blob_sigma, blob_rgb, blob_alpha),
        ):
            inv = 1.0 / (2.0 * sigma[sl, None] ** 2)
            ex = np.exp(-((pos - center[sl, 0, None]) ** 2) * inv)
            ey = np.exp(-((pos - center[sl, 1, None]) ** 2) * inv) * alpha[sl, None]
            a = outer(ey, ex)[:, None]  # (m, 1, S, S) opacity
            img = img * (1 - a) + rgb[sl, :, None, None] * a

        noise = rng.normal(0.0, 1.0, (m, 3, size, size))
        img += noise * noise_sigma[sl, None, None, None]
        out[sl] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out


def _balanced_labels(n: int, num_classes: int, rng: StableRandom) -> np.ndarray:
    """Class counts differ by at most one; order shuffled so any prefix is mixed."""
    return rng.permutation(np.arange(n) % num_classes)


def generate(
    num_train: int = 4000,
    num_test: int = 1000,
    image_size: int = 32,
    num_classes: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(train_x, train_y, test_x, test_y)`` as numpy arrays (uint8 NCHW, int64).

    Train and test come from independent child streams of ``seed`` so that
    changing ``num_train`` does not change the test set.
    """
    if num_train < num_classes or num_test < 1:
        raise ConfigError(
            f"synthetic dataset needs num_train >= num_classes ({num_classes}) and num_test >= 1, "
            f"got num_train={num_train}, num_test={num_test}"
        )
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"synthetic dataset supports 2..{MAX_CLASSES} classes, got {num_classes}")
    if image_size < 8:
        raise ConfigError(f"synthetic dataset needs image_size >= 8, got {image_size}")
    cues = class_cues(num_classes)
    arrays = []
    for split, n in enumerate((num_train, num_test)):
        rng = StableRandom(seed, split)
        y = _balanced_labels(n, num_classes, rng)
        arrays += [_render(y, image_size, cues, rng), y.astype(np.int64)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


@DATASETS.register("synthetic")
def build_synthetic(cfg: Mapping[str, Any]) -> ArrayDataset:
    """Builder for ``dataset.name=synthetic`` (ignores ``root``/``download``)."""
    try:
        num_train = int(cfg_get(cfg, "num_train", 4000))
        num_test = int(cfg_get(cfg, "num_test", 1000))
        image_size = int(cfg_get(cfg, "image_size", 32))
        num_classes = int(cfg_get(cfg, "num_classes", 10))
        seed = int(cfg_get(cfg, "seed", 0))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"synthetic dataset: numeric settings expected ({e})") from None
    train_x, train_y, test_x, test_y = generate(num_train, num_test, image_size, num_classes, seed)
    cues = class_cues(num_classes)
    names = [
        f"{['vert', 'horiz', 'plaid'][cues.orientation[c]]}-p{cues.period[c]}"
        f"-{['red', 'green', 'blue', 'yellow'][cues.hue[c]]}{['', '-checker'][cues.texture[c]]}"
        for c in range(num_classes)
    ]
    return from_arrays("synthetic", cfg, train_x, train_y, test_x, test_y, num_classes, class_names=names)

"""Which architecture an epoch (and so the run) returns: the search loop's selection hook.

A selector turns the current state of a search into *effective architecture
weights*; the loop validates the supernet with them and discretizes them into
the epoch's genotype.  Gradient methods use ``argmax`` (the weights themselves,
one-hot argmax for one-hot samplings such as GDAS); random search with weight
sharing has nothing to discretize and uses ``random_candidates``: score
``candidates`` uniformly sampled architectures on one validation batch with the
shared weights and keep the best (RSPS, ``methods.md`` §7.2 -- [A] also does this
after every epoch).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nas_cli.registry import Registry
from nas_cli.runtime.compile import run_eagerly

if TYPE_CHECKING:  # pragma: no cover
    from nas_cli.stages.search import SearchRun


class Selector(ABC):
    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @abstractmethod
    def __call__(self, run: "SearchRun", epoch: int) -> dict[str, Tensor]:
        """Effective weights (detached) of the architecture epoch ``epoch`` (0-based) returns."""


SELECTORS: Registry[type[Selector]] = Registry("selector")


def one_hot_argmax(probs: dict[str, Tensor], run: "SearchRun") -> dict[str, Tensor]:
    return {k: (torch.nn.functional.one_hot(v.argmax(-1), v.shape[-1]).float()
                if run.arch.specs[k].kind == "ops" else v) for k, v in probs.items()}


@SELECTORS.register("argmax")
class ArgmaxSelector(Selector):
    """The architecture weights; GDAS-style (one-hot) samplings validate the one-hot argmax network."""

    def __call__(self, run: "SearchRun", epoch: int) -> dict[str, Tensor]:
        probs = run.arch.probabilities()
        return one_hot_argmax(probs, run) if run.arch.sampling.one_hot else probs


@SELECTORS.register("random_candidates")
class RandomCandidates(Selector):
    """Best of N uniformly sampled architectures by accuracy on one validation batch.

    Candidates and the batch come from a generator seeded by (seed, epoch), so the
    choice is reproducible and needs no resume state.  The batch is drawn from the
    architecture split with the evaluation transform; BN in eval mode.
    """

    def __call__(self, run: "SearchRun", epoch: int) -> dict[str, Tensor]:
        from nas_cli.arch.sampling import SAMPLINGS
        from nas_cli.data.loader import normalize

        dev = run.device
        gen = torch.Generator(device=dev).manual_seed(int(run.cfg.seed) * 7919 + 104729 + epoch)
        stream = run.arch_stream
        n = stream.indices.numel()
        pick = torch.randperm(n, generator=gen, device=dev)[: int(self.cfg.batch_size)]
        idx = stream.indices[pick]
        x = normalize(stream.data.x[idx], stream.data.mean, stream.data.std)
        y = stream.data.y[idx]
        uniform = SAMPLINGS.get("uniform")
        probs = run.arch.probabilities()
        model = run.objective.eval_model()
        was_training = model.training
        model.eval()
        cands: list[dict[str, Tensor]] = []
        correct = []
        try:
            with torch.no_grad(), run_eagerly():
                for _ in range(int(self.cfg.candidates)):
                    w = {k: (uniform(v, v, 1.0, gen) if run.arch.specs[k].kind == "ops" else v)
                         for k, v in probs.items()}
                    cands.append(w)
                    correct.append((run.eval_forward(x, w, model).argmax(1) == y).sum())
        finally:
            model.train(was_training)
        best = int(torch.stack(correct).argmax())  # first maximum; one host sync for all candidates
        return cands[best]


def build_selector(cfg: Any) -> Selector:
    return SELECTORS.get(str(cfg.name))(cfg)

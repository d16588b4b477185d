"""The oracle seam: look up the benchmark accuracy of a discrete architecture.

Tabular benchmarks (NAS-Bench-201, ...) replace stage 2/3 training: the genotype
a search returns is looked up, not trained.  An :class:`Oracle` answers "test
accuracy of this genotype on that dataset" and "best accuracy in the table",
which is all the search loop (``oracle_test_acc``, ``oracle_regret``) and the
reports need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from nas_cli.registry import Registry


class Oracle(ABC):
    #: dataset names this oracle can answer for (nas_cli dataset names)
    datasets: tuple[str, ...]

    @abstractmethod
    def test_acc(self, genotype: str, dataset: str) -> float | None:
        """Test accuracy (%) of ``genotype`` (the space's genotype string) or None if not in the table."""

    @abstractmethod
    def best(self, dataset: str) -> float:
        """Best test accuracy (%) in the table for ``dataset`` (regret = best - current)."""

    def describe(self) -> str:
        return type(self).__name__


#: name -> builder(oracle config node) -> Oracle
ORACLES: Registry[Callable[[Any], Oracle]] = Registry("oracle")

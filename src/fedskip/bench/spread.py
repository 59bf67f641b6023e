"""Seeds and their spread: mean ± std over seeds, and three-way verdicts.

A claim compares a measured difference ``d`` (in points, e.g. reference − ours) against a
threshold ``t`` (e.g. "within 2 points": held when d ≤ t). With seeds each side has a spread;
the spread of the difference is ``s = sqrt(std_a² + std_b²)`` (sample standard deviations over
seeds, ddof = 1). The verdict is

* **held** when ``d + s ≤ t`` — the claim holds even one spread against it;
* **not held** when ``d − s > t``;
* **inconclusive** otherwise: the difference from the threshold is inside the seed spread.

With a single seed per side the spread is unknown (not zero): such a comparison reads
"inconclusive" unless ``single_seed_ok`` is set, when it falls back to the plain comparison and
says "1 seed" in its evidence.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HELD", "INCONCLUSIVE", "NOT_HELD", "Spread", "spread", "verdict"]

HELD, NOT_HELD, INCONCLUSIVE = "held", "not held", "inconclusive"


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (ddof 1; None for one value) over ``n`` seeds."""

    mean: float
    std: float | None
    n: int

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        """``"81.2 ± 0.4"`` (points when ``scale`` = 100); one seed prints the mean alone."""
        if self.std is None:
            return f"{scale * self.mean:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.std:.{digits}f}"


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of ``values`` (at least one)."""
    if not values:
        raise ValueError("spread of no values")
    vals = [float(v) for v in values]
    std = statistics.stdev(vals) if len(vals) > 1 else None
    return Spread(statistics.fmean(vals), std, len(vals))


def verdict(
    difference: float,
    threshold: float,
    spreads: Sequence[Spread],
    *,
    single_seed_ok: bool = False,
) -> tuple[str, float | None]:
    """(verdict, spread of the difference) for the claim ``difference <= threshold``.

    ``difference`` and ``threshold`` are in the same units as the spreads' std (metric units;
    multiply both by 100 for points). See the module docstring.
    """
    stds = [s.std for s in spreads]
    if any(s is None for s in stds):
        if not single_seed_ok:
            return INCONCLUSIVE, None
        return (HELD if difference <= threshold else NOT_HELD), None
    s = math.sqrt(sum(x * x for x in stds if x is not None))
    if difference + s <= threshold:
        return HELD, s
    if difference - s > threshold:
        return NOT_HELD, s
    return INCONCLUSIVE, s

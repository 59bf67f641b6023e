"""Privacy/utility sweeps and plans for benchmarks and reports (Flower-free).

:func:`epsilon_sweep` turns one base config into the runs of an ε sweep (no DP, then DP-SGD at
each target ε, for each method); :func:`sample_dp_plan` says — before anything trains — which
noise multiplier a client with ``num_examples`` examples will use and what ε it will have spent
after all rounds, exactly as :class:`fedskip.privacy.dpsgd.DPSGD` will plan it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedskip.privacy.accounting import (
    epsilon_for,
    noise_multiplier_for,
    sample_rate,
    steps_per_epoch,
)

if TYPE_CHECKING:
    from fedskip.config import Config

PAPER_EPSILONS: tuple[float | None, ...] = (None, 8.0, 4.0, 2.0, 1.0)
"""The benchmark's sweep: no DP, then target ε = 8, 4, 2, 1 (at the config's δ)."""


def sweep_settings(epsilon: float | None, *, dp: str = "sample") -> dict[str, str | float]:
    """Config keys (kebab-case) of one point of an ε sweep: ``dp=none`` for ``None``, else
    ``dp`` (sample- or client-level) with ``target-epsilon`` = ε, so σ is planned from the
    run's rounds, local epochs and data size. Sample-level points protect patients
    (``dp-unit=patient``): ε per patient, the number a privacy officer reads."""
    if epsilon is None:
        return {"dp": "none", "target-epsilon": 0.0}
    if epsilon <= 0:
        raise ValueError(f"sweep ε must be > 0 or None, got {epsilon}")
    unit: dict[str, str | float] = {"dp-unit": "patient"} if dp == "sample" else {}
    return {"dp": dp, "target-epsilon": float(epsilon), **unit}


def epsilon_sweep(
    base: Any,
    *,
    epsilons: Sequence[float | None] = PAPER_EPSILONS,
    methods: Iterable[str] = ("layerskip", "fedavg"),
    dp: str = "sample",
) -> list[tuple[str, Any]]:
    """``[(name, config), ...]`` for every method × ε of the sweep.

    ``None`` in ``epsilons`` is the non-private run (``dp=none``); a number sets ``dp`` (sample-
    or client-level) with that ``target-epsilon``, so σ is derived from the planned rounds. Names
    are ``"<method>-nodp"`` and ``"<method>-eps<ε>"`` (e.g. ``layerskip-eps2``); each config gets
    its own ``out`` folder under the base's ``out``.
    """
    runs = []
    for method in methods:
        for eps in epsilons:
            name = f"{method}-nodp" if eps is None else f"{method}-eps{eps:g}"
            keys: dict[str, str | float] = {
                "method": method,
                "out": f"{base.out.rstrip('/')}/{name}",
            }
            keys.update(sweep_settings(eps, dp=dp))
            runs.append((name, type(base).from_mapping(keys, base=base)))
    return runs


@dataclass(frozen=True)
class SampleDPPlan:
    """What DP-SGD will do on one client: Poisson rate ``sample_rate`` (q = batch/n),
    ``steps`` noised steps over all rounds, noise ``noise_multiplier`` (σ), and the ε at
    ``delta`` spent after them."""

    num_examples: int
    sample_rate: float
    steps_per_round: int
    steps: int
    noise_multiplier: float
    epsilon: float
    delta: float


def sample_dp_plan(cfg: Config, num_examples: int, *, federated: bool = True) -> SampleDPPlan:
    """The DP-SGD plan of a client with ``num_examples`` privacy *units* under ``cfg`` — its
    patients, notes or examples as ``dp-unit`` says (the n of q = batch-size / n; see
    :mod:`fedskip.privacy.units`) — (``target-epsilon`` → σ from it, else ``noise-multiplier``;
    grad-accum = 1 accounting). ε is per unit at δ."""
    q = sample_rate(cfg.batch_size, num_examples)
    epochs = cfg.rounds * cfg.local_epochs if federated else cfg.epochs
    per_round = (cfg.local_epochs if federated else cfg.epochs) * math.ceil(
        steps_per_epoch(q) / cfg.grad_accum
    )
    total = epochs * math.ceil(steps_per_epoch(q) / cfg.grad_accum)
    rate = min(1.0, q * cfg.grad_accum)
    if cfg.target_epsilon > 0:
        sigma = noise_multiplier_for(
            target_epsilon=cfg.target_epsilon, delta=cfg.delta, sample_rate=rate, steps=total
        )
    else:
        sigma = cfg.noise_multiplier
    eps = epsilon_for(noise_multiplier=sigma, sample_rate=rate, steps=total, delta=cfg.delta)
    return SampleDPPlan(num_examples, q, per_round, total, sigma, eps, cfg.delta)

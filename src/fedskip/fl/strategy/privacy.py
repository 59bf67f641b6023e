"""Differential privacy in the Flower strategy — the server's entry points (the maths is
:mod:`fedskip.privacy`, a node's DP-SGD state :mod:`fedskip.fl.dpsgd_node`).

- :func:`add_privacy` wraps a fedskip strategy as the config asks: ``dp=sample`` →
  :class:`~fedskip.fl.strategy.sample_dp.SampleDPStrategy` (max-ε metrics, DP-SGD steps ledger,
  budget check); ``dp=client`` → :class:`~fedskip.fl.strategy.client_dp.ClientDPStrategy`
  (DP-FedAvg on partial states). Either way a round that would exceed ``target-epsilon`` is
  refused before anything is sent and the round loop ends the run cleanly after the last
  completed round (model exported, ``summary.json`` says why).
- :func:`privacy_summary`: the ``summary.json`` fields (``dp``, ``epsilon``, ``delta``,
  ``accountant``, ``secagg``, ``privacy_unit``, ``dp_units``, ``dp_warning``, ``stopped``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedskip.fl.dpsgd_node import EPSILON
from fedskip.fl.strategy.client_dp import ClientDPStrategy
from fedskip.fl.strategy.core import LayerSkipStrategy
from fedskip.fl.strategy.sample_dp import SampleDPStrategy
from fedskip.fl.strategy.wrapper import StrategyWrapper
from fedskip.privacy.client_level import ClientDPSettings


def add_privacy(
    strategy: LayerSkipStrategy | StrategyWrapper,
    cfg: Any,
    *,
    rng: np.random.Generator | None = None,
) -> LayerSkipStrategy | StrategyWrapper:
    """``strategy`` wrapped as ``cfg`` asks (itself for ``dp=none``).

    ``dp=sample``: :class:`SampleDPStrategy` (max-ε metrics, DP-SGD step ledger, budget check).
    ``dp=client``: :class:`ClientDPStrategy` (clipping on the server, or on the clients when
    ``secagg=true``) with a planned σ for ``target-epsilon``. A round refused for the budget
    ends the run cleanly (:class:`fedskip.fl.round_loop.RoundLoop`).
    """
    if cfg.dp == "sample":
        return SampleDPStrategy(strategy, target_epsilon=cfg.target_epsilon, delta=cfg.delta)
    if cfg.dp == "client":
        return ClientDPStrategy(
            strategy,
            ClientDPSettings.from_config(cfg),
            side="client" if cfg.secagg else "server",
            rng=rng,
            target_epsilon=cfg.target_epsilon,
        )
    return strategy


def unnoised(cfg: Any) -> bool:
    """Whether ``cfg`` trains with DP but without noise (``noise-multiplier=0``, no
    ``target-epsilon``): ε is infinite. Clients cannot say so themselves — only finite numbers
    travel in a reply's metrics — so the server fills in ``math.inf``."""
    return bool(cfg.dp != "none" and cfg.target_epsilon <= 0 and cfg.noise_multiplier == 0)


def privacy_summary(
    cfg: Any, rows: list[dict[str, Any]], strategy: Any = None, *, stopped: str = ""
) -> dict[str, Any]:
    """``summary.json`` fields: ``dp``, ``epsilon`` (last reported; None without DP), ``delta``,
    ``accountant``, ``secagg``, ``privacy_unit`` (what ε is per: patient, note or example for
    ``dp=sample`` — the weakest any client used —, client for ``dp=client``), ``dp_units``
    (``dp=sample``: privacy units per client id), ``dp_accounting`` (``dp=sample``: per client
    id the mechanism its ε composes — σ, the accounted sample rate q of a step and the noised
    steps — so anyone can recompute ε with their own accountant), ``dp_warning`` (``dp=client`` with too few
    clients per round; ``dp=sample`` with a client whose steps sample half or more of its
    units) and, when the budget ended the run early, ``stopped`` (the round
    loop's :attr:`~fedskip.fl.round_loop.RoundLoop.stopped`)."""
    out: dict[str, Any] = {"dp": cfg.dp, "secagg": cfg.secagg}
    if cfg.dp == "none":
        out.update(epsilon=None, delta=None, accountant=None, privacy_unit=None)
    else:
        eps = next((r[EPSILON] for r in reversed(rows) if r.get(EPSILON) is not None), None)
        if eps is None and unnoised(cfg):
            eps = math.inf
        out.update(epsilon=eps, delta=cfg.delta, accountant="rdp")
    ledger = getattr(strategy, "dp_ledger", None)
    if cfg.dp == "sample":
        unit = ledger.privacy_unit() if ledger is not None else None
        out["privacy_unit"] = unit or (cfg.dp_unit if cfg.dp_unit != "auto" else None)
        out["dp_units"] = {str(k): v for k, v in sorted(ledger.units.items())} if ledger else {}
        out["dp_accounting"] = (
            {
                str(client): {"noise_multiplier": sigma, "sample_rate": rate, "steps": steps}
                for client, (sigma, rate, _) in sorted(ledger.next_round.items())
                if (steps := ledger.steps.get(client, 0))
            }
            if ledger
            else {}
        )
        warning = ledger.crowded_warning() if ledger is not None else ""
        if warning:
            out["dp_warning"] = warning
    elif cfg.dp == "client":
        out["privacy_unit"] = "client"
        warning = getattr(strategy, "dp_warning", "")
        if warning:
            out["dp_warning"] = warning
    if stopped:
        out["stopped"] = stopped
    return out

"""Differential privacy in the Flower app — the entry points.

- :func:`add_privacy` makes a fedskip strategy private as the config asks: ``dp=sample`` →
  :class:`fedskip.fl.dp_sample.SampleDPMixin` (max-ε metrics, DP-SGD steps ledger, budget stop);
  ``dp=client`` → :class:`fedskip.fl.dp_client.ClientDPMixin` (DP-FedAvg on partial states).
  Either way a round that would exceed ``target-epsilon`` is refused before anything is sent and
  the run ends cleanly after the last completed round (model exported, ``summary.json`` says why).
- ClientApp side: :func:`dpsgd_for` / :func:`save_dpsgd` / :func:`dpsgd_metrics` /
  :func:`known_dp_steps` (DP-SGD state in ``Context.state``), :func:`clip_update_mod`.
- :func:`privacy_summary`: the ``summary.json`` fields (``dp``, ``epsilon``, ``delta``,
  ``accountant``, ``secagg``, ``privacy_unit``, ``dp_units``, ``dp_warning``, ``stopped``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import ArrayRecord
from flwr.serverapp.strategy import Result

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl.dp_client import CLIP_NORM, ClientDPMixin, clip_update_mod
from fedskip.fl.dp_sample import (
    DP_STEPS,
    DP_STEPS_DONE,
    DPSGD_STATE,
    EPSILON,
    DPStepsLedger,
    SampleDPMixin,
    dpsgd_for,
    dpsgd_metrics,
    known_dp_steps,
    save_dpsgd,
    with_max_epsilon,
)
from fedskip.privacy.checks import warn_loudly
from fedskip.privacy.client_dp import ClientDPSettings

__all__ = [
    "CLIP_NORM",
    "DP_STEPS",
    "DP_STEPS_DONE",
    "DPSGD_STATE",
    "EPSILON",
    "BudgetStopMixin",
    "ClientDPMixin",
    "DPStepsLedger",
    "SampleDPMixin",
    "add_privacy",
    "clip_update_mod",
    "dpsgd_for",
    "dpsgd_metrics",
    "known_dp_steps",
    "privacy_summary",
    "save_dpsgd",
    "with_max_epsilon",
]


class BudgetStopMixin:
    """Ends the round loop cleanly when a round is refused for the privacy budget: the result
    holds the global state after the last completed round; ``privacy_stop`` says why."""

    privacy_stop = ""

    def start(self, *args: Any, **kwargs: Any) -> Result:
        last: dict[str, Any] = {
            "arrays": kwargs.get("initial_arrays", args[1] if len(args) > 1 else None)
        }
        inner = kwargs.get("on_round_end")

        def remember(server_round: int, arrays: ArrayRecord, record: Any) -> None:
            last["arrays"] = arrays
            if inner is not None:
                inner(server_round, arrays, record)

        kwargs["on_round_end"] = remember
        try:
            return super().start(*args, **kwargs)  # type: ignore[misc]
        except PrivacyBudgetExceeded as exc:
            self.privacy_stop = str(exc)
            warn_loudly(f"run stopped: {exc}")
            result = Result()
            result.arrays = last["arrays"]
            return result


_DP_CLASSES: dict[tuple[type, type], type] = {}


def _extend(strategy: Any, mixin: type) -> None:
    """Give ``strategy`` the behaviour of ``mixin`` on top of its own class (cached subclass)."""
    base = type(strategy)
    if (mixin, base) not in _DP_CLASSES:
        name = f"{mixin.__name__.removesuffix('Mixin')}{base.__name__}"
        _DP_CLASSES[(mixin, base)] = type(name, (mixin, base), {})
    strategy.__class__ = _DP_CLASSES[(mixin, base)]


def add_privacy(strategy: Any, cfg: Any, *, rng: np.random.Generator | None = None) -> Any:
    """Make a fedskip strategy private as ``cfg`` asks; returns the same object.

    ``dp=sample``: the strategy becomes a :class:`SampleDPMixin` subclass of its own class
    (max-ε metrics, DP-SGD step ledger). ``dp=client``: a :class:`ClientDPMixin` subclass (clipping on the server,
    or on the clients when ``secagg=true``) with a planned σ for ``target-epsilon``.
    """
    if cfg.dp == "sample":
        _extend(strategy, SampleDPMixin)
        strategy.setup_sample_dp(target_epsilon=cfg.target_epsilon, delta=cfg.delta)
    elif cfg.dp == "client":
        _extend(strategy, ClientDPMixin)
        strategy.setup_client_dp(
            ClientDPSettings.from_config(cfg),
            side="client" if cfg.secagg else "server",
            rng=rng,
            target_epsilon=cfg.target_epsilon,
        )
    if cfg.dp != "none":
        _extend(strategy, BudgetStopMixin)
    return strategy


def privacy_summary(cfg: Any, rows: list[dict[str, Any]], strategy: Any = None) -> dict[str, Any]:
    """``summary.json`` fields: ``dp``, ``epsilon`` (last reported; None without DP), ``delta``,
    ``accountant``, ``secagg``, ``privacy_unit`` (what ε is per: patient, note or example for
    ``dp=sample`` — the weakest any client used —, client for ``dp=client``), ``dp_units``
    (``dp=sample``: privacy units per client id), ``dp_warning`` (``dp=client`` with too few
    clients per round) and, when the budget ended the run early, ``stopped``."""
    out: dict[str, Any] = {"dp": cfg.dp, "secagg": cfg.secagg}
    if cfg.dp == "none":
        out.update(epsilon=None, delta=None, accountant=None, privacy_unit=None)
    else:
        eps = next((r[EPSILON] for r in reversed(rows) if r.get(EPSILON) is not None), None)
        out.update(epsilon=eps, delta=cfg.delta, accountant="rdp")
    ledger = getattr(strategy, "dp_ledger", None)
    if cfg.dp == "sample":
        unit = ledger.privacy_unit() if ledger is not None else None
        out["privacy_unit"] = unit or (cfg.dp_unit if cfg.dp_unit != "auto" else None)
        out["dp_units"] = {str(k): v for k, v in sorted(ledger.units.items())} if ledger else {}
    elif cfg.dp == "client":
        out["privacy_unit"] = "client"
        warning = getattr(strategy, "dp_warning", "")
        if warning:
            out["dp_warning"] = warning
    stop = getattr(strategy, "privacy_stop", "")
    if stop:
        out["stopped"] = stop
    return out

"""A node's side of sample-level DP (DP-SGD) in the Flower app: its accountant in
``Context.state``, the train reply's DP metrics, and the keys both sides read.

Each ClientApp trains with :class:`fedskip.privacy.dpsgd.DPSGD`; its accountant lives in the
node's ``Context.state`` (a ``ConfigRecord`` under :data:`DPSGD_STATE`), so it keeps composing
over every round the node serves. The reply carries ``epsilon``, ``dp-steps`` and the client's
(σ, q, steps per round), which the server's :class:`fedskip.fl.strategy.sample_dp.SampleDPStrategy`
reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flwr.app import ConfigRecord, Context

from fedskip.federation.round_rows import DP_STEP_METRICS
from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings
from fedskip.privacy.units import unit_code

DPSGD_STATE = "fedskip.dpsgd"
"""``Context.state`` ConfigRecord holding a node's DP-SGD accountant and plan."""
DP_STEPS_DONE = "dp-steps-done"
"""Train-config key: DP-SGD steps each client (by client id) reported so far — lets a client
whose node state was lost (resumed run) restore its accountant instead of restarting at 0."""
DP_STEPS = "dp-steps"
DP_SIGMA = "dp-noise-multiplier"
DP_RATE = "dp-sample-rate"
DP_ROUND_STEPS = "dp-round-steps"
DP_UNIT = "dp-unit"
"""Reply metric: the client's resolved privacy unit as a number (:func:`units.unit_code`)."""
DP_UNITS = "dp-units"
"""Reply metric: privacy units (patients / notes / examples) at the client: the n of q = B / n."""
EPSILON = "epsilon"


def dpsgd_for(context: Context, cfg: Any, *, known_steps: int = 0) -> DPSGD | None:
    """This node's DP-SGD hook for ``cfg`` (None unless ``dp=sample``), resumed from
    ``context.state`` so ε composes over all rounds the node trained in; ``known_steps`` (see
    :func:`known_dp_steps`) restores steps the node state lost."""
    if cfg.dp != "sample":
        return None
    dp = DPSGD(DPSGDSettings.from_config(cfg, federated=True), known_steps=known_steps)
    saved = context.state.config_records.get(DPSGD_STATE)
    if saved is not None:
        dp.load_state_dict(dict(saved))
    return dp


def save_dpsgd(context: Context, dp: DPSGD) -> None:
    """Store the accountant (and σ plan) in ``context.state`` for the node's next round."""
    context.state.config_records[DPSGD_STATE] = ConfigRecord(dp.state_dict())


def dpsgd_metrics(dp: DPSGD, *, step_report: bool = False) -> dict[str, float]:
    """Numbers for the train reply: ``epsilon`` spent so far at ``dp-delta`` — per privacy unit
    (``dp-unit``: patient, note or example, see :mod:`fedskip.privacy.units`; ``dp-units`` of
    them here) — the composed DP-SGD steps of this node, and what one round composes — noise
    multiplier, sample rate and steps per round (what the server needs to stop before a round
    exceeds the budget). With ``step_report`` (config key ``dp-step-report``) also the
    round's signal and noise (:meth:`~fedskip.privacy.dpsgd.DPSGD.step_report`): statistics of
    the site's data that ε does not cover."""
    return {
        DP_UNIT: float(unit_code(dp.unit)),
        DP_UNITS: float(dp.num_units),
        EPSILON: dp.epsilon(),
        "dp-delta": dp.settings.delta,
        DP_SIGMA: float(dp.noise_multiplier or 0.0),
        DP_RATE: float(dp.step_rate()),
        DP_ROUND_STEPS: float(dp.steps_per_round()),
        DP_STEPS: float(dp.accountant.steps),
    } | (_step_metrics(dp.step_report()) if step_report else {})


def _step_metrics(report: Mapping[str, float]) -> dict[str, float]:
    """The step report under its train-reply names (one table both ways:
    :data:`~fedskip.federation.round_rows.DP_STEP_METRICS`)."""
    return {key: report[name] for key, name in DP_STEP_METRICS.items() if name in report}


def known_dp_steps(config: Mapping[str, Any], client_id: int) -> int:
    """This client's entry of the train config's :data:`DP_STEPS_DONE` (0 when absent); the
    value is a list of ints, or its JSON text on the legacy (SecAgg+) path."""
    values: Any = config.get(DP_STEPS_DONE, [])
    if isinstance(values, str):
        values = json.loads(values) if values else []
    return int(values[client_id]) if 0 <= client_id < len(values) else 0

"""Sample-level DP (DP-SGD) in the Flower strategy: the server's ledger of clients' DP-SGD steps
and the max-ε round metric (the node's side is :mod:`fedskip.fl.dpsgd_node`).

Each client's train reply carries ``epsilon``, ``dp-steps`` and its (σ, q, steps per round);
the server reports the *largest* ε over clients — the guarantee that
holds for every hospital — keeps the reported steps in its checkpoint (so a client whose node
state was lost restores its accountant) and stops before a round that would take any client past
``target-epsilon``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flwr.app import (
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl.dpsgd_node import (
    DP_RATE,
    DP_ROUND_STEPS,
    DP_SIGMA,
    DP_STEPS,
    DP_STEPS_DONE,
    DP_UNIT,
    DP_UNITS,
    EPSILON,
)
from fedskip.fl.flower_compat import aggregate_metricrecords
from fedskip.fl.messages import metric_dict
from fedskip.fl.strategy.core import LayerSkipStrategy, UpdateRule
from fedskip.fl.strategy.wrapper import StrategyWrapper
from fedskip.privacy.accounting import epsilon_for
from fedskip.privacy.dpsgd import CROWDED_STEP_RATE
from fedskip.privacy.units import RESOLVED_UNITS, unit_name

log = logging.getLogger(__name__)

MetricsAggregator = Callable[[list[RecordDict], str], MetricRecord]


class DPStepsLedger:
    """Server-side record of each client's DP-SGD spending, as the clients reported it:
    composed steps, and the (σ, q, steps) one more round of that client would compose."""

    def __init__(self) -> None:
        self.steps: dict[int, int] = {}
        self.next_round: dict[int, tuple[float, float, int]] = {}
        self.units: dict[int, int] = {}  # privacy units per client (last report)
        self.unit_kinds: dict[int, str] = {}  # resolved privacy unit per client

    def privacy_unit(self) -> str | None:
        """The unit ε holds for at every client: the weakest reported (example < note <
        patient); None before any report."""
        kinds = set(self.unit_kinds.values())
        return min(kinds, key=RESOLVED_UNITS.index) if kinds else None

    def record(self, client_id: int, metrics: Mapping[str, Any]) -> None:
        if DP_UNIT in metrics and DP_UNITS in metrics:
            self.unit_kinds[client_id] = unit_name(float(metrics[DP_UNIT]))
            self.units[client_id] = int(metrics[DP_UNITS])
        if DP_STEPS in metrics:
            steps = int(metrics[DP_STEPS])
            self.steps[client_id] = max(self.steps.get(client_id, 0), steps)
        if all(k in metrics for k in (DP_SIGMA, DP_RATE, DP_ROUND_STEPS)):
            self.next_round[client_id] = (
                float(metrics[DP_SIGMA]),
                float(metrics[DP_RATE]),
                int(metrics[DP_ROUND_STEPS]),
            )

    def as_list(self) -> list[int]:
        """Steps by client id 0..max (0 for clients not heard from)."""
        return [self.steps.get(i, 0) for i in range(max(self.steps, default=-1) + 1)]

    def check_next_round(self, target_epsilon: float, delta: float) -> None:
        """Raise :class:`PrivacyBudgetExceeded` if one more round of any client whose spending is
        known would take it past ``target_epsilon`` (each round composes the same segment)."""
        for client, (sigma, rate, per_round) in sorted(self.next_round.items()):
            steps = self.steps.get(client, 0) + per_round
            eps = epsilon_for(noise_multiplier=sigma, sample_rate=rate, steps=steps, delta=delta)
            if eps > target_epsilon:
                raise PrivacyBudgetExceeded(
                    f"privacy budget: one more round would raise client {client}'s ε to "
                    f"{eps:.4f} at δ={delta:g}, above target-epsilon={target_epsilon:g}; "
                    "training stops here"
                )

    def crowded_warning(self) -> str:
        """The summary's ``dp_warning`` when a client's step samples half or more of its privacy
        units (:data:`fedskip.privacy.dpsgd.CROWDED_STEP_RATE`, the rate the client warned of);
        empty otherwise."""
        crowded = {
            client: rate
            for client, (_, rate, _) in sorted(self.next_round.items())
            if rate >= CROWDED_STEP_RATE
        }
        if not crowded:
            return ""
        sites = ", ".join(
            f"client {c}: {self.units[c]} units, rate {r:.2f}"
            if c in self.units
            else f"client {c}: rate {r:.2f}"
            for c, r in crowded.items()
        )
        return (
            f"DP-SGD steps sampled half or more of a site's privacy units ({sites}): sampling "
            "amplifies almost nothing there and the noise swamps the few units a step averages; "
            "use a smaller batch-size × grad-accum or more units per site"
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": {str(k): v for k, v in self.steps.items()},
            "next_round": {str(k): list(v) for k, v in self.next_round.items()},
            "units": {str(k): v for k, v in self.units.items()},
            "unit_kinds": {str(k): v for k, v in self.unit_kinds.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.steps = {int(k): int(v) for k, v in state.get("steps", {}).items()}
        self.next_round = {
            int(k): (float(v[0]), float(v[1]), int(v[2]))
            for k, v in state.get("next_round", {}).items()
        }
        self.units = {int(k): int(v) for k, v in state.get("units", {}).items()}
        self.unit_kinds = {int(k): str(v) for k, v in state.get("unit_kinds", {}).items()}


class SampleDPStrategy(StrategyWrapper):
    """``dp=sample`` on the server, wrapping a fedskip strategy: ε of a round is the max over
    clients (train metrics), the clients' reported DP-SGD steps travel back in the train config
    (:data:`DP_STEPS_DONE`), and a round that would take a known client past ``target-epsilon``
    is refused before it starts."""

    def __init__(
        self,
        strategy: LayerSkipStrategy | StrategyWrapper,
        *,
        target_epsilon: float = 0.0,
        delta: float = 1e-5,
    ) -> None:
        super().__init__(strategy)
        self.dp_ledger = DPStepsLedger()
        self.dp_target_epsilon, self.dp_delta = target_epsilon, delta
        core = self.core  # ε is a max over the accepted replies, not a weighted mean
        core.train_metrics_aggr_fn = with_max_epsilon(core.train_metrics_aggr_fn)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.dp_target_epsilon > 0:
            self.dp_ledger.check_next_round(self.dp_target_epsilon, self.dp_delta)
        if self.dp_ledger.steps:
            config[DP_STEPS_DONE] = self.dp_ledger.as_list()
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message], *, rule: UpdateRule | None = None
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for reply in replies:  # rejected replies too: their steps were spent all the same
            if reply.has_content():
                client = self.client_of(reply.metadata.src_node_id)
                self.dp_ledger.record(client, metric_dict(reply.content))
        return super().aggregate_train(server_round, replies, rule=rule)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["sample_dp"] = self.dp_ledger.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.dp_ledger.load_state_dict(state.get("sample_dp", {}))


def with_max_epsilon(aggregate: MetricsAggregator | None = None) -> MetricsAggregator:
    """A train-metrics aggregator: Flower's weighted mean (or ``aggregate``) for everything but
    ``epsilon``, which is the maximum over the replies (each client has its own ε)."""
    inner = aggregate or aggregate_metricrecords

    def aggregate_with_max(records: list[RecordDict], weighting_key: str) -> MetricRecord:
        metrics = inner(records, weighting_key)
        values = [
            float(value)
            for content in records
            for record in content.metric_records.values()
            if isinstance(value := record.get(EPSILON), (int, float))
        ]
        if values:
            metrics[EPSILON] = max(values)
        return metrics

    return aggregate_with_max

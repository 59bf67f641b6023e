"""Adding behaviour to a fedskip strategy by wrapping it, as Flower's DP wrappers do.

A wrapper holds the strategy it wraps and forwards every call to it; a subclass overrides the
calls it changes (``configure_train`` to refuse a round or add config keys, ``aggregate_train``
to look at the replies or to hand the wrapped strategy an
:class:`~fedskip.fl.strategy.core.UpdateRule`, ``state_dict`` to add its own checkpoint state).
Wrappers nest; ``core`` is the layer-skipping strategy at the centre, whose round records,
client ids and global state every wrapper shares.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid

from fedskip.federation.round_types import RoundRecord
from fedskip.fl.strategy.core import LayerSkipStrategy, UpdateRule


class StrategyWrapper:
    """Forwards everything to ``strategy`` (a :class:`LayerSkipStrategy` or another wrapper)."""

    def __init__(self, strategy: LayerSkipStrategy | StrategyWrapper) -> None:
        self.strategy = strategy

    @property
    def core(self) -> LayerSkipStrategy:
        """The layer-skipping strategy at the centre of the wrappers."""
        return self.strategy.core

    @property
    def client_ids(self) -> dict[int, int]:
        return self.core.client_ids

    @property
    def rounds(self) -> dict[int, RoundRecord]:
        return self.core.rounds

    def identify_clients(self, grid: Grid) -> dict[int, int]:
        return self.strategy.identify_clients(grid)

    def record(self, server_round: int) -> RoundRecord:
        return self.strategy.record(server_round)

    def client_of(self, node_id: int) -> int:
        return self.strategy.client_of(node_id)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message], *, rule: UpdateRule | None = None
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        return self.strategy.aggregate_train(server_round, replies, rule=rule)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def state_dict(self) -> dict[str, Any]:
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state)

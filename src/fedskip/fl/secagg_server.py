"""Server side of SecAgg+ (see :mod:`fedskip.fl.secagg` for the protocol and what it protects):
the training exchange of a round, on the main path.

A SecAgg+ run is a normal fedskip run (:func:`fedskip.fl.server.run_server`): the same
strategy plans the round and samples clients by client id, the same wrappers add DP, the same
round records, checkpoints and summary are written. Only the training exchange differs:
:class:`SecAggExchange` takes the round's train instructions, runs Flower's
``SecAggPlusWorkflow`` (legacy path, the only one with SecAgg+ in flwr 1.42) for those nodes, and
hands the strategy one reply per client that finished the protocol — each holding the received
tensors plus the unmasked *mean* update (the server never sees one client's update) and that
client's clear-text metrics. A sampled client without a result gets an error reply, so the
strategy records it as rejected. Federated evaluation and client identification use plain
messages.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, RecordDict
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.constant import ErrorCode
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key
from flwr.serverapp import Grid

from fedskip.federation.validation import NUM_EXAMPLES
from fedskip.fl.messages import ARRAYS, CONFIG, METRICS, SERVER_ROUND, to_metric_record
from fedskip.fl.round_loop import ReplyCallback
from fedskip.fl.secagg import PAYLOAD_KEYS, TRAIN_KEYS

log = logging.getLogger(__name__)

UPDATE_RANGE = 1.0
"""Without ``dp=client``: SecAgg+ quantizes each weighted update entry within ±1.0 (a larger
change of one weight in one round is cut there)."""
QUANTIZATION_RANGE = 2**24
MODULUS_RANGE = 2**32
FIRST_MAX_WEIGHT = 10_000.0
"""SecAgg+'s bound on a client's weight (examples) before any ``num-examples`` was seen; later
rounds use the largest count seen (public: it travels in clear)."""
NO_RESULT = "no SecAgg+ result (the client dropped out, or the protocol halted)"

TrainKeys = Callable[[int], list[str]]


class SecAggExchange:
    """The training exchange of a round under SecAgg+ (module docstring); a
    :data:`fedskip.fl.round_loop.Exchange`.

    ``train_keys(node_id)``: the tensors that node trains this round, in a fixed order (the
    strategy's plan); the masked vector is their update Δ = trained − received.
    """

    def __init__(self, cfg: Any, *, train_keys: TrainKeys) -> None:
        self.cfg = cfg
        self.train_keys = train_keys
        client_dp = cfg.dp == "client"
        self.update_range = float(cfg.clip_norm) if client_dp else UPDATE_RANGE
        self.max_weight = 1.0 if client_dp else FIRST_MAX_WEIGHT

    def __call__(
        self, grid: Grid, messages: list[Message], timeout: float | None, report: ReplyCallback
    ) -> list[Message]:
        """Run SecAgg+ for ``messages`` (one round's train instructions); ``report(done, sent)``
        hears the progress."""
        instructions = {m.metadata.dst_node_id: m for m in messages}
        report(0, len(instructions))
        if not instructions:
            return []
        server_round = next(iter(instructions.values())).content.config_records[CONFIG][
            SERVER_ROUND
        ]
        if not isinstance(server_round, int):
            raise TypeError(f"train instruction without an integer {SERVER_ROUND!r}")
        legacy = _OneRound({n: self._fit_ins(n, m) for n, m in instructions.items()}, grid)
        self._workflow(timeout)(grid, _legacy_context(legacy, server_round))
        replies = [self._reply(instructions[n], res) for n, res in legacy.results.items()]
        replies += [
            Message(Error(code=ErrorCode.UNKNOWN, reason=NO_RESULT), reply_to=instructions[n])
            for n in instructions
            if n not in legacy.results
        ]
        if legacy.results and self.cfg.dp != "client":
            self.max_weight = float(max(max(r.num_examples for r in legacy.results.values()), 1))
        report(len(legacy.results), len(instructions))
        return replies

    def _workflow(self, timeout: float | None) -> SecAggPlusWorkflow:
        return SecAggPlusWorkflow(
            num_shares=self.cfg.secagg_shares,
            reconstruction_threshold=self.cfg.secagg_threshold,
            max_weight=self.max_weight,
            clipping_range=self.update_range,
            quantization_range=QUANTIZATION_RANGE,
            modulus_range=MODULUS_RANGE,
            timeout=timeout,
        )

    def _fit_ins(self, node: int, instruction: Message) -> FitIns:
        """The legacy form of a train instruction: the payload tensors in order, their names
        and the train keys in the config (lists as JSON text: legacy configs hold scalars)."""
        payload = instruction.content.array_records[ARRAYS]
        config: dict[str, Any] = {
            key: json.dumps(value) if isinstance(value, list) else value
            for key, value in instruction.content.config_records[CONFIG].items()
        }
        config[PAYLOAD_KEYS] = "\n".join(payload)
        config[TRAIN_KEYS] = "\n".join(self.train_keys(node))
        return FitIns(ndarrays_to_parameters([a.numpy() for a in payload.values()]), config)

    def _reply(self, instruction: Message, res: FitRes) -> Message:
        """What the strategy aggregates for one client: received + mean Δ, its metrics."""
        received = instruction.content.array_records[ARRAYS]
        keys = self.train_keys(instruction.metadata.dst_node_id)
        mean = parameters_to_ndarrays(res.parameters)
        arrays = ArrayRecord(
            {
                k: Array((received[k].numpy() + delta).astype(np.float32))
                for k, delta in zip(keys, mean, strict=True)
            }
        )
        metrics = to_metric_record({NUM_EXAMPLES: res.num_examples, **res.metrics})
        content = RecordDict({ARRAYS: arrays, METRICS: metrics})
        return Message(content, reply_to=instruction)


def _legacy_context(strategy: LegacyStrategy, server_round: int) -> LegacyContext:
    """A one-round LegacyContext for ``SecAggPlusWorkflow`` (the round it reads, no model:
    the tensors travel in the instructions)."""
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=1), strategy=strategy)
    legacy.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
        {Key.CURRENT_ROUND: server_round}
    )
    legacy.state.array_records[MAIN_PARAMS_RECORD] = ArrayRecord()
    return legacy


class _OneRound(LegacyStrategy):
    """The legacy strategy SecAgg+ drives for one round: hands out the prepared instructions
    and keeps what ``aggregate_fit`` receives (each result holds the unmasked mean)."""

    def __init__(self, fit_ins: dict[int, FitIns], grid: Grid) -> None:
        self.fit_ins = fit_ins
        self.proxies = {n: GridClientProxy(n, grid, run_id=0) for n in fit_ins}
        self.results: dict[int, FitRes] = {}

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return None

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        return [(self.proxies[n], ins) for n, ins in self.fit_ins.items()]

    def aggregate_fit(
        self, server_round: int, results: list[tuple[ClientProxy, FitRes]], failures: list[Any]
    ) -> tuple[Parameters | None, dict[str, Any]]:
        # (SecAgg+ lists a dropped client's error once per stage it missed: results count)
        self.results = {int(proxy.node_id): res for proxy, res in results}
        return None, {}

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        return []

    def aggregate_evaluate(
        self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]], failures: list[Any]
    ) -> tuple[float | None, dict[str, Any]]:
        return None, {}

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Any]] | None:
        return None

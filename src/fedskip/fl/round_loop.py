"""Flower's round loop (``Strategy.start``) for the fedskip strategies, resumable.

Same phases as :meth:`flwr.serverapp.strategy.Strategy.start` — train, federated evaluation,
server-side evaluation — but it can begin at any round (a resumed run continues after its
checkpoint), asks the clients for their ids first, and reports every round and phase to the
caller (records, checkpoints, live progress).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from fedskip.fl.rounds import RoundRecord

RoundCallback = Callable[[int, ArrayRecord, RoundRecord], None]
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]
PhaseCallback = Callable[[int, str], None]
ReplyCallback = Callable[[int, int], None]

PULL_INTERVAL_S = 1.0
"""Seconds between pulls for replies on a grid without its own ``pull_interval`` (the
Simulation Engine's in-memory grid has 0.1 s)."""


def scalars(metrics: MetricRecord) -> dict[str, float]:
    """The scalar entries of a MetricRecord as floats."""
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, list)}


def send_and_collect(
    grid: Grid,
    messages: Iterable[Message],
    *,
    timeout: float | None,
    on_reply: ReplyCallback | None = None,
) -> list[Message]:
    """``grid.send_and_receive`` that reports ``on_reply(replies so far, messages sent)`` as
    replies arrive (Flower's returns them all at once). Stops when every message has its reply
    or after ``timeout`` seconds (``None``: waits for all)."""
    pending = set(grid.push_messages(messages))
    total, replies = len(pending), []
    report = on_reply or (lambda done, sent: None)
    report(0, total)
    end = time.monotonic() + (timeout or 0.0)
    while pending:
        arrived = list(grid.pull_messages(pending))
        if arrived:
            replies.extend(arrived)
            pending.difference_update(m.metadata.reply_to_message_id for m in arrived)
            report(len(replies), total)
        if not pending or (timeout is not None and time.monotonic() >= end):
            break
        time.sleep(getattr(grid, "pull_interval", PULL_INTERVAL_S))
    return replies


class RoundLoop:
    """``start`` for a strategy providing Flower's configure/aggregate methods and fedskip's
    ``identify_clients`` / ``_record`` (see :class:`fedskip.fl.strategy.LayerSkipMixin`)."""

    timeout: float
    client_ids: dict[int, int]
    on_phase: PhaseCallback | None = None
    configure_train: Callable[[int, ArrayRecord, ConfigRecord, Grid], Iterable[Message]]
    aggregate_train: Callable[
        [int, Iterable[Message]], tuple[ArrayRecord | None, MetricRecord | None]
    ]
    configure_evaluate: Callable[[int, ArrayRecord, ConfigRecord, Grid], Iterable[Message]]
    aggregate_evaluate: Callable[[int, Iterable[Message]], MetricRecord | None]
    identify_clients: Callable[[Grid], Any]
    _record: Callable[[int], RoundRecord]

    def start(  # type: ignore[override]
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: EvaluateFn | None = None,
        *,
        start_round: int = 1,
        on_round_end: RoundCallback | None = None,
        on_phase: PhaseCallback | None = None,
    ) -> Result:
        """Rounds ``start_round..num_rounds``; ``on_round_end(round, global_arrays, record)``
        after each, ``on_phase(round, phase)`` when a phase begins and as client replies
        arrive (live progress: ``training: 3/4 clients done``)."""
        self.timeout = timeout
        self.on_phase = on_phase
        phase = on_phase or (lambda rnd, name: None)
        result = Result()
        result.arrays = arrays = initial_arrays
        if not self.client_ids:
            self.identify_clients(grid)
        for rnd in range(start_round, num_rounds + 1):
            began = time.perf_counter()
            arrays = self._train_round(grid, rnd, arrays, train_config or ConfigRecord(), result)
            self._client_evaluation(grid, rnd, arrays, evaluate_config or ConfigRecord(), result)
            phase(rnd, "evaluation on the global test set")
            record = self._record(rnd)
            if evaluate_fn is not None and (server_eval := evaluate_fn(rnd, arrays)) is not None:
                result.evaluate_metrics_serverapp[rnd] = server_eval
                record.server_eval = scalars(server_eval)
            record.seconds = time.perf_counter() - began
            if on_round_end is not None:
                on_round_end(rnd, arrays, record)
        return result

    def _train_round(
        self, grid: Grid, rnd: int, arrays: ArrayRecord, config: ConfigRecord, result: Result
    ) -> ArrayRecord:
        """One training round; returns the new global arrays (unchanged if the round failed)."""
        messages = self.configure_train(rnd, arrays, config, grid)
        replies = self._send(grid, messages, rnd, "training")
        new_arrays, train_metrics = self.aggregate_train(rnd, replies)
        if train_metrics is not None:
            result.train_metrics_clientapp[rnd] = train_metrics
        if new_arrays is None:
            return arrays
        result.arrays = new_arrays
        return new_arrays

    def _client_evaluation(
        self, grid: Grid, rnd: int, arrays: ArrayRecord, config: ConfigRecord, result: Result
    ) -> None:
        messages = list(self.configure_evaluate(rnd, arrays, config, grid))
        replies = self._send(grid, messages, rnd, "federated evaluation") if messages else []
        client_eval = self.aggregate_evaluate(rnd, replies)
        if client_eval is not None:
            result.evaluate_metrics_clientapp[rnd] = client_eval

    def _send(self, grid: Grid, messages: Iterable[Message], rnd: int, name: str) -> list[Message]:
        """Send a phase's messages; ``on_phase`` hears e.g. ``training: 2/4 clients done``."""
        on_phase = self.on_phase or (lambda rnd, name: None)

        def progress(done: int, sent: int) -> None:
            on_phase(rnd, f"{name}: {done}/{sent} clients done")

        return send_and_collect(grid, messages, timeout=self.timeout, on_reply=progress)

"""Flower's round loop (``Strategy.start``) as a plain object that drives any fedskip strategy.

Same phases as :meth:`flwr.serverapp.strategy.Strategy.start` — train, federated evaluation,
server-side evaluation — but it can begin at any round (a resumed run continues after its
checkpoint), asks the clients for their ids first, and reports every round and phase to the
caller (records, checkpoints, live progress). A round a strategy refuses for the privacy budget
(:class:`~fedskip.errors.PrivacyBudgetExceeded`, raised before anything is sent) ends the run
cleanly after the last completed round; :attr:`RoundLoop.stopped` says why. The training
exchange is pluggable: plain messages (:func:`send_and_collect`) or SecAgg+
(:class:`fedskip.fl.secagg_server.SecAggExchange`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result

from fedskip.errors import PrivacyBudgetExceeded
from fedskip.federation.round_types import RoundRecord
from fedskip.fl import stop
from fedskip.privacy.checks import warn_loudly

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
    or after ``timeout`` seconds (``None``: waits for all). Raises
    :class:`fedskip.fl.stop.RunStopped` while waiting if the driver was interrupted."""
    stop.check()
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
        stop.check()
    return replies


class FedskipStrategy(Protocol):
    """What the round loop needs of a strategy: Flower's configure/aggregate methods plus
    client identification and round records (:class:`fedskip.fl.strategy.core.LayerSkipStrategy`
    and every wrapper of it, :mod:`fedskip.fl.strategy.wrapper`)."""

    @property
    def client_ids(self) -> dict[int, int]: ...

    def identify_clients(self, grid: Grid) -> dict[int, int]: ...

    def record(self, server_round: int) -> RoundRecord: ...

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]: ...

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]: ...

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None: ...


Exchange = Callable[[Grid, list[Message], float | None, ReplyCallback], list[Message]]
"""Sends one phase's instructions, returns the replies: ``(grid, messages, timeout, on_reply)``
(:func:`plain_exchange`, or SecAgg+: :class:`fedskip.fl.secagg_server.SecAggExchange`)."""


def plain_exchange(
    grid: Grid, messages: list[Message], timeout: float | None, on_reply: ReplyCallback
) -> list[Message]:
    """The messages as they are, over the grid (:func:`send_and_collect`)."""
    return send_and_collect(grid, messages, timeout=timeout, on_reply=on_reply)


class RoundLoop:
    """Rounds of ``strategy`` over a grid; ``train_exchange`` carries the training phase."""

    def __init__(
        self, strategy: FedskipStrategy, *, train_exchange: Exchange = plain_exchange
    ) -> None:
        self.strategy = strategy
        self.train_exchange = train_exchange
        self.stopped = ""
        """Why the privacy budget ended the run early ("" when it did not)."""
        self.ended_at = 0
        """The round ``until`` ended the run after (0 when it did not)."""
        self._timeout: float | None = 3600.0
        self._on_phase: PhaseCallback = lambda rnd, name: None

    def start(
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
        until: Callable[[int], bool] | None = None,
    ) -> Result:
        """Rounds ``start_round..num_rounds``; ``on_round_end(round, global_arrays, record)``
        after each, ``on_phase(round, phase)`` when a phase begins and as client replies
        arrive (live progress: ``training: 3/4 clients done``). ``until(round)`` after
        ``on_round_end``: True ends the run there (a plateau on validation;
        :attr:`ended_at` records the round). ``result.arrays`` is the global state after the
        last completed round."""
        self._timeout = timeout
        self._on_phase = on_phase or (lambda rnd, name: None)
        result = Result()
        result.arrays = arrays = initial_arrays
        if not self.strategy.client_ids:
            self.strategy.identify_clients(grid)
        try:
            for rnd in range(start_round, num_rounds + 1):
                began = time.perf_counter()
                arrays = self._train_round(
                    grid, rnd, arrays, train_config or ConfigRecord(), result
                )
                self._client_evaluation(
                    grid, rnd, arrays, evaluate_config or ConfigRecord(), result
                )
                self._on_phase(rnd, "evaluation on the global test set")
                record = self.strategy.record(rnd)
                server_eval = evaluate_fn(rnd, arrays) if evaluate_fn is not None else None
                if server_eval is not None:
                    result.evaluate_metrics_serverapp[rnd] = server_eval
                    record.server_eval = scalars(server_eval)
                record.seconds = time.perf_counter() - began
                if on_round_end is not None:
                    on_round_end(rnd, arrays, record)
                if until is not None and until(rnd):
                    self.ended_at = rnd
                    break
        except PrivacyBudgetExceeded as exc:  # refused before the round sent anything
            self.stopped = str(exc)
            warn_loudly(f"run stopped: {exc}")
        result.arrays = arrays
        return result

    def _train_round(
        self, grid: Grid, rnd: int, arrays: ArrayRecord, config: ConfigRecord, result: Result
    ) -> ArrayRecord:
        """One training round; returns the new global arrays (unchanged if the round failed)."""
        messages = self.strategy.configure_train(rnd, arrays, config, grid)
        replies = self._send(self.train_exchange, grid, messages, rnd, "training")
        new_arrays, train_metrics = self.strategy.aggregate_train(rnd, replies)
        if train_metrics is not None:
            result.train_metrics_clientapp[rnd] = train_metrics
        return arrays if new_arrays is None else new_arrays

    def _client_evaluation(
        self, grid: Grid, rnd: int, arrays: ArrayRecord, config: ConfigRecord, result: Result
    ) -> None:
        messages = list(self.strategy.configure_evaluate(rnd, arrays, config, grid))
        replies = (
            self._send(plain_exchange, grid, messages, rnd, "federated evaluation")
            if messages
            else []
        )
        client_eval = self.strategy.aggregate_evaluate(rnd, replies)
        if client_eval is not None:
            result.evaluate_metrics_clientapp[rnd] = client_eval

    def _send(
        self, exchange: Exchange, grid: Grid, messages: Iterable[Message], rnd: int, name: str
    ) -> list[Message]:
        """Send a phase's messages; ``on_phase`` hears e.g. ``training: 2/4 clients done``."""

        def progress(done: int, sent: int) -> None:
            self._on_phase(rnd, f"{name}: {done}/{sent} clients done")

        return exchange(grid, list(messages), self._timeout, progress)

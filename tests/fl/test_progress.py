"""Live progress inside a round: replies counted as they arrive, on the phase line; tracked runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message, RecordDict

from fedskip.fl.round_loop import send_and_collect


class TrickleGrid:
    """Pushes 3 messages; each pull returns the replies listed next in ``batches``."""

    pull_interval = 0.0

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches
        self.pulled: list[set[str]] = []

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        self.messages = list(messages)
        return [f"m{i}" for i in range(len(self.messages))]

    def pull_messages(self, ids: Iterable[str]) -> list[Message]:
        self.pulled.append(set(ids))
        batch = self.batches.pop(0) if self.batches else []
        return [_reply_to(f"m{i}") for i in batch]


def _reply_to(message_id: str) -> Message:
    reply = Message(RecordDict(), dst_node_id=1, message_type="train")
    reply.metadata.__dict__["_reply_to_message_id"] = message_id
    return reply


def _messages(n: int) -> list[Message]:
    return [Message(RecordDict(), dst_node_id=i + 1, message_type="train") for i in range(n)]


def test_replies_are_reported_as_they_arrive() -> None:
    grid = TrickleGrid([[1], [], [0, 2]])
    seen: list[tuple[int, int]] = []
    replies = send_and_collect(
        grid, _messages(3), timeout=None, on_reply=lambda d, s: seen.append((d, s))
    )
    assert seen == [(0, 3), (1, 3), (3, 3)]
    assert [r.metadata.reply_to_message_id for r in replies] == ["m1", "m0", "m2"]
    assert grid.pulled == [{"m0", "m1", "m2"}, {"m0", "m2"}, {"m0", "m2"}]


def test_collection_stops_at_the_timeout_with_the_replies_so_far() -> None:
    grid = TrickleGrid([[2]])
    replies = send_and_collect(grid, _messages(3), timeout=0.0)
    assert [r.metadata.reply_to_message_id for r in replies] == ["m2"]
    assert len(grid.pulled) == 1


class FakeClock:
    """Seconds set by the test: ``clock.now = 90``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (42.4, "42 s"), (59.6, "1:00"), (125, "2:05"), (3725, "1:02:05"), (-1, "0 s")],
)
def test_clock_text(seconds: float, text: str) -> None:
    from fedskip.fl.progress import clock_text

    assert clock_text(seconds) == text


def test_the_estimate_is_the_mean_round_times_the_rounds_to_go() -> None:
    from fedskip.fl.progress import RunClock

    clock = FakeClock()
    timing = RunClock(clock)
    timing.begin(1)
    clock.now = 30.0
    assert (timing.in_round(), timing.per_round(), timing.left(4)) == (30.0, None, None)
    assert timing.round_text(4) == "30 s in this round; run 30 s"
    clock.now = 60.0
    timing.end(1, 60.0)
    assert timing.left(4) == 180.0  # 3 rounds of 60 s to go
    timing.begin(2)
    clock.now = 90.0
    assert timing.left(4) == 30.0 + 2 * 60.0  # the rest of this round, then two more
    assert timing.round_text(4) == "30 s in this round of ~1:00; run 1:30, ~2:30 left"
    timing.begin(2)  # a later phase of the same round: its clock runs on
    clock.now = 100.0
    timing.end(2, 40.0)
    assert (timing.per_round(), timing.left(4)) == (50.0, 100.0)
    timing.begin(3)
    clock.now = 170.0  # 70 s into a round that usually takes 50: at least the last one is left
    assert timing.left(4) == 50.0
    clock.now = 210.0
    timing.end(3, 110.0)
    timing.begin(4)
    clock.now = 240.0
    assert timing.left(4) == 70.0 - 30.0  # mean (60 + 40 + 110) / 3, less the 30 s run
    timing.end(4, 30.0)
    assert (timing.left(4), timing.run_text(4)) == (0.0, "run 4:00")


def test_a_resumed_run_estimates_from_the_rounds_before_it() -> None:
    from fedskip.fl.progress import RunClock

    clock = FakeClock()
    timing = RunClock(clock, done=[30.0, 50.0])
    timing.begin(3)
    clock.now = 10.0
    assert timing.left(4) == 30.0 + 40.0


def _row(server_round: int, seconds: float) -> Any:
    from fedskip.records.schema import MetricsRow

    return MetricsRow(
        round=server_round, train_loss=0.5, scores={"f1": 0.25}, seconds=seconds, replies_ok=2
    )


def test_the_console_shows_elapsed_time_and_the_estimate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Off a terminal (a deployment's streamed log, a pipe): one line per phase change, and
    each round's line ends with the run's time and the estimate."""
    from fedskip.fl.progress import RoundReporter

    clock = FakeClock()
    reporter = RoundReporter(quiet=False, primary="f1", clock=clock)
    reporter.start("fedskip: test run")
    reporter.phase(1, 3, "training: 0/2 clients done")
    clock.now = 45.0
    reporter.phase(1, 3, "training: 2/2 clients done")
    clock.now = 60.0
    reporter.round(_row(1, 60.0), 3)
    reporter.phase(2, 3, "training: 0/2 clients done")
    clock.now = 75.0
    reporter.phase(2, 3, "training: 1/2 clients done")
    reporter.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "fedskip: test run"
    assert lines[1:3] == [
        "round 1/3: training: 0/2 clients done… 0 s in this round; run 0 s",
        "round 1/3: training: 2/2 clients done… 45 s in this round; run 45 s",
    ]
    assert lines[3].endswith("60.0 s; run 1:00, ~2:00 left")
    assert lines[4:] == [
        "round 2/3: training: 0/2 clients done… 0 s in this round of ~1:00; run 1:00, ~2:00 left",
        "round 2/3: training: 1/2 clients done… 15 s in this round of ~1:00; run 1:15, ~1:45 left",
    ]


def test_quiet_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from fedskip.fl.progress import RoundReporter

    reporter = RoundReporter(quiet=True, primary="f1", clock=FakeClock())
    reporter.start("fedskip: test run")
    reporter.phase(1, 2, "training: 0/2 clients done")
    reporter.round(_row(1, 1.0), 2)
    reporter.close()
    assert capsys.readouterr().out == ""


@pytest.mark.slow
def test_a_federated_round_shows_clients_done_and_tracks_its_rows(
    make_cfg: Callable[..., Any],
    run_local: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from fedskip.fl.progress import RoundReporter

    phases: list[tuple[int, str]] = []
    monkeypatch.setattr(
        RoundReporter, "phase", lambda self, rnd, total, name: phases.append((rnd, name))
    )
    cfg = make_cfg(rounds=1, tracking="tensorboard")
    run_local(cfg)
    assert phases == [
        (1, "training: 0/3 clients done"),
        (1, "training: 3/3 clients done"),
        # evaluate once: the sites are scored from the server's global-test predictions
        (1, "evaluation on the global test set"),
    ]
    (row,) = [json.loads(x) for x in (Path(cfg.out) / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(Path(cfg.out) / "tensorboard"))
    events.Reload()
    tags = ("comm/up_MB", "eval/f1")
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in tags}
    assert logged == {
        "comm/up_MB": [(1, pytest.approx(row["bytes_up"] / 1e6))],
        "eval/f1": [(1, pytest.approx(row["f1"]))],
    }
    blocks = [t for t in events.Tags()["scalars"] if t.startswith("train/selected_blocks/")]
    assert blocks == [f"train/selected_blocks/{b}" for b in row["selected_layers"]]

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

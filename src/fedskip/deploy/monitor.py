"""Watching a running deployment: new log lines, completed rounds, training in progress."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LEVEL = re.compile(r"^(INFO|WARNING|ERROR|DEBUG)\s*:\s{2,}")


class LogTail:
    """Reads the lines appended to a log file since the last call (complete lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


def flower_log_line(line: str) -> str:
    """A streamed ServerApp log line without colour codes and Flower's ``INFO :`` prefix."""
    return _LEVEL.sub("", _ANSI.sub("", line)).rstrip()


def round_rows(out: Path) -> list[dict[str, Any]]:
    """The complete rows of ``out/metrics.jsonl`` that carry a ``round`` number."""
    path = out / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written right now
        if isinstance(row, dict) and isinstance(row.get("round"), int):
            rows.append(row)
    return rows


def completed_rounds(out: Path) -> int:
    """The last round recorded in ``out/metrics.jsonl`` (0 before the first round ends)."""
    return max((row["round"] for row in round_rows(out)), default=0)


def checkpoint_round(out: Path) -> int:
    """The round of the ServerApp's last complete checkpoint (``out/checkpoint/state.json``)."""
    try:
        state = json.loads((out / "checkpoint" / "state.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    value = state.get("round") if isinstance(state, dict) else None
    return value if isinstance(value, int) else 0


class TrainTasks:
    """Counts the train instructions of one run that a SuperNode received and answered.

    A site is in the middle of a training round exactly when it has received more train messages
    of the run than it has sent replies to. Flower 1.42 logs on the SuperNode a ``[RUN <id>]``
    line before each ``Receiving: train message`` / ``Sending: train message`` line; messages of
    other runs (e.g. one interrupted by a SuperLink crash) are not counted.
    """

    RECEIVED = "Receiving: train message"
    SENT = "Sending: train message"
    _RUN = re.compile(r"\[RUN (\d+)\]")

    def __init__(self, log_path: Path, run_id: int) -> None:
        self.tail = LogTail(log_path)
        self.run_id = run_id
        self.current: int | None = None
        self.received = 0
        self.sent = 0

    def in_progress(self) -> bool:
        for line in self.tail.read_lines():
            if match := self._RUN.search(line):
                self.current = int(match.group(1))
            elif self.current == self.run_id:
                self.received += self.RECEIVED in line
                self.sent += self.SENT in line
        return self.received > self.sent

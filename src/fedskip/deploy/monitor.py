"""Watching a running deployment: new log lines, completed rounds, ClientApp activity."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psutil

from fedskip.deploy.processes import ManagedProcess

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


def running_clientapps(managed: ManagedProcess) -> int:
    """How many ``flwr-clientapp`` processes (a task being worked on) a SuperNode runs now."""
    count = 0
    for proc in managed.refresh():
        try:
            if any("flwr-clientapp" in part for part in proc.cmdline()[:3]):
                count += proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
    return count

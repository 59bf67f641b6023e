"""Peak memory of every process tree of a deployment, measured while it runs.

A deployment's memory is spread over process trees: the coordinator's (``flower-superlink``,
its ``flower-superexec`` and the ``flwr-serverapp`` it starts) and one per site
(``flower-supernode``, its ``flower-superexec`` and one ``flwr-clientapp`` per task). Two
figures are kept, both in bytes:

* per process, its **peak RSS** as the kernel counts it (``VmHWM`` in ``/proc/<pid>/status``, a
  high-water mark, so no short peak is missed), last read at most ``interval`` seconds before
  the process exits (growth in that last interval is missed);
* per tree, the **peak of the tree's summed PSS and RSS** at one sample time (what the tree
  held at once; PSS splits shared library pages between the processes mapping them, so the
  trees' PSS add up to the machine's use). Peaks shorter than ``interval`` can be missed.

The sum of a tree's per-process peaks bounds its simultaneous peak from above (its processes
need not peak together). Sampling reads each process's page tables (tens of milliseconds for a
process of a few GB), so the default interval is half a second.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fedskip.deploy.processes import ManagedProcess

DEFAULT_INTERVAL_S = 0.5
GIB = 1024**3


@dataclass
class ProcessPeak:
    """One process of a tree: its name and the largest figures seen (bytes)."""

    pid: int
    name: str
    peak_rss: int = 0
    """The kernel's resident-set high-water mark (``VmHWM``) as last read."""
    peak_pss: int = 0
    """The largest proportional set size sampled."""


@dataclass
class TreePeak:
    """One top-level process and all its descendants."""

    name: str
    peak_rss: int = 0
    peak_pss: int = 0
    processes: dict[tuple[int, float], ProcessPeak] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        procs = sorted(self.processes.values(), key=lambda p: -p.peak_rss)
        return {
            "peak_pss_bytes": self.peak_pss,
            "peak_rss_bytes": self.peak_rss,
            "sum_of_process_peak_rss_bytes": sum(p.peak_rss for p in procs),
            "processes": [
                {
                    "pid": p.pid,
                    "name": p.name,
                    "peak_rss_bytes": p.peak_rss,
                    "peak_pss_bytes": p.peak_pss,
                }
                for p in procs
            ],
        }


def read_hwm(pid: int) -> int:
    """The kernel's peak resident set of ``pid`` in bytes (``VmHWM``); 0 where unavailable."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class MemoryMonitor:
    """Samples the trees of ``processes()`` (name → :class:`ManagedProcess`) in a thread.

    ``processes`` is called at every sample, so trees started later (a site restarted, a
    SuperLink brought back by a drill) are followed too; a tree keeps its name across restarts.
    """

    def __init__(
        self,
        processes: Callable[[], dict[str, ManagedProcess]],
        *,
        interval: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.processes = processes
        self.interval = interval
        self.trees: dict[str, TreePeak] = {}
        self.peak_total_pss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Read every live process of every tree once."""
        total_pss = 0
        for name, managed in list(self.processes().items()):
            tree = self.trees.setdefault(name, TreePeak(name))
            pss = rss = 0
            for proc in _tree_members(managed):
                try:
                    key = (proc.pid, proc.create_time())
                    info = proc.memory_full_info()
                    label = process_label(proc.cmdline()) or proc.name()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                peak = tree.processes.setdefault(key, ProcessPeak(proc.pid, label))
                now_pss = int(getattr(info, "pss", info.rss))
                peak.peak_pss = max(peak.peak_pss, now_pss)
                peak.peak_rss = max(peak.peak_rss, read_hwm(proc.pid), int(info.rss))
                pss += now_pss
                rss += int(info.rss)
            tree.peak_pss = max(tree.peak_pss, pss)
            tree.peak_rss = max(tree.peak_rss, rss)
            total_pss += pss
        self.peak_total_pss = max(self.peak_total_pss, total_pss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memory-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling (waits for the thread's current sample) after one last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.sample()

    def record(self) -> dict[str, Any]:
        """What ``processes.json`` holds: the peaks per tree and process, in bytes."""
        return {
            "interval_s": self.interval,
            "peak_total_pss_bytes": self.peak_total_pss,
            "trees": {name: tree.record() for name, tree in self.trees.items()},
            "method": (
                "per process: peak RSS = the kernel's VmHWM, last read <= interval_s before "
                "exit; per tree: the largest summed PSS / RSS of its processes at one sample"
            ),
        }

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.record(), indent=2) + "\n", encoding="utf-8")
        return path

    def summary_lines(self) -> list[str]:
        """One line per tree: its peak PSS and its largest process (GiB)."""
        lines = []
        for name, tree in self.trees.items():
            if not tree.processes:
                continue
            top = max(tree.processes.values(), key=lambda p: p.peak_rss)
            lines.append(
                f"{name}: peak {tree.peak_pss / GIB:.2f} GiB PSS ({tree.peak_rss / GIB:.2f} GiB "
                f"RSS) over {len(tree.processes)} processes; largest {top.name} "
                f"{top.peak_rss / GIB:.2f} GiB"
            )
        return lines


def process_label(argv: list[str]) -> str:
    """The program a command line runs: ``python /x/bin/flwr-clientapp ...`` → flwr-clientapp."""
    names = [Path(arg).name for arg in argv[:2]]
    if len(names) == 2 and names[0].startswith("python"):
        return names[1]
    return names[0] if names else ""


def _tree_members(managed: ManagedProcess) -> list[psutil.Process]:
    """The top process (while alive) and every descendant seen, current ones included."""
    members: list[psutil.Process] = []
    if managed.alive():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            top = psutil.Process(managed.pid)
            members.append(top)
            members.extend(top.children(recursive=True))
    known = {p.pid for p in members}
    members.extend(p for p in list(managed.seen.values()) if p.pid not in known)
    return members

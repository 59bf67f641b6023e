"""Shared helpers of the performance benchmarks: fresh worker processes, memory high-water
marks, and Markdown output.

Peak memory on CPU is measured per process, never with ``tracemalloc`` (it sees only Python
allocations, not torch's tensors):

* one process: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` — the resident-set high-water mark
  the kernel kept for the process — read at the end of a *fresh* worker process started for that
  single measurement, so one measurement's peak never leaks into the next;
* a process tree (Flower's simulation runs Ray workers outside the driver): a sampler thread that
  sums the proportional set size (PSS, Linux; shared library pages split between the processes
  that map them) of the driver and all its descendants every ``interval`` seconds and keeps the
  maximum. Peaks shorter than the interval can be missed.

On CUDA the figure is ``torch.cuda.max_memory_allocated()`` (tensors only, no allocator cache).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parent.parent


def peak_rss_bytes() -> int:
    """This process's resident-set high-water mark (bytes; ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def current_rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def run_worker(script: Path, args: Sequence[str], *, env: dict[str, str] | None = None) -> Any:
    """Run ``python script --worker args...`` in a fresh process; its last stdout line is JSON."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class TreeMemorySampler:
    """Peak total PSS (and RSS) of this process and all its descendants, sampled in a thread;
    also the CPU time the tree used (:attr:`cpu_seconds`). ``memory=False`` samples CPU time
    only: reading a process's PSS walks its page tables (tens of milliseconds for a 1.5 GB
    worker), so a 0.25 s memory sampler over a Ray tree costs a sizeable share of a core —
    more on the side with more processes, which biases a timing comparison."""

    def __init__(self, interval: float = 0.25, *, memory: bool = True) -> None:
        import psutil

        self._root = psutil.Process()
        self.interval = interval
        self.memory = memory
        self.peak_pss = 0
        self.peak_rss = 0
        self.peak_processes = 0
        self._cpu: dict[tuple[int, float], float] = {}  # (pid, start time) -> user + system s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        pss = rss = count = 0
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                times = proc.cpu_times()
                self._cpu[(proc.pid, proc.create_time())] = times.user + times.system
                if not self.memory:
                    continue
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            pss += int(getattr(info, "pss", info.rss))
            rss += int(info.rss)
            count += 1
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, count)

    @property
    def cpu_seconds(self) -> float:
        """Core-seconds (user + system) used by the tree, as last sampled per process: a
        process's time after its last sample (at most ``interval``) is missed."""
        return sum(self._cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n", "utf-8")


def command_line() -> str:
    """How this benchmark was invoked, for the record."""
    return "python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])


def publish(rows: Sequence[dict[str, Any]], results: Any, json_path: str | None) -> None:
    """Print the command and the table (as pasted into BENCHMARKS.md); save the raw results."""
    print(f"`{command_line()}`\n")
    print(markdown(rows, list(rows[0])))
    write_json(json_path, {"command": command_line(), "results": results})


def layerskip_config(args: Any, out: str, **keys: Any) -> Any:
    """The benchmarks' layer-skipping run config from their shared arguments (``--model``,
    ``--layers``, ``--rounds``, ``--synth-docs``, ``--max-length``, ``--batch-size``; windows
    overlap by a quarter), without federated evaluation, quiet, in ``out``; ``keys``: more
    config keys in kebab case."""
    from fedskip.config import Config

    return Config.from_mapping(
        {
            "model": args.model,
            "method": "layerskip",
            "layers": args.layers,
            "rounds": args.rounds,
            "synth-docs": args.synth_docs,
            "max-length": args.max_length,
            "stride": args.max_length // 4,
            "batch-size": args.batch_size,
            "eval-clients": False,
            "quiet": True,
            "out": out,
            **keys,
        }
    )

"""One simulated federated round (`fedskip run` on the Simulation Engine): wall time, peak host
memory of the whole process tree (PSS, see ``common.py``) and, on a GPU, the peak GPU memory of
all processes (``nvidia-smi`` sampled every 0.5 s; short peaks can be missed).

    python benchmarks/fl_round.py --out runs/gpu-check/fl --json fl_round.json -- \\
        model=llama-3.2-1b model-init=random dtype=bf16 device=cuda layers=8 synth-sites=2

Everything after ``--`` is passed to ``fedskip run --set`` (one round, quiet and ``out`` are
added). The run's ``summary.json`` fields that say what ran are copied into the result.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, TreeMemorySampler, write_json

MIB = 2**20


class GpuMemorySampler:
    """Peak ``memory.used`` (MiB, all processes) over every GPU nvidia-smi lists; 0 without it."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peak_mib = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = shutil.which("nvidia-smi") is not None

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        try:
            out = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout
            self.peak_mib = max([self.peak_mib, *(int(x) for x in out.split() if x.isdigit())])
        except (OSError, subprocess.SubprocessError):
            pass

    def _run(self) -> None:
        while self.available and not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> GpuMemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the run directory")
    parser.add_argument("--json", default=None, help="write the result here")
    parser.add_argument("sets", nargs="*", help="config key=value pairs for fedskip run")
    args = parser.parse_args()
    command = [sys.executable, "-m", "fedskip.cli", "run", "--quiet", "--set", "rounds=1"]
    command += [*args.sets, f"out={args.out}"]
    began = time.perf_counter()
    with TreeMemorySampler(interval=0.5) as host, GpuMemorySampler() as gpu:
        proc = subprocess.run(command, cwd=ROOT, check=False)
    seconds = time.perf_counter() - began
    summary_path = Path(args.out) / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    keep = ("model", "model_init", "rounds_completed", "bytes", "parameters", "reduction")
    result: dict[str, Any] = {
        "command": " ".join(command[2:]),
        "rc": proc.returncode,
        "wall_s": round(seconds, 1),
        "peak_host_pss_mib": round(host.peak_pss / MIB),
        "peak_processes": host.peak_processes,
        "peak_gpu_mib": gpu.peak_mib if gpu.available else None,
        **{k: summary[k] for k in keep if k in summary},
    }
    print(json.dumps(result, indent=2))
    write_json(args.json, result)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())

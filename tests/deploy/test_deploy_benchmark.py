"""``benchmarks/deploy_1b.py`` at llama-tiny size: one round through a real TLS deployment with
the wire relay and the memory monitor, the row the 1B runs will print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_deploy_benchmark_row(tmp_path: Path) -> None:
    rows_path = tmp_path / "rows.json"
    env = {**os.environ, "FEDSKIP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "benchmarks" / "deploy_1b.py"), "--model", "llama-tiny"]
    command += ["--layers", "1", "--notes", "6", "--max-length", "32", "--out", str(tmp_path)]
    done = subprocess.run(
        [*command, "--json", str(rows_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RANDOM WEIGHTS" in done.stdout
    (row,) = json.loads(rows_path.read_text())["rows"]
    assert (row["k"], row["dtype"], row["wire"], row["rc"]) == (1, "fp32", "none", 0)
    assert (row["replies_ok"], row["replies_rejected"]) == (2, 0)  # both sites aggregated
    # llama-tiny, top block + final norm + head: 37,251 values x 4 bytes x 2 sites x 2 ways
    assert row["analytic_bytes"] == 37251 * 4 * 2 * 2
    # the messages carry the same values plus Flower's per-tensor npy headers and names
    assert row["analytic_bytes"] < row["message_bytes"] < 1.03 * row["analytic_bytes"]
    # the wire adds TLS, HTTP, registration, heartbeats and polling to the messages
    assert row["tcp_bytes"] > row["message_bytes"]
    assert row["tcp/analytic"] > row["tls-content/analytic"] > row["message/analytic"]
    for tree in ("coordinator", "site-1", "site-2"):
        assert row[f"{tree} PSS GiB"] > 0
    assert row["coordinator largest"].startswith("flwr-serverapp ")
    assert row["site-1 largest"].startswith("flwr-clientapp ")
    processes = json.loads((tmp_path / "k1-fp32" / "processes.json").read_text())
    names = {p["name"] for p in processes["trees"]["superlink"]["processes"]}
    assert {"flower-superlink", "flower-superexec", "flwr-serverapp"} <= names
    # the benchmark's SuperLink keeps its state in memory (--superlink-state memory): no SQLite
    assert not (tmp_path / "k1-fp32" / "superlink" / "state.db").exists()

"""`fedskip run` killed with SIGKILL (no handler, no cleanup) mid-run: the cached hidden states
it leaves are only in its run directory, owner-only, and `--resume` removes them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fedskip.train.activation_dir import ACTIVATION_DIR
from tests.fl.test_run_cli import TINY


def _activation_files(root: Path) -> list[Path]:
    """Files that can hold cached hidden states (entries are .npy + .npz pairs)."""
    return sorted(p for p in root.rglob("*") if p.suffix in (".npy", ".npz"))


def _fedskip(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedskip.cli", "run", "--quiet", *args]


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the run and every process it started (by pid), as the OOM killer would."""
    import psutil

    family = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    for child in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGKILL)
    psutil.wait_procs(family, timeout=60)


@pytest.mark.slow
def test_sigkill_leaves_activations_only_in_the_run_dir_and_resume_removes_them(
    sites: Path, tmp_path: Path
) -> None:
    import fedskip

    out = tmp_path / "run"
    system_tmp = tmp_path / "system-tmp"  # the run's TMPDIR: the old cache's place
    system_tmp.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(fedskip.__file__).parents[1]),
        "HF_HUB_OFFLINE": "1",
        "TMPDIR": str(system_tmp),
        "RAY_TMPDIR": tempfile.gettempdir(),  # Ray's sockets need a short path
    }
    cmd = _fedskip("--set", f"data={sites}", f"out={out}", "rounds=200", *TINY)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 300
        while not (metrics.is_file() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no round finished in 300 s"
            time.sleep(0.5)
        cache = out / ACTIVATION_DIR
        left = _activation_files(cache)
        assert left, "the run cached nothing on disk: the test would prove nothing"
        _kill_tree(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in _activation_files(cache)} == {0o600}
    assert _activation_files(system_tmp) == []
    assert not list(system_tmp.rglob("fedskip-activations-*"))
    done = json.loads((out / "checkpoint" / "state.json").read_text())["round"]
    resumed = subprocess.run(
        _fedskip("--resume", str(out), "--set", f"rounds={done + 1}"),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert not (out / ACTIVATION_DIR).exists()
    assert not list(out.rglob("*.npy"))  # entries are .npy + .npz; checkpoints are .npz only
    assert _activation_files(system_tmp) == []

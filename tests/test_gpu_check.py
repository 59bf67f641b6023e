"""``benchmarks/gpu_check.sh``'s dry run: the same three stages with llama-tiny on the CPU
(``GPU_CHECK_DRY_RUN=1``), so the script a GPU session runs is known to work end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check"
    env = {**os.environ, "GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_OUT": str(out)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stage in ("step_time", "activation_cache", "fl_round"):
        assert f"== {stage}: ok" in proc.stdout, proc.stdout
    steps = json.loads((out / "step_time.json").read_text())["results"]
    assert [r["variant"] for r in steps] == ["full", "1", "2"]
    assert all(r["step_s"] > 0 and r["peak_rss"] > 0 for r in steps)
    cache = json.loads((out / "activation_cache.json").read_text())["results"]["median"]
    assert set(cache) == {"full", "1 off", "1 auto", "2 off", "2 auto"}
    assert cache["1 auto"]["cache_mb"] > 0 == cache["1 off"]["cache_mb"]
    fl = json.loads((out / "fl_round.json").read_text())
    assert (fl["rc"], fl["rounds_completed"], fl["model_init"]) == (0, 1, "random")
    assert fl["bytes"]["up"] > 0 and fl["peak_host_pss_mib"] > 0
    report = (out / "report.md").read_text()
    assert "random weights (NOT PRETRAINED)" in report and "| k=1 cache auto |" in report

"""Every method's ``summary.json`` carries ``final_metric`` and ``best_metric`` with the same
meaning (:mod:`fedskip.finish`): the reported model's test metric, and the best step's."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedskip.config import Config


def _curve(out: Path, method: str) -> list[float]:
    """The primary test metric per round/epoch read back from metrics.jsonl (local-only: the
    mean over the site models per epoch)."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if method == "centralized":
        return [r["test"]["f1"] for r in rows]
    if method == "local":
        epochs = sorted({r["epoch"] for r in rows})
        return [
            sum(r["f1"] for r in rows if r["epoch"] == e) / sum(r["epoch"] == e for r in rows)
            for e in epochs
        ]
    return [r["f1"] for r in rows]


def test_every_method_writes_the_same_headline(
    make_cfg: Callable[..., Config], run_local: Any, tmp_path: Path
) -> None:
    from fedskip.runs.centralized import run_centralized
    from fedskip.runs.local import run_local as run_local_only

    runs = {
        "centralized": lambda cfg: run_centralized(cfg),
        "local": lambda cfg: run_local_only(cfg),
        "layerskip": lambda cfg: run_local(cfg)[0],
    }
    for method, run in runs.items():
        out = tmp_path / method
        cfg = make_cfg(method=method, epochs=2, rounds=2, out=str(out))
        returned = run(cfg)
        summary = json.loads((out / "summary.json").read_text())
        assert returned["final_metric"] == summary["final_metric"]
        curve = _curve(out, method)
        assert len(curve) == 2
        best = max(curve)
        assert summary["final_metric"] == curve[-1], method
        assert summary["best_metric"] == best, method
        assert summary["best_round"] == curve.index(best) + 1, method
        assert summary["final_metric_source"] == "global-test", method
        assert "mean_metric" not in summary

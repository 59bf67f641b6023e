"""Every training command leaves its run's report: ``leave_report`` and ``bench``'s trainer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedskip.commands.common import leave_report
from fedskip.config import Config
from fedskip.records.schema import RunSummary
from tests.bench.rundirs import federated_run


def test_a_folder_without_a_run_gets_no_report(tmp_path: Path) -> None:
    assert leave_report(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_each_bench_config_leaves_its_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fedskip bench`` trains each config with :func:`train_and_report` (the training
    replaced by the records of a two-round run)."""
    import fedskip.bench.runner
    from fedskip.commands.bench import train_and_report

    out = tmp_path / "runs" / "ner-layerskip"

    def train(cfg: Config) -> RunSummary:
        federated_run(out, method="layerskip", scores=[0.25, 0.5], bytes_per_round=1000)
        return RunSummary(json.loads((out / "summary.json").read_text()), out=str(out))

    monkeypatch.setattr(fedskip.bench.runner, "train_one", train)
    summary = train_and_report(Config(out=str(out)))
    assert summary["final_metric"] == 0.5
    report = (out / "report.md").read_text()
    assert "| `ner-layerskip` | layerskip | ner | 2 | natural | 0.500 | 0.500 |" in report
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "ner-metric-vs-mb.png",
        "ner-metric-vs-round.png",
    ]

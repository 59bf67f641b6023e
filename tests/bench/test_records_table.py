"""Run-dir records and the results table: exact values from hand-made run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from fedskip.bench.records import load_run
from fedskip.bench.table import build_rows, markdown_table, write_csv
from fedskip.errors import ConfigError
from tests.bench.rundirs import centralized_run, federated_run, local_run


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return {
        "central": centralized_run(tmp_path / "c", scores=[0.5, 0.8, 0.9]),
        "fedavg": federated_run(
            tmp_path / "f", method="fedavg", scores=[0.4, 0.7, 0.85], bytes_per_round=8000
        ),
        "skip": federated_run(
            tmp_path / "s", method="layerskip", scores=[0.3, 0.88, 0.86], bytes_per_round=2000
        ),
    }


def test_centralized_record(runs: dict[str, Path]) -> None:
    record = load_run(runs["central"])
    assert record.method == "centralized" and record.metric_name == "f1"
    assert [p.metric for p in record.points] == [0.5, 0.8, 0.9]
    assert [p.seconds for p in record.points] == [3.0, 6.0, 9.0]
    assert record.final == 0.9 and record.best == 0.9
    assert record.total_bytes == 0 and record.rounds == 3
    assert record.rounds_to_fraction(0.95) == 3  # 0.8 < 0.855 <= 0.9


def test_federated_record(runs: dict[str, Path]) -> None:
    record = load_run(runs["skip"])
    assert record.method == "layerskip"
    # the top-level global-test f1, not the clients' evaluation (score - 0.05)
    assert [p.metric for p in record.points] == [0.3, 0.88, 0.86]
    assert [p.cumulative_bytes for p in record.points] == [4000, 8000, 12000]
    assert record.final == 0.86 and record.best == 0.88
    assert record.total_bytes == 12000
    assert record.rounds_to_fraction(0.95) == 2
    # summarize(): 2 clients x 3 rounds x 2 directions x 4,000 bytes of full FedAvg
    assert record.reported_reduction == pytest.approx(1 - 12000 / 48000)


def test_local_record_averages_clients(tmp_path: Path) -> None:
    record = load_run(local_run(tmp_path / "l", scores=[[0.2, 0.6], [0.4, 0.5]]))
    assert record.per_client
    assert [(p.step, p.metric) for p in record.points] == [(1, pytest.approx(0.3)), (2, 0.55)]
    assert record.final == pytest.approx(0.55)  # mean of the clients' final models
    assert record.best == pytest.approx(0.55)  # best epoch of the mean, not the best client
    assert record.total_bytes == 0 and record.seconds == 7.0


def test_rows_gap_and_reduction(runs: dict[str, Path], tmp_path: Path) -> None:
    records = [load_run(runs[k]) for k in ("central", "fedavg", "skip")]
    rows = {r.name: r for r in build_rows(records)}
    skip, fedavg, central = rows["s"], rows["f"], rows["c"]
    assert skip.gap_points == pytest.approx(-4.0)  # 0.86 - 0.90
    assert fedavg.gap_points == pytest.approx(-5.0)
    assert central.gap_points == pytest.approx(0.0)
    assert skip.reduction == pytest.approx(0.75)  # 12,000 vs 48,000 bytes
    assert fedavg.reduction == pytest.approx(0.0)
    assert central.reduction is None and central.mb == 0.0
    assert skip.mb == pytest.approx(0.012)
    assert skip.layers == 2 and central.layers == 6

    path = write_csv(list(rows.values()), tmp_path / "r.csv")
    with path.open() as fh:
        table = {row["name"]: row for row in csv.DictReader(fh)}
    assert float(table["s"]["reduction"]) == pytest.approx(0.75)
    assert table["c"]["reduction"] == ""
    text = markdown_table(list(rows.values()))
    assert "| `s` | layerskip | 0.860 | 0.880 | -4.0 | 0.012 | 75.0% | 2 | 6 |" in text


def test_fedavg_and_lora_rows_count_every_block(tmp_path: Path) -> None:
    """LoRA logs no block selection (its adapters sit in every block): its k is all 6 blocks,
    as FedAvg's, not the unused ``layers`` setting."""
    lora = federated_run(
        tmp_path / "lora", method="lora", scores=[0.5], bytes_per_round=100, selected=[], layers=2
    )
    fedavg = federated_run(
        tmp_path / "fedavg", method="fedavg", scores=[0.5], bytes_per_round=100, selected=[]
    )
    rows = build_rows([load_run(lora), load_run(fedavg)])
    assert [r.layers for r in rows] == [6, 6]


def test_torn_last_line_is_skipped(runs: dict[str, Path]) -> None:
    path = runs["skip"] / "metrics.jsonl"
    path.write_text(path.read_text() + '{"round": 4, "f1"', "utf-8")
    assert load_run(runs["skip"]).rounds == 3


def test_bad_json_in_the_middle_names_the_line(runs: dict[str, Path]) -> None:
    path = runs["skip"] / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = "{oops"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    with pytest.raises(ConfigError, match=r"metrics.jsonl:2: invalid JSON"):
        load_run(runs["skip"])


def test_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run directory not found"):
        load_run(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"not a run directory \(no config.json\)"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_run(tmp_path)


def test_unfinished_run(runs: dict[str, Path]) -> None:
    (runs["skip"] / "summary.json").unlink()
    record = load_run(runs["skip"])
    assert not record.complete
    assert record.final == 0.86 and record.total_bytes == 12000
    assert json.loads((runs["skip"] / "config.json").read_text())["method"] == "layerskip"

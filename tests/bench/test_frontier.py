"""The frontier suite and group (k x LoRA rank x compression), its table and plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fedskip.bench.frontier import frontier_markdown, main, meets_target, plot_frontier
from fedskip.bench.groups import POINTS, FrontierPoint, frontier_configs
from fedskip.bench.runner import SUITE_FILE, plan_suite
from fedskip.bench.suites import FRONTIER
from fedskip.bench.table import ResultRow
from fedskip.config import Config
from tests.bench.rundirs import centralized_run, federated_run


def test_frontier_suite_expands_references_strategies_and_points() -> None:
    plan = plan_suite("frontier")
    names = [c.name for c in plan.configs]
    assert names[:5] == [
        "ner-centralized",
        "ner-fedavg",
        "ner-layerskip",
        "ner-layerskip-importance",
        "ner-layerskip-rotating",
    ]
    assert names[5:] == [f"ner-layerskip-{p.variant}" for p in POINTS]
    by_name = {c.name: c for c in plan.configs}
    lora = by_name["ner-layerskip-k2-r8fa-int8"]
    assert lora.groups == ["frontier"]
    assert lora.settings == {
        "task": "ner",
        "method": "layerskip",
        "layers": 2,
        "layer-strategy": "top",
        "lora-rank": 8,
        "lora-freeze-a": True,
        "compression": "int8",
        "lr": 0.002,
    }
    assert by_name["ner-layerskip-k1-none"].settings["lora-rank"] == 0
    assert "lr" not in by_name["ner-layerskip-k2-int8"].settings  # the suite's lr (5e-4)


def test_the_frontier_suite_group_and_its_small_models() -> None:
    assert [c.name for c in plan_suite("smoke").configs if "frontier" in c.groups] == []
    small = [c.name for c in frontier_configs(FRONTIER, Config(), 2)]
    assert "ner-layerskip-k6-r8-int8" not in small
    assert len(small) == len([p for p in POINTS if p.k <= 2]) == len(POINTS) - 3


def test_variant_names() -> None:
    assert FrontierPoint(1).variant == "k1-none"
    assert FrontierPoint(2, lora_rank=16, compression="fp16").variant == "k2-r16-fp16"
    point = FrontierPoint(2, lora_rank=8, compression="int8", local_epochs=4)
    assert point.variant == "k2-r8-int8-le4" and point.settings(6)["local-epochs"] == 4


def _row(name: str, method: str, final: float, mb: float, **fields: object) -> ResultRow:
    row = ResultRow(
        name=name, groups="", task="ner", method=method, metric="f1", status="done", **fields
    )
    row.final, row.mb, row.layers = final, mb, 2
    return row


def test_target_and_table_cells() -> None:
    hit = _row(
        "ner-layerskip-k2-r8-int8",
        "layerskip",
        0.795,
        0.8,
        lora_rank=8,
        compression="int8",
        local_epochs=4,
    )
    hit.reduction, hit.gap_points = 0.996, -0.5
    near = _row("ner-layerskip-k2-int8", "layerskip", 0.81, 40.0, compression="int8")
    near.reduction, near.gap_points = 0.98, +1.0
    assert meets_target(hit) and not meets_target(near)
    lines = frontier_markdown([hit, near]).splitlines()
    assert lines[2] == (
        "| `ner-layerskip-k2-r8-int8` | k=2, LoRA r=8, int8, 4 local epochs | 0.795 | 0.800 | 99.6% "
        "| -0.5 | yes |"
    )
    assert lines[3] == "| `ner-layerskip-k2-int8` | k=2, int8 | 0.810 | 40.0 | 98.0% | +1.0 |  |"


def test_write_frontier_from_run_directories(tmp_path: Path) -> None:
    plan = plan_suite("frontier")
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan.manifest()), "utf-8")
    runs = tmp_path / "runs"
    centralized_run(runs / "ner-centralized", scores=[0.5, 0.8])
    federated_run(runs / "ner-fedavg", method="fedavg", scores=[0.6, 0.81], bytes_per_round=10**6)
    federated_run(
        runs / "ner-layerskip", method="layerskip", scores=[0.6, 0.79], bytes_per_round=150_000
    )
    federated_run(
        runs / "ner-layerskip-k2-r8-int8",
        method="layerskip",
        scores=[0.4, 0.795],
        bytes_per_round=4_000,
        **{"lora-rank": 8, "compression": "int8"},
    )
    assert main([str(tmp_path), str(tmp_path / "docs")]) == 0
    text = (tmp_path / "docs" / "frontier.md").read_text("utf-8")
    # 2 rounds x (down + up): FedAvg 4 MB, layer skipping 0.6 MB, LoRA + int8 0.016 MB
    assert (
        "| `ner-layerskip-k2-r8-int8` | k=2, LoRA r=8, int8 | 0.795 | 0.016 | 99.6% | -0.5 | yes |"
        in text
    )
    assert "| `ner-layerskip` | k=2, auto | 0.790 | 0.600 | 85.0% | -1.0 |  |" in text
    assert "| `ner-fedavg` | full-model FedAvg, auto | 0.810 | 4.0 | 0.0% | +1.0 |  |" in text
    with (tmp_path / "docs" / "frontier.csv").open() as fh:
        assert [r["name"] for r in csv.DictReader(fh)] == [
            "ner-centralized",
            "ner-layerskip-k2-r8-int8",
            "ner-layerskip",
            "ner-fedavg",
        ]
    assert (tmp_path / "docs" / "frontier.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_needs_a_run_that_moved_bytes(tmp_path: Path) -> None:
    assert (
        plot_frontier([_row("ner-centralized", "centralized", 0.8, 0.0)], tmp_path / "x.png")
        is None
    )


def test_main_on_a_folder_without_a_suite(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"fedskip: error: {tmp_path / SUITE_FILE}: not a bench folder (run `fedskip bench` first)\n"
    )

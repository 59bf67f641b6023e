"""The paper suite's frontier group and the frontier section of its results page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedskip.bench.expansion import resolve
from fedskip.bench.groups import PAPER_FRONTIER, FrontierVariant
from fedskip.bench.pareto import (
    describe_config,
    front,
    frontier_candidates,
    frontier_markdown,
    plot_pareto,
    score_floor,
)
from fedskip.bench.report import write_results
from fedskip.bench.runner import SUITE_FILE, plan_suite
from fedskip.bench.table import ResultRow, collapse_seeds
from tests.bench.rundirs import centralized_run, federated_run


def _row(name: str, score: float, mb: float, seconds: float, **fields: object) -> ResultRow:
    row = ResultRow(
        name=name,
        groups=str(fields.pop("groups", "frontier")),
        task="ner",
        method=str(fields.pop("method", "layerskip")),
        metric="f1",
        status="done",
        partition="natural",
        **fields,  # type: ignore[arg-type]
    )
    row.final, row.mb, row.seconds = score, mb, seconds
    return row


def test_front_keeps_what_nothing_beats_on_score_and_cost() -> None:
    rows = [
        _row("cheap", 0.90, 10.0, 900.0),
        _row("dominated", 0.89, 20.0, 100.0),  # beaten on traffic by cheap, not on compute
        _row("tie", 0.90, 10.0, 950.0),  # equal to cheap on traffic: neither dominates there
        _row("best", 0.97, 7000.0, 800.0),
    ]
    assert front(rows, lambda r: r.mb) == {"cheap", "tie", "best"}
    assert front(rows, lambda r: r.seconds) == {"dominated", "best"}
    assert front([*rows, _row("unpriced", 0.99, 0.0, 1.0)], lambda r: None) == set()


def test_the_plots_score_axis_keeps_the_band_below_the_best_and_floors_the_rest(
    tmp_path: Path,
) -> None:
    rows = [_row("best", 0.97, 900.0, 700.0), _row("k1", 0.775, 1000.0, 450.0)]
    assert score_floor(rows) == pytest.approx(0.87)
    assert score_floor(rows, band=0.25) == pytest.approx(0.72)
    assert score_floor([_row("unscored", 0.0, 1.0, 1.0)]) == pytest.approx(-0.1)
    rows[-1].final = None
    assert score_floor(rows[-1:]) is None
    rows[-1].final = 0.775
    path = plot_pareto(rows, tmp_path / "frontier.png")  # k1 drawn on the floor, not dropped
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"


def test_describe_config_says_what_was_trained_and_sent() -> None:
    assert describe_config(
        _row("a", 0.9, 1, 1, method="lora", lora_rank=8, compression="none")
    ) == ("LoRA r=8 in every block, fp32")
    fa = _row("b", 0.9, 1, 1, method="lora", lora_rank=8, lora_freeze_a=True, compression="int8")
    assert describe_config(fa) == "LoRA r=8 frozen A in every block, int8"
    inside = _row("c", 0.9, 1, 1, layers=4, lora_rank=8, compression="int8", local_epochs=4)
    assert describe_config(inside) == "k=4, LoRA r=8, int8, 4 local epochs"
    assert describe_config(_row("d", 0.9, 1, 1, method="fedprox", compression="fp16")) == (
        "full-model FedProx, fp16"
    )
    assert describe_config(_row("e", 0.9, 1, 1, layers=2, strategy="bottom")) == (
        "k=2, bottom selection, fp32"
    )


def test_table_shows_seed_spread_and_flags_a_provisional_front_point() -> None:
    seeds = [
        _row("ner-lora-int8", 0.95, 30.0, 900.0, method="lora", lora_rank=8, compression="int8"),
        _row(
            "ner-lora-int8-s43",
            0.97,
            40.0,
            1000.0,
            method="lora",
            lora_rank=8,
            compression="int8",
            variant="ner-lora-int8",
        ),
    ]
    for r in seeds:
        r.reduction = 1 - r.mb / 7000
    full = _row("ner-fedavg", 0.972, 7000.0, 950.0, method="fedavg", groups="methods")
    full.reduction = 0.0
    rows = collapse_seeds([*seeds, full])
    lines = frontier_markdown(rows).splitlines()
    assert lines[2] == (
        "| `ner-lora-int8` | LoRA r=8 in every block, int8 | 2 | 0.960 ± 0.014 | 35.0 ± 7.1 "
        "| 99.5% ± 0.1 | 950 ± 71 | traffic (2 seeds: provisional) |"  # FedAvg: as fast, better
    )
    assert lines[3] == (
        "| `ner-fedavg` | full-model FedAvg, fp32 | 1 | 0.972 | 7000 | 0.0% | 950 "
        "| traffic, compute (1 seed: provisional) |"
    )


def test_candidates_are_the_frontier_tasks_federated_natural_runs_without_dp() -> None:
    rows = [
        _row("ner-lora-int8", 0.95, 30.0, 900.0, method="lora"),
        _row("ner-fedavg", 0.97, 7000.0, 950.0, method="fedavg", groups="methods layers"),
        _row("ner-centralized", 0.97, 0.0, 500.0, method="centralized", groups="methods"),
        _row("ner-layerskip-dir0.1", 0.9, 1500.0, 400.0, groups="noniid"),
        _row("ner-layerskip-dp8", 0.5, 300.0, 4000.0, groups="layers", target_epsilon=8.0),
    ]
    classification = _row("classification-fedavg", 0.8, 9.0, 9.0, groups="methods")
    classification.task = "classification"
    names = [r.name for r in frontier_candidates([*rows, classification])]
    assert names == ["ner-lora-int8", "ner-fedavg"]
    assert frontier_candidates(rows[1:]) == []  # no frontier group: no section


def test_paper_frontier_varies_one_thing_of_the_suites_own_runs() -> None:
    plan = plan_suite("paper")
    by_name = {c.name: c for c in plan.configs}
    for point in PAPER_FRONTIER:
        name = f"ner-{point.of}-{point.suffix}"
        own = resolve(plan.base, by_name[f"ner-{point.of}"].settings).to_run_config()
        varied = resolve(plan.base, by_name[name].settings).to_run_config()
        changed = {k for k in varied if varied[k] != own.get(k)}
        assert changed == set(point.settings), name
        assert by_name[name].labels == {"partition": "natural", "frontier_of": f"ner-{point.of}"}
        assert by_name[f"{name}-s44"].settings["seed"] == 44
    assert len([c for c in plan.configs if "frontier" in c.groups]) == 3 * len(PAPER_FRONTIER)
    inside = resolve(plan.base, by_name["ner-layerskip-k4-r8-int8"].settings)
    assert (inside.lr, inside.head_lr) == (2e-3, 1e-2)  # LoRA's lr, layer skipping's head lr
    with pytest.raises(ValueError, match="not lora, fedavg, layerskip or layerskip-k<k>"):
        FrontierVariant("centralized", "x", {}).base_settings(plan.base, 6)


def test_reduction_is_against_plain_fedavg_even_when_an_int8_fedavg_shares_the_seed(
    tmp_path: Path,
) -> None:
    from fedskip.bench.records import load_run
    from fedskip.bench.table import reference

    runs = tmp_path / "runs"
    plain = {"compression": "none"}
    ours = federated_run(runs / "ls", method="layerskip", scores=[0.9], bytes_per_round=10, seed=43)
    int8 = federated_run(
        runs / "fa8", method="fedavg", scores=[0.9], bytes_per_round=25, seed=43, compression="int8"
    )
    fedavg = federated_run(runs / "fa", method="fedavg", scores=[0.9], bytes_per_round=100, **plain)
    records = [load_run(d) for d in (ours, int8, fedavg)]
    assert reference(records, records[0], "fedavg") is records[2]  # seed 42, fp32 wire
    assert reference(records[:2], records[0], "fedavg") is records[1]  # the only one left


def test_a_runs_wire_is_what_it_resolved_auto_to(tmp_path: Path) -> None:
    from fedskip.bench.records import load_run
    from fedskip.bench.table import build_rows

    runs = tmp_path / "runs"
    resolved = federated_run(
        runs / "new",
        method="layerskip",
        scores=[0.9],
        bytes_per_round=10,
        compression="auto",
        summary_extra={"wire_compression": "int8"},
    )
    old = federated_run(
        runs / "old", method="layerskip", scores=[0.9], bytes_per_round=20, compression="auto"
    )
    rows = build_rows([load_run(resolved), load_run(old)])
    assert [r.compression for r in rows] == ["int8", "auto"]
    assert [describe_config(r) for r in rows] == ["k=2, int8", "k=2, auto"]


def test_results_page_draws_the_frontier_from_records(tmp_path: Path) -> None:
    plan = plan_suite("paper")
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan.manifest()))
    runs = tmp_path / "runs"
    centralized_run(runs / "ner-centralized", scores=[0.5, 0.8])
    plain = {"compression": "none"}
    federated_run(
        runs / "ner-fedavg", method="fedavg", scores=[0.6, 0.81], bytes_per_round=10**6, **plain
    )
    federated_run(
        runs / "ner-lora",
        method="lora",
        scores=[0.6, 0.80],
        bytes_per_round=20_000,
        **{"lora-rank": 8, **plain},
    )
    for name, score in (("ner-lora-int8", 0.79), ("ner-lora-int8-s43", 0.81)):
        federated_run(
            runs / name,
            method="lora",
            scores=[0.5, score],
            bytes_per_round=5_000,
            **{"lora-rank": 8, "compression": "int8"},
        )
    text = write_results(tmp_path).read_text("utf-8")
    section = text[text.index("## Frontier: score against traffic and compute") :]
    # 2 rounds x (down + up): FedAvg 4 MB, LoRA 0.08 MB, LoRA + int8 0.02 MB
    assert (
        "| `ner-lora-int8` | LoRA r=8 in every block, int8 | 2 | 0.800 ± 0.014 | 0.020 ± 0.000 "
        "| 99.5% ± 0.0 | 4 ± 0 | traffic (2 seeds: provisional) |"
    ) in section
    assert (
        "| `ner-fedavg` | full-model FedAvg, fp32 | 1 | 0.810 | 4.0 | 0.0% | 4 "
        "| traffic, compute (1 seed: provisional) |"
    ) in section
    assert "| `ner-lora` | LoRA r=8 in every block, fp32 | 1 | 0.800 | 0.080 | 98.0% | 4 |  |" in (
        section
    )
    assert "![frontier](plots/frontier.png)" in section
    assert (tmp_path / "plots" / "frontier.png").read_bytes()[:4] == b"\x89PNG"

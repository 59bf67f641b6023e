"""The personalization group: its configs in the paper suite, its per-site tables and plot
rendered from run directories in the exact formats the runs write (made-up numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fedskip.bench.report import render_report, write_results
from fedskip.bench.runner import SUITE_FILE, plan_suite, run_path
from fedskip.config import Config
from fedskip.federation.round_rows import personal_eval, personal_summary, round_row, summarize
from fedskip.federation.round_types import RoundRecord
from fedskip.records.rundir import RunDir
from fedskip.records.schema import RunSummary

SITES = ["site-0", "site-1"]


def test_the_paper_suite_has_the_group_and_the_smoke_suite_not() -> None:
    plan = plan_suite("paper")
    mine = {c.name: c for c in plan.configs if "personalization" in c.groups}
    assert sorted(mine) == [
        "ner-layerskip-dir0.1-head",
        "ner-layerskip-dir0.1-sites",
        "ner-layerskip-head",
        "ner-layerskip-sites",
        "ner-local",
        "ner-local-dir0.1",
    ]
    assert mine["ner-local"].groups == ["methods", "personalization"]  # the same local run
    head = mine["ner-layerskip-dir0.1-head"].settings
    assert (head["personalize"], head["eval-clients"], head["alpha"]) == ("head", True, 0.1)
    assert mine["ner-layerskip-sites"].settings["personalize"] == "none"
    assert mine["ner-local-dir0.1"].labels == {"partition": "dir0.1", "personalize": "local"}
    assert not [c for c in plan_suite("smoke").configs if "personalization" in c.groups]


def _federated(out: Path, personalize: str, sites: dict[int, dict[str, Any]], **keys: Any) -> None:
    cfg = Config.from_mapping(
        {"method": "layerskip", "rounds": 1, "out": str(out), "personalize": personalize, **keys}
    )
    rundir = RunDir(out)
    rundir.write_config(cfg)
    record = RoundRecord(round=1, clients=[0, 1], bytes_down=10, bytes_up=10, replies_ok=2)
    personal = personal_eval(sites, SITES, prefix="personal-") if personalize != "none" else {}
    shared = {SITES[c]: {"f1": m["f1"]} for c, m in sites.items()}
    row = round_row(record, {"f1": 0.5}, [], elapsed=1.0, site_eval=shared, personal=personal)
    rundir.append_metrics(row)
    summary = summarize(
        [row], cfg=cfg, primary="f1", full_model_bytes=400, exchanged_parameters=5, seconds=1.0
    )
    if personalize != "none":
        summary["personalization"] = personal_summary([row], personalize)
    rundir.write_summary(summary)


def _local(out: Path, own: list[float], **keys: Any) -> None:
    cfg = Config.from_mapping({"method": "local", "out": str(out), **keys})
    rundir = RunDir(out)
    rundir.write_config(cfg)
    sites = [
        {"client": c, "site": SITES[c], "f1": 0.1, "own_test": {"f1": f}} for c, f in enumerate(own)
    ]
    rundir.write_summary(
        RunSummary({"method": "local", "task": "ner", "primary_metric": "f1", "sites": sites})
    )


def test_per_site_tables_and_plots_from_run_directories(tmp_path: Path) -> None:
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan_suite("paper").manifest()))
    dirichlet = {"partition": "dirichlet", "alpha": 0.1, "eval-clients": True}
    _federated(
        run_path(tmp_path, "ner-layerskip-sites"),
        "none",
        {0: {"num-examples": 3, "f1": 0.5}, 1: {"num-examples": 1, "f1": 0.25}},
        eval_clients=True,
    )
    _federated(
        run_path(tmp_path, "ner-layerskip-head"),
        "head",
        {
            0: {"num-examples": 3, "f1": 0.0, "personal-f1": 0.75},
            1: {"num-examples": 1, "f1": 0.125, "personal-f1": 0.5},
        },
    )
    _local(run_path(tmp_path, "ner-local"), [0.625, 0.375])
    _local(run_path(tmp_path, "ner-local-s43"), [0.0, 0.0])  # another seed: not in the table
    _federated(
        run_path(tmp_path, "ner-layerskip-dir0.1-head"),
        "head",
        {0: {"num-examples": 2, "f1": 0.0, "personal-f1": 0.25}},
        **{k.replace("-", "_"): v for k, v in dirichlet.items()},
    )
    text = write_results(tmp_path).read_text()
    section = text.split("## Personalization (per site, own test split)")[1]
    natural, dirichlet_part = section.split("### dir0.1")
    assert "| site | local-only | global | personalized | shared + seeded head |" in natural
    assert "| site-0 | 0.625 | 0.500 | 0.750 | 0.000 |" in natural
    assert "| site-1 | 0.375 | 0.250 | 0.500 | 0.125 |" in natural
    assert "| **mean** | 0.500 | 0.375 | 0.625 | 0.062 |" in natural
    assert "| site-0 | — | — | 0.250 | 0.000 |" in dirichlet_part  # only the head run finished
    for part in ("natural", "dir0.1"):
        png = tmp_path / "plots" / f"personalization-{part}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![personalization {part}](plots/personalization-{part}.png)" in text
    report = render_report([run_path(tmp_path, "ner-layerskip-head")], tmp_path / "r")
    lines = report.read_text().splitlines()
    assert "| site | own model f1 | global model f1 |" in lines
    assert "| site-0 | 0.750 | 0.000 |" in lines
    assert "| **mean** | 0.688 | 0.031 |" in lines  # example-weighted: (3 x 0.75 + 0.5) / 4

"""Settings chosen on validation: the centralized references' two schedules (paper suites)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fedskip.bench.choice import choose_on_validation
from fedskip.bench.records import load_run
from fedskip.bench.report import write_results
from fedskip.bench.runner import SUITE_FILE, plan_suite, run_path
from tests.bench.rundirs import centralized_run, federated_run


def _central(folder: Path, name: str, val: float | None, test: float, **settings: object) -> None:
    extra = {"test_at_best": test} if val is None else {"test_at_best": test, "best_val": val}
    centralized_run(run_path(folder, name), scores=[0.5, test], summary_extra=extra, **settings)


def _page(tmp_path: Path) -> Path:
    """paper-quick records: seed 42's run-long schedule wins on validation (and is worse on
    test), seed 43's per-epoch one wins; layer skipping of both seeds."""
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan_suite("paper-quick").manifest()))
    _central(tmp_path, "ner-centralized", 0.90, 0.91, **{"lr-schedule": "epoch"})
    _central(tmp_path, "ner-centralized-lrrun", 0.93, 0.89)
    _central(tmp_path, "ner-centralized-s43", 0.95, 0.94, seed=43, **{"lr-schedule": "epoch"})
    _central(tmp_path, "ner-centralized-lrrun-s43", 0.92, 0.96, seed=43)
    for seed, name in ((42, "ner-layerskip"), (43, "ner-layerskip-s43")):
        federated_run(
            run_path(tmp_path, name),
            method="layerskip",
            scores=[0.80, 0.85],
            bytes_per_round=1000,
            seed=seed,
            summary_extra={"test_at_best": 0.85, "best_round": 2, "stopped_round": 2},
        )
    return write_results(tmp_path)


def test_the_validation_winner_stands_for_the_configuration(tmp_path: Path) -> None:
    page = _page(tmp_path)
    with (page.parent / "results.csv").open() as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert "ner-centralized-lrrun" not in rows and "ner-centralized-lrrun-s43" not in rows
    central, central43 = rows["ner-centralized"], rows["ner-centralized-s43"]
    # seed 42: the run-long schedule (val 0.93 > 0.90) although its test score is lower
    assert (central["candidate"], central["test_at_best"], central["seed"]) == ("run", "0.89", "42")
    # seed 43: the per-epoch schedule (val 0.95 > 0.92) although its test score is lower
    assert (central43["candidate"], central43["test_at_best"]) == ("epoch", "0.94")
    assert central43["variant"] == "ner-centralized"  # still one of the configuration's seeds
    # the gap reads the chosen reference of the same seed: 0.85 - 0.89 and 0.85 - 0.94
    assert round(float(rows["ner-layerskip"]["gap_points"]), 6) == -4.0
    assert round(float(rows["ner-layerskip-s43"]["gap_points"]), 6) == -9.0
    text = page.read_text()
    assert "## Chosen on validation" in text
    assert "| ner-centralized | epoch (`ner-centralized`) | 0.900 | 0.910 |  |" in text
    assert "| ner-centralized | run (`ner-centralized-lrrun`) | 0.930 | 0.890 | yes |" in text
    assert "| ner-centralized-s43 | epoch (`ner-centralized-s43`) | 0.950 | 0.940 | yes |" in text
    # the mean row of the configuration averages the two chosen runs: (0.89 + 0.94) / 2
    assert "| `ner-centralized` | 2 | centralized | 0.915 ± 0.035 |" in text


def test_ties_keep_the_configuration_and_no_validation_cannot_win(tmp_path: Path) -> None:
    _central(tmp_path, "a", 0.90, 0.91)
    _central(tmp_path, "a-alt", 0.90, 0.99)
    _central(tmp_path, "b", None, 0.91)
    _central(tmp_path, "b-alt", 0.10, 0.50)
    _central(tmp_path, "c", 0.80, 0.80)  # its alternative has not run: no choice to list
    records = [load_run(run_path(tmp_path, n)) for n in ("a", "a-alt", "b", "b-alt", "c")]
    labels = {
        "a": {"candidate": "x"},
        "a-alt": {"candidate": "y", "candidate_for": "a"},
        "b": {"candidate": "x"},
        "b-alt": {"candidate": "y", "candidate_for": "b"},
        "c": {"candidate": "x"},
    }
    chosen, choices = choose_on_validation(records, labels)
    assert [(r.name, r.path.name, r.candidate) for r in chosen] == [
        ("a", "a", "x"),
        ("b", "b-alt", "y"),
        ("c", "c", ""),
    ]
    assert [(c.config, c.chosen) for c in choices] == [("a", "a"), ("b", "b-alt")]


def test_paper_suites_train_both_schedules_for_every_centralized_reference() -> None:
    for suite in ("paper", "paper-quick"):
        configs = {c.name: c for c in plan_suite(suite).configs}
        central = [c for c in configs.values() if c.settings.get("method") == "centralized"]
        bases = [c for c in central if "candidate_for" not in c.labels]
        alternatives = {c.labels["candidate_for"]: c for c in central if c not in bases}
        assert bases and len(central) == 2 * len(bases) == 2 * len(alternatives), suite
        for base in bases:
            alt = alternatives[base.name]
            assert (base.settings["lr-schedule"], alt.settings["lr-schedule"]) == ("epoch", "run")
            assert alt.groups == base.groups

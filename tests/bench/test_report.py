"""``fedskip report`` and the suite results page on hand-made run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedskip.bench.report import publish, render_report, write_headline, write_results
from fedskip.bench.runner import SUITE_FILE, plan_suite, run_path
from fedskip.bench.spec import describe
from fedskip.cli import main
from tests.bench.rundirs import centralized_run, federated_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    """A real PNG that matplotlib reads back as an image with pixels."""
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_render_report(tmp_path: Path) -> None:
    central = centralized_run(tmp_path / "central", scores=[0.5, 0.9])
    skip = federated_run(
        tmp_path / "skip", method="layerskip", scores=[0.3, 0.87], bytes_per_round=2000
    )
    path = render_report([central, skip], tmp_path / "rep")
    text = path.read_text()
    assert "| `skip` | layerskip | ner | 2 | natural | 0.870 | 0.870 | -3.0 |" in text
    pngs = sorted((tmp_path / "rep" / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["ner-metric-vs-mb.png", "ner-metric-vs-round.png"]
    for png in pngs:
        assert_png(png)
        assert f"(plots/{png.name})" in text


def test_report_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    skip = federated_run(tmp_path / "skip", method="layerskip", scores=[0.3], bytes_per_round=8)
    assert main(["report", str(skip)]) == 0
    assert (skip / "report.md").is_file()
    assert "report:" in capsys.readouterr().out


def test_report_cli_bad_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fedskip: error: {tmp_path / 'nope'}: run directory not found"]


def test_suite_results_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results.md/csv of a smoke-suite folder in which only some configs finished."""
    plan = plan_suite("smoke")
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan.manifest()))
    centralized_run(run_path(tmp_path, "ner-centralized"), scores=[0.6, 0.8])
    federated_run(
        run_path(tmp_path, "ner-fedavg"),
        method="fedavg",
        scores=[0.5, 0.79],
        bytes_per_round=4000,
        clients=4,
    )
    federated_run(
        run_path(tmp_path, "ner-layerskip"),
        method="layerskip",
        scores=[0.5, 0.785],
        bytes_per_round=1000,
        clients=4,
    )
    federated_run(
        run_path(tmp_path, "ner-layerskip-dir0.3"),
        method="layerskip",
        scores=[0.5, 0.7],
        bytes_per_round=1000,
        clients=4,
        partition="dirichlet",
        alpha=0.3,
    )
    running = federated_run(
        run_path(tmp_path, "ner-fedprox"), method="fedprox", scores=[0.1], bytes_per_round=10
    )
    (running / "summary.json").unlink()  # still training
    text = write_results(tmp_path).read_text()
    assert text.startswith("# fedskip bench: suite `smoke`")
    tables, missing = text.split("## Not finished")
    assert "ner-fedprox" not in tables and "`ner-fedprox`" in missing
    assert (
        "Reproduce: `fedskip bench --suite smoke --out OUT` (4 of 12 configs finished; their "
        "wall time in all: 18 s = 0.0 h" in text
    )
    assert "| `ner-layerskip` | layerskip | 0.785 | 0.785 | -1.5 | 0.004 | 75.0% | 2 | 4 |" in text
    assert "| ≈70% less communication than full FedAvg | **held** |" in text
    assert "| within 2% of centralized training | **held** |" in text
    assert "| beats the baselines | **not held** |" in text  # 0.785 < FedAvg 0.79
    assert "| robust to non-IID data | **not tested** |" in text  # no IID run in smoke
    assert "`classification-fedavg`" in text.split("## Not finished")[1]
    rows = (tmp_path / "results.csv").read_text().splitlines()
    assert rows[0].startswith("name,groups,task,method,metric,status,variant,seed,layers")
    assert len(rows) == 1 + 4
    for png in (tmp_path / "plots").glob("*.png"):
        assert_png(png)
    assert (tmp_path / "plots" / "noniid.png").is_file()
    assert describe(plan.configs)[0]["name"] == "ner-centralized"
    monkeypatch.chdir(tmp_path)
    snippet = write_headline(tmp_path, tmp_path / "snippet.md").read_text()
    assert "| method | final | gap (pts) | MB | reduction |" in snippet
    assert "| layerskip | 0.785 | -1.5 | 0.004 | 75.0% |" in snippet
    assert "![ner: metric vs MB exchanged](plots/ner-metric-vs-mb.png)" in snippet
    assert f"Made with: `fedskip bench --suite smoke --out OUT --publish {tmp_path}`" in snippet


def test_publish_copies_records_not_models(tmp_path: Path) -> None:
    out, dest = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    (out / SUITE_FILE).write_text(json.dumps(plan_suite("smoke").manifest()))
    run = federated_run(
        run_path(out, "ner-layerskip"), method="layerskip", scores=[0.5], bytes_per_round=10
    )
    (run / "model").mkdir()
    (run / "model" / "model.safetensors").write_bytes(b"weights")
    training = run_path(out, "ner-fedavg")  # started, no summary.json yet
    training.mkdir(parents=True)
    (training / "config.json").write_text("{}")
    (training / "metrics.jsonl").write_text("")
    page = publish(out, dest)
    copied = sorted(p.relative_to(dest / "runs").as_posix() for p in (dest / "runs").rglob("*"))
    assert copied == [
        "ner-layerskip",
        "ner-layerskip/config.json",
        "ner-layerskip/metrics.jsonl",
        "ner-layerskip/summary.json",
    ]
    assert page == dest / "results.md"
    assert "(1 of 12 configs finished; " in page.read_text()


def test_report_help_shows_a_plain_percent_sign(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "rounds to 95% of best" in text and "%%" not in text


def _table_row(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"| `{name}` |"))


def test_default_reference_never_failed_nor_scored_0(tmp_path: Path) -> None:
    """The full fine-tuning run scored 0 and another failed a round: the gap is measured against
    the k=2 centralized run (0.8), not 0.000 (which printed +87.0)."""
    zero = centralized_run(tmp_path / "central", scores=[0.0])
    failed = centralized_run(
        tmp_path / "central-k4", scores=[0.95], layers=4, summary_extra={"failed_rounds": [1]}
    )
    k2 = centralized_run(tmp_path / "central-k2", scores=[0.8], layers=2)
    skip = federated_run(tmp_path / "skip", method="layerskip", scores=[0.87], bytes_per_round=8)
    text = render_report([zero, failed, k2, skip], tmp_path / "rep").read_text()
    assert "| `skip` | layerskip | ner | 2 | natural | 0.870 | 0.870 | +7.0 |" in text


def test_baseline_option_names_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = centralized_run(tmp_path / "central", scores=[0.9])
    k2 = centralized_run(tmp_path / "central-k2", scores=[0.8], layers=2)
    skip = federated_run(tmp_path / "skip", method="layerskip", scores=[0.87], bytes_per_round=8)
    out = tmp_path / "rep"
    assert main(["report", str(full), str(skip), "--baseline", str(k2), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "| `skip` | layerskip | ner | 2 | natural | 0.870 | 0.870 | +7.0 |" in text
    assert "| `central` | centralized | ner | 6 | natural | 0.900 | 0.900 | +10.0 |" in text
    assert "| `central-k2` | centralized | ner | 2 | natural | 0.800 | 0.800 | +0.0 |" in text
    assert "Gaps of the ner runs are versus `central-k2` (--baseline)." in text
    capsys.readouterr()
    (k2 / "summary.json").unlink()
    (k2 / "metrics.jsonl").unlink()
    assert main(["report", str(skip), "--baseline", str(k2), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: --baseline {k2}: the run has no test score (unfinished or without "
        "evaluation); pick a finished run\n"
    )


def test_single_run_report_shows_the_reduction_its_console_printed(tmp_path: Path) -> None:
    from fedskip.commands.run import format_federated

    skip = federated_run(
        tmp_path / "skip", method="layerskip", scores=[0.3, 0.87], bytes_per_round=2000
    )
    summary = json.loads((skip / "summary.json").read_text())
    console = format_federated({**summary, "out": str(skip)})
    assert "reduction vs full-model FedAvg: 75.0% " in console  # 8,000 of 2x4,000x4 bytes
    text = render_report([skip], skip).read_text()
    assert "| 0.008 | 75.0% |" in _table_row(text, "skip")


def test_legend_lies_below_the_axes_and_no_warning_with_many_runs(tmp_path: Path) -> None:
    """30 runs (a bench's worth): the legend sits under the axes, the figure grows to hold it,
    and matplotlib says nothing (it warned "constrained_layout not applied")."""
    import warnings

    from fedskip.bench.plots import curves_figure
    from fedskip.bench.records import load_run

    runs = [
        federated_run(
            tmp_path / f"ner-layerskip-k{i}-lrrun-s{i}",
            method="layerskip",
            scores=[0.1, 0.5],
            bytes_per_round=10,
        )
        for i in range(30)
    ]
    records = [load_run(r) for r in runs]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = curves_figure(records, x="round")
        fig.canvas.draw()
        render_report(runs, tmp_path / "rep")
    assert [str(w.message) for w in caught] == []
    ax = fig.axes[0]
    axes_box, legend_box = ax.get_window_extent(), ax.get_legend().get_window_extent()
    assert legend_box.y1 <= axes_box.y0  # wholly below the axes: it covers no curve
    assert axes_box.height > 0.4 * fig.bbox.height * 4.0 / fig.get_figheight()
    assert fig.get_figheight() == pytest.approx(4.0 + 15 * 0.18)


def test_report_on_a_bench_folder_points_to_report_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / SUITE_FILE).write_text(json.dumps(plan_suite("smoke").manifest()))
    centralized_run(run_path(tmp_path, "ner-centralized"), scores=[0.8])
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {tmp_path}: a bench folder (suite.json, runs/), not a run directory; "
        f"render its results with `fedskip bench --suite smoke --out {tmp_path} --report-only`, "
        f"or compare its runs with `fedskip report {tmp_path}/runs/*`\n"
    )

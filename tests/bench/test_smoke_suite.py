"""``fedskip bench --suite smoke`` end to end: real training of every config (one round, a few
documents), then the structure and sanity of results.csv, results.md and the plots."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from fedskip.bench.spec import METHOD_ORDER
from fedskip.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = ["model=llama-tiny", "rounds=1", "epochs=1", "synth-docs=3", "max-length=24", "stride=6"]
"""Random-init 4-block LLaMA, one round, 2 notes per site: structure and sanity, not accuracy."""


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    code = main(["bench", "--suite", "smoke", "--out", str(out), "--threads", "1", "--set", *TINY])
    errors = {p.parent.name: p.read_text()[-800:] for p in out.glob("runs/*/error.txt")}
    assert code == 0, errors
    return out


def read_csv(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open() as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_every_method_trained(smoke: Path) -> None:
    rows = read_csv(smoke)
    ner = {r["method"] for r in rows.values() if r["task"] == "ner" and "methods" in r["groups"]}
    assert ner == set(METHOD_ORDER)
    assert {r["task"] for r in rows.values()} == {"ner", "classification"}
    for name, row in rows.items():
        assert row["status"] == "done", name
        assert 0.0 <= float(row["final"]) <= 1.0, name
        assert int(row["rounds"]) == 1, name
        assert (smoke / "runs" / name / "summary.json").is_file()


@pytest.mark.slow
def test_layer_skipping_moves_fewer_bytes(smoke: Path) -> None:
    rows = read_csv(smoke)
    for task in ("ner", "classification"):
        skip, full = rows[f"{task}-layerskip"], rows[f"{task}-fedavg"]
        assert 0.0 < float(skip["mb"]) < float(full["mb"])
        assert float(skip["reduction"]) == pytest.approx(1 - float(skip["mb"]) / float(full["mb"]))
    assert float(rows["ner-layerskip-k1"]["mb"]) < float(rows["ner-layerskip"]["mb"])
    assert float(rows["ner-centralized"]["mb"]) == 0.0
    assert rows["ner-layerskip-eps8"]["epsilon"] != ""
    assert float(rows["ner-layerskip-eps8"]["epsilon"]) <= 8.0


@pytest.mark.slow
def test_report_and_plots(smoke: Path) -> None:
    import matplotlib.image

    text = (smoke / "results.md").read_text()
    claims = text.split("## The paper's claims on our data")[1]
    assert claims.count("| **") == 7
    rows = read_csv(smoke)
    reduction = 100 * float(rows["ner-layerskip"]["reduction"])
    assert f"→ {reduction:.1f}% less" in claims  # computed from the results, not stored
    pngs = sorted((smoke / "plots").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"ner-metric-vs-round.png", "ner-metric-vs-mb.png", "layers.png", "noniid.png"} <= names
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert matplotlib.image.imread(png).shape[2] in (3, 4)
        assert f"(plots/{png.name})" in text


@pytest.mark.slow
def test_resume_skips_finished_configs(smoke: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["bench", "--suite", "smoke", "--out", str(smoke), "--only", "methods", "--set", *TINY]
    )
    assert code == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[")]
    assert len(lines) == 9 and all(": skipped (" in x for x in lines)

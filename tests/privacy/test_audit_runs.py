"""Audit runs end to end (real ServerApp / ClientApp, llama-tiny, in-process grid): canaries in
the training data only, the auditor's record, the ε lower bound beside the accountant's ε."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.cli import main
from fedskip.config import Config
from fedskip.data.canaries import is_canary
from fedskip.fl.client_app import build_client_app
from fedskip.fl.server import run_server
from fedskip.pipeline import prepare
from tests.fl.local_grid import LocalGrid

pytestmark = pytest.mark.slow
CANARIES = 32


@pytest.fixture(scope="module", autouse=True)
def _small_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDSKIP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _cfg(out: Path, **changes: Any) -> Config:
    """3 synthetic sites of 6 notes, 32 canaries; several local epochs at a high learning rate
    so that a non-private run memorizes the included canaries."""
    settings: dict[str, Any] = dict(
        model="llama-tiny", synth_sites=3, synth_docs=6, rounds=6, local_epochs=15, layers=1,
        max_length=32, stride=8, batch_size=4, lr=3e-3, head_lr=1e-2, eval_clients=False,
        quiet=True, audit_canaries=CANARIES, out=str(out),
    )  # fmt: skip
    return Config(**{**settings, **changes})


def _run(cfg: Config) -> tuple[dict[str, Any], LocalGrid]:
    run_config = cfg.to_run_config()
    grid = LocalGrid(build_client_app(run_config), prepare(cfg).num_clients, run_config)
    return run_server(grid, cfg), grid


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, Any], Any]:
    cfg = _cfg(tmp_path_factory.mktemp("plain"))
    summary, grid = _run(cfg)
    return cfg, summary, grid


def test_a_non_private_run_leaks_measurably(plain_run: tuple[Config, dict[str, Any], Any]) -> None:
    cfg, summary, _ = plain_run
    audit = summary["audit"]
    assert summary["audit_run"] is True and audit["audit_run"] is True
    assert audit["canaries"] == CANARIES and audit["guesses"] == CANARIES // 2
    assert audit["confidence"] == 0.95 and audit["delta"] == cfg.delta
    assert audit["accountant_epsilon"] is None and summary["epsilon"] is None
    # 16 guesses all right is the most 16 guesses can show: ε ≥ 1.58 at 95 %
    assert audit["correct"] >= 15
    assert audit["epsilon_lower_bound"] > 1.0
    mia = audit["membership_inference"]
    assert mia["attack"] == "loss threshold" and 0.0 <= mia["auc"] <= 1.0
    assert set(mia["per_site"]) == set(prepare(cfg).client_names)


def test_canaries_join_training_only_and_the_auditor_keeps_the_draws(
    plain_run: tuple[Config, dict[str, Any], Any],
) -> None:
    cfg, summary, _ = plain_run
    prepared = prepare(cfg)
    assert len(prepared.canaries) == CANARIES
    assert len({c.document.patient_id for c in prepared.canaries}) == CANARIES
    in_training = [d.doc_id for part in prepared.client_train for d in part if is_canary(d)]
    assert sorted(in_training) == sorted(c.document.doc_id for c in prepared.canaries if c.included)
    tests = prepared.global_test + [d for part in prepared.client_test for d in part]
    assert not any(is_canary(d) for d in tests)
    rows = [
        json.loads(x) for x in (Path(cfg.out) / "audit" / "canaries.jsonl").read_text().splitlines()
    ]
    assert [r["included"] for r in rows] == [c.included for c in prepared.canaries]
    assert sum(r["guess"] != 0 for r in rows) == summary["audit"]["guesses"]


def test_no_canary_text_or_draw_travels(plain_run: tuple[Config, dict[str, Any], Any]) -> None:
    cfg, _, grid = plain_run
    words = {w for c in prepare(cfg).canaries for w in c.document.text.split()}
    for message in grid.sent + grid.received:
        if not message.has_content():
            continue
        for name, record in message.content.items():
            for key, value in record.items():
                text = f"{name} {key} {value if not hasattr(value, 'data') else ''}".lower()
                assert "canary" not in text and "audit" not in text and "included" not in text
                assert not any(w in text for w in words)


def test_the_export_and_the_cli_say_audit_run(
    plain_run: tuple[Config, dict[str, Any], Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, summary, _ = plain_run
    manifest = json.loads((Path(cfg.out) / "model" / "fedskip.json").read_text())
    assert manifest["audit_run"] is True and manifest["audit_canaries"] == CANARIES
    assert main(["audit", cfg.out]) == 0
    out = capsys.readouterr().out
    bound = summary["audit"]["epsilon_lower_bound"]
    assert "accountant ε (upper bound): none (no DP: no upper bound)" in out
    assert f"audit ε (lower bound, 95% confidence, δ=1e-05): {bound:.2f}" in out
    assert main(["report", cfg.out]) == 0
    report = (Path(cfg.out) / "report.md").read_text()
    assert "## Privacy audit" in report and f"{bound:.2f}" in report


def test_a_dp_run_stays_below_its_accountant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _cfg(tmp_path, dp="sample", dp_unit="patient", noise_multiplier=1.0, rounds=2,
               local_epochs=3)  # fmt: skip
    summary, _ = _run(cfg)
    audit = summary["audit"]
    assert summary["privacy_unit"] == "patient"
    assert audit["accountant_epsilon"] == summary["epsilon"] > 0
    assert 0.0 <= audit["epsilon_lower_bound"] <= summary["epsilon"]
    assert main(["audit", str(tmp_path)]) == 0
    assert f"accountant ε (upper bound): {summary['epsilon']:.2f} per patient" in (
        capsys.readouterr().out
    )


def test_audit_of_a_plain_run_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"method": "layerskip"}))
    assert main(["audit", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"fedskip: error: {tmp_path}: not an audit run (train with --set audit-canaries=N, e.g. 64)"
    ]


def test_a_centralized_run_is_audited_by_its_trainer(tmp_path: Path) -> None:
    from fedskip.runs.centralized import run_centralized

    cfg = _cfg(tmp_path, method="centralized", epochs=1, audit_canaries=8)
    summary = run_centralized(cfg)
    audit = summary["audit"]
    assert summary["audit_run"] is True
    assert (audit["canaries"], audit["guesses"]) == (8, 4)
    assert 0.0 <= audit["epsilon_lower_bound"] <= 1.58  # 4 guesses can show little
    assert json.loads((tmp_path / "model" / "fedskip.json").read_text())["audit_run"] is True

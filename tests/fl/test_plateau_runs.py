"""Train to a plateau: validation split, stopping round, the validation-chosen model.

The validation scores are scripted (the tiny model's real F1 hardly moves), so the stopping
round is known exactly; the test scores are the real ones of each round / epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedskip.config import Config

SCRIPT = {1: 0.10, 2: 0.30, 3: 0.302, 4: 0.20, 5: 0.90, 6: 0.95}
"""Validation F1 per round: best at 2; 3 gains only 0.2 points (< min-delta 0.5); stale at 3, 4."""


def _rows(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(out, "metrics.jsonl").read_text().splitlines()]


def _summary(out: str) -> dict[str, Any]:
    return dict(json.loads(Path(out, "summary.json").read_text()))


@pytest.fixture
def scripted_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server scores validation for real, then the script replaces the F1."""
    from fedskip.fl.server import ServerRun

    original = ServerRun.evaluate

    def evaluate(self: ServerRun, server_round: int, arrays: Any) -> Any:
        result = original(self, server_round, arrays)
        assert self.last_val, "the validation split was not scored"
        self.last_val = {**self.last_val, "f1": SCRIPT[server_round]}
        return result

    monkeypatch.setattr(ServerRun, "evaluate", evaluate)


def test_validation_docs_are_disjoint_from_train_and_test(make_cfg: Callable[..., Config]) -> None:
    from fedskip.pipeline import prepare

    plain = prepare(make_cfg())
    held = prepare(make_cfg(val_fraction=0.25))
    assert all(part == [] for part in plain.client_val) and plain.val_docs == []
    ids = {name: [d.doc_id for d in docs] for name, docs in _parts(held).items()}
    assert len(ids["val"]) == 3  # one of each site's four training notes
    assert not set(ids["val"]) & set(ids["train"])
    assert not set(ids["val"]) & set(ids["test"])
    assert sorted(ids["val"] + ids["train"]) == sorted(d.doc_id for d in plain.train_docs)
    assert [d.doc_id for d in held.global_test] == [d.doc_id for d in plain.global_test]
    again = prepare(make_cfg(val_fraction=0.25))
    assert [d.doc_id for d in again.val_docs] == ids["val"]  # deterministic by seed


def _parts(prepared: Any) -> dict[str, list[Any]]:
    return {"val": prepared.val_docs, "train": prepared.train_docs, "test": prepared.global_test}


@pytest.mark.slow
def test_federated_run_stops_at_the_plateau_and_reports_the_chosen_round(
    make_cfg: Callable[..., Config], run_local: Any, scripted_server: None
) -> None:
    cfg = make_cfg(rounds=6, val_fraction=0.25, patience=2)
    summary, _ = run_local(cfg)
    rows = _rows(cfg.out)
    assert [r["round"] for r in rows] == [1, 2, 3, 4]  # stale after rounds 3 and 4
    assert [r["val"]["f1"] for r in rows] == [SCRIPT[r] for r in (1, 2, 3, 4)]
    assert (summary["stopped_round"], summary["stopped_early"]) == (4, True)
    assert (summary["best_round"], summary["best_val"]) == (2, 0.30)
    assert summary["test_at_best"] == rows[1]["f1"]  # round 2's test F1, not the best test F1
    assert summary["best_metric"] == rows[1]["f1"]
    assert summary["rounds_completed"] == 4
    _assert_exported_best(cfg.out)


def _assert_exported_best(out: str) -> None:
    """The exported model carries the best-validation round's global state."""
    from fedskip.records.rundir import load_export

    best = np.load(Path(out, "checkpoint", "best.npz"))
    last = np.load(Path(out, "checkpoint", "global.npz"))
    params = dict(load_export(out + "/model", device="cpu").model.named_parameters())
    assert any(not np.array_equal(best[k], last[k]) for k in best.files)
    for key in best.files:
        np.testing.assert_allclose(params[key].detach().numpy(), best[key], atol=1e-6)


@pytest.mark.slow
def test_resumed_run_stops_at_the_same_round(
    make_cfg: Callable[..., Config],
    run_local: Any,
    scripted_server: None,
    tmp_path: Path,
    interrupted: Callable[[Config, int], None],
) -> None:
    straight = make_cfg(rounds=6, val_fraction=0.25, patience=2, out=str(tmp_path / "straight"))
    run_local(straight)
    cut = straight.replace(out=str(tmp_path / "cut"))
    interrupted(cut, 3)
    summary, _ = run_local(cut.replace(resume=True))
    assert [r["round"] for r in _rows(cut.out)] == [1, 2, 3, 4]
    expected = _summary(straight.out)
    for key in ("stopped_round", "stopped_early", "best_round", "best_val"):
        assert summary[key] == expected[key], key
    assert summary["test_at_best"] == pytest.approx(expected["test_at_best"], abs=1e-6)
    # resuming a run that already stopped trains nothing more
    again, _ = run_local(cut.replace(resume=True))
    assert [r["round"] for r in _rows(cut.out)] == [1, 2, 3, 4]
    assert again["stopped_round"] == 4


@pytest.mark.slow
def test_centralized_stops_by_epochs_and_exports_the_best_epoch(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedskip.runs import run
    from fedskip.runs.epochs import EpochLog

    original = EpochLog._evaluate

    def scripted(self: EpochLog, encoded: Any) -> dict[str, Any]:
        scores = original(self, encoded)
        if encoded is self.val_set:
            scores = {**scores, "f1": SCRIPT[len(self.rows) + 1]}
        return scores

    monkeypatch.setattr(EpochLog, "_evaluate", scripted)
    cfg = make_cfg(method="centralized", epochs=6, val_fraction=0.25, patience=2)
    summary = run(cfg)
    rows = _rows(cfg.out)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["val"]["f1"] for r in rows] == [SCRIPT[e] for e in (1, 2, 3, 4)]
    assert (summary["stopped_round"], summary["best_round"], summary["best_val"]) == (4, 2, 0.30)
    assert summary["test_at_best"] == rows[1]["test"]["f1"]


@pytest.mark.slow
def test_local_sites_are_chosen_on_their_own_validation(
    make_cfg: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedskip.runs import run
    from fedskip.runs.epochs import EpochLog

    original = EpochLog._evaluate

    def scripted(self: EpochLog, encoded: Any) -> dict[str, Any]:
        scores = original(self, encoded)
        if encoded is self.val_set:
            scores = {**scores, "f1": SCRIPT[len(self.rows) + 1]}
        return scores

    monkeypatch.setattr(EpochLog, "_evaluate", scripted)
    cfg = make_cfg(method="local", epochs=5, val_fraction=0.25, patience=2)
    summary = run(cfg)
    rows = _rows(cfg.out)
    assert [(r["client"], r["epoch"]) for r in rows] == [
        (c, e) for c in range(3) for e in (1, 2, 3, 4)
    ]
    by_site = {c: rows[4 * c + 1]["f1"] for c in range(3)}  # each site's epoch 2
    assert [s["f1"] for s in summary["sites"]] == [by_site[c] for c in range(3)]
    assert [s["best_round"] for s in summary["sites"]] == [2, 2, 2]
    assert summary["test_at_best"] == pytest.approx(sum(by_site.values()) / 3)


def test_patience_without_a_validation_split_is_refused() -> None:
    from fedskip.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a validation split"):
        Config(patience=3)

"""Evaluate once: per-site figures from the server's predictions equal real client evaluation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedskip.config import Config
from fedskip.fl import site_eval


def _rows(out: str) -> list[dict[str, Any]]:
    text = (Path(out) / "metrics.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


def _evaluate_messages(grid: Any) -> list[Any]:
    return [m for m in grid.sent if m.metadata.message_type == "evaluate"]


@pytest.mark.slow
def test_site_scores_equal_federated_evaluation(
    make_cfg: Callable[..., Config],
    run_local: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    once = make_cfg(rounds=2, out=str(tmp_path / "once"))
    _, grid = run_local(once)
    assert _evaluate_messages(grid) == []  # the clients were not asked to score again
    with monkeypatch.context() as patch:
        patch.setattr(site_eval, "sites_scored_here", lambda cfg, prepared: False)
        federated = make_cfg(rounds=2, out=str(tmp_path / "federated"))
        _, grid = run_local(federated)
    assert len(_evaluate_messages(grid)) == 2 * 3
    for a, b in zip(_rows(once.out), _rows(federated.out)):
        assert set(a["client_eval"]) == set(b["client_eval"]) and "f1" in a["client_eval"]
        for key, value in b["client_eval"].items():
            assert a["client_eval"][key] == pytest.approx(value, abs=1e-6), key
        assert sorted(a["site_eval"]) == sorted(b["site_eval"]) == ["site-0", "site-1", "site-2"]
        for site, scores in b["site_eval"].items():  # the clients' own replies, per site
            assert set(scores) == set(a["site_eval"][site]), site
            for key, value in scores.items():
                assert a["site_eval"][site][key] == pytest.approx(value, abs=1e-6), (site, key)
        assert a["f1"] == pytest.approx(b["f1"], abs=1e-6)


def test_only_when_the_global_test_set_is_the_clients_test_splits(
    make_cfg: Callable[..., Config],
) -> None:
    from fedskip.pipeline import prepare

    natural = make_cfg()
    assert site_eval.sites_scored_here(natural, prepare(natural))
    assert not site_eval.sites_scored_here(natural.replace(eval_clients=False), prepare(natural))
    pooled = make_cfg(partition="iid", clients=3)
    assert not site_eval.sites_scored_here(pooled, prepare(pooled))

"""Every federated method through the same harness: what each one trains and exchanges."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fedskip.config import Config


def _train_keys(grid: Any, rnd: int) -> list[set[str]]:
    return [
        set(m.content["arrays"].keys())
        for m in grid.sent
        if m.metadata.message_type == "train" and m.content["config"]["server-round"] == rnd
    ]


def _reply_keys(grid: Any) -> list[set[str]]:
    return [
        set(m.content["arrays"].keys()) for m in grid.received if m.metadata.message_type == "train"
    ]


def _rows(cfg: Config) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(cfg.out, "metrics.jsonl").read_text().splitlines()]


def _param_names(cfg: Config) -> set[str]:
    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle

    return {
        n
        for n, _ in load_bundle(
            cfg.replace(method="layerskip"), prepare(cfg)
        ).model.named_parameters()
    }


@pytest.mark.slow
def test_fedavg_exchanges_every_parameter(make_cfg: Callable[..., Config], run_local: Any) -> None:
    cfg = make_cfg(method="fedavg", rounds=1, eval_clients=False)
    summary, grid = run_local(cfg)
    everything = _param_names(cfg)
    assert all(keys == everything for keys in _train_keys(grid, 1) + _reply_keys(grid))
    assert summary["reduction"] < 0.01  # full FedAvg moves (nearly) what full FedAvg moves


@pytest.mark.slow
def test_fedprox_sends_mu_and_trains_the_top_block(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(method="fedprox", proximal_mu=0.5, rounds=1, eval_clients=False)
    _, grid = run_local(cfg)
    configs = [m.content["config"] for m in grid.sent if m.metadata.message_type == "train"]
    assert all(c["proximal-mu"] == 0.5 and c["train-layers"] == [3] for c in configs)
    assert all(
        all(".layers.3." in k or "layers" not in k for k in keys) for keys in _reply_keys(grid)
    )


@pytest.mark.slow
def test_lora_exchanges_adapters_and_head_and_exports_a_plain_model(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(method="lora", lora_rank=2, rounds=1, eval_clients=False)
    summary, grid = run_local(cfg)
    for keys in _reply_keys(grid):
        adapters = {k for k in keys if "lora_" in k or "modules_to_save" in k}
        assert adapters and keys - adapters == {"base_model.model.model.norm.weight"}  # final norm
        assert {int(k.split(".layers.")[1].split(".")[0]) for k in keys if ".layers." in k} == {
            0,
            1,
            2,
            3,
        }
    assert summary["reduction"] > 0.5
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(Path(cfg.out) / "model")
    assert not any("lora" in n for n, _ in model.named_parameters())


@pytest.mark.slow
def test_server_adam_and_rotating_layers(make_cfg: Callable[..., Config], run_local: Any) -> None:
    cfg = make_cfg(
        server_optimizer="adam", layer_strategy="rotating", layers=2, rounds=2, eval_clients=False
    )
    _, grid = run_local(cfg)
    assert [r["selected_layers"] for r in _rows(cfg)] == [[2, 3], [0, 1]]
    first, second = _train_keys(grid, 1)[0], _train_keys(grid, 2)[0]
    # round 2 also sends blocks 2-3: round 1 changed them and clients need the current model
    assert {k for k in first if ".layers." in k} < second
    state = json.loads(Path(cfg.out, "checkpoint", "state.json").read_text())
    assert state["round"] == 2


@pytest.mark.slow
def test_importance_selection_asks_clients_for_layer_scores(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(layer_strategy="importance", layers=1, rounds=1, eval_clients=False)
    _, grid = run_local(cfg)
    queries = [m for m in grid.sent if m.metadata.message_type == "query.score"]
    replies = [m for m in grid.received if m.metadata.message_type == "query.score"]
    assert len(queries) == len(replies) == 3
    scores = [[float(r.content["metrics"][f"score-{i}"]) for i in range(4)] for r in replies]
    weights = [int(r.content["metrics"]["num-examples"]) for r in replies]
    mean = [sum(w * s[i] for w, s in zip(weights, scores)) / sum(weights) for i in range(4)]
    best = max(range(4), key=lambda i: (mean[i], i))
    assert _rows(cfg)[0]["selected_layers"] == [best]
    state = json.loads(Path(cfg.out, "checkpoint", "state.json").read_text())
    assert state["planner"]["scores"] == pytest.approx(mean)

"""DP-SGD state kept in a Flower node's Context.state across rounds; ε aggregated as a max."""

from __future__ import annotations

from typing import Any

import pytest
from flwr.app import ConfigRecord, Context, MetricRecord, RecordDict
from privacy_helpers import collate, tiny_bert, token_features

from fedskip.config import Config
from fedskip.fl.privacy import DPSGD_STATE, dpsgd_for, dpsgd_metrics, save_dpsgd, with_max_epsilon
from fedskip.privacy.accounting import epsilon_for, noise_multiplier_for
from fedskip.train.engine import TrainSettings, train


def _context() -> Context:
    return Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})


def _round(context: Context, cfg: Config, model: Any) -> Any:
    dp = dpsgd_for(context, cfg)
    settings = TrainSettings(batch_size=cfg.batch_size, lr=1e-2, quiet=True)
    train(
        model,
        token_features(40),
        collate,
        settings,
        epochs=cfg.local_epochs,
        device="cpu",
        privacy=dp,
    )
    save_dpsgd(context, dp)
    return dp


def test_accountant_composes_over_rounds_through_context_state() -> None:
    cfg = Config.from_mapping(
        {"dp": "sample", "noise-multiplier": 1.0, "batch-size": 8, "rounds": 3}
    )
    context, model = _context(), tiny_bert()
    for _ in range(3):
        dp = _round(context, cfg, model)
    record = context.state.config_records[DPSGD_STATE]
    assert isinstance(record, ConfigRecord) and list(record["steps"]) == [15]
    expected = epsilon_for(noise_multiplier=1.0, sample_rate=0.2, steps=15, delta=1e-5)
    assert dp.epsilon() == expected
    metrics = dpsgd_metrics(dp)
    assert metrics == {
        "epsilon": expected,
        "dp-delta": 1e-5,
        "dp-noise-multiplier": 1.0,
        "dp-steps": 15.0,
    }


def test_target_epsilon_plan_survives_context_state() -> None:
    cfg = Config.from_mapping(
        {"dp": "sample", "target-epsilon": 3.0, "batch-size": 8, "rounds": 2, "local-epochs": 1}
    )
    context, model = _context(), tiny_bert()
    for _ in range(2):
        dp = _round(context, cfg, model)
    sigma = noise_multiplier_for(target_epsilon=3.0, delta=1e-5, sample_rate=0.2, steps=10)
    assert dp.accountant.history == [(sigma, 0.2, 10)]
    assert 3.0 - 0.01 <= dp.epsilon() <= 3.0


def test_no_hook_without_sample_dp() -> None:
    assert dpsgd_for(_context(), Config()) is None
    assert dpsgd_for(_context(), Config.from_mapping({"dp": "client"})) is None


def test_round_epsilon_is_the_max_over_clients() -> None:
    def reply(n: int, eps: float, loss: float) -> RecordDict:
        return RecordDict(
            {"metrics": MetricRecord({"num-examples": n, "epsilon": eps, "train-loss": loss})}
        )

    metrics = with_max_epsilon()([reply(10, 1.0, 2.0), reply(30, 3.0, 1.0)], "num-examples")
    assert metrics["epsilon"] == 3.0
    assert metrics["train-loss"] == pytest.approx(1.25)

"""DP-SGD state kept in a Flower node's Context.state across rounds; ε aggregated as a max."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord, RecordDict

from fedskip.config import Config
from fedskip.fl import messages as M
from fedskip.fl.dpsgd_node import DP_STEPS_DONE, DPSGD_STATE, dpsgd_for, dpsgd_metrics, save_dpsgd
from fedskip.fl.round_loop import RoundLoop
from fedskip.fl.strategy.builder import LayerSkipFedAvg
from fedskip.fl.strategy.privacy import add_privacy, privacy_summary
from fedskip.fl.strategy.sample_dp import DPStepsLedger, with_max_epsilon
from fedskip.privacy.accounting import epsilon_for, noise_multiplier_for
from fedskip.privacy.checks import PrivacyWarning
from fedskip.train.engine import TrainSettings, train
from tests.privacy.privacy_helpers import (
    SIZE,
    TwoTensorPlanner,
    WireGrid,
    collate,
    delta_client_app,
    tiny_bert,
    token_features,
)


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
        {
            "dp": "sample",
            "noise-multiplier": 1.0,
            "batch-size": 8,
            "rounds": 3,
            "local-epochs": 1,
            "dp-step-report": True,
        }
    )
    context, model = _context(), tiny_bert()
    for _ in range(3):
        dp = _round(context, cfg, model)
    record = context.state.config_records[DPSGD_STATE]
    assert isinstance(record, ConfigRecord) and list(record["steps"]) == [15]
    expected = epsilon_for(noise_multiplier=1.0, sample_rate=0.2, steps=15, delta=1e-5)
    assert dp.epsilon() == expected
    assert dpsgd_metrics(dp) == {
        k: v
        for k, v in dpsgd_metrics(dp, step_report=True).items()
        if not k.endswith(("-norm", "-share"))
    }
    metrics = dpsgd_metrics(dp, step_report=True)  # dp-step-report: data statistics, opt-in
    step = {k: metrics.pop(k) for k in list(metrics) if k.endswith(("-norm", "-share"))}
    d = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert step["dp-noise-norm"] == pytest.approx(1.0 * cfg.clip_norm * d**0.5)
    assert set(step) == {"dp-signal-norm", "dp-noise-norm", "dp-clipped-share", "dp-unit-norm"}
    assert metrics == {
        "dp-unit": 0.0,  # example: no units were bound in this test
        "dp-units": 40.0,
        "epsilon": expected,
        "dp-delta": 1e-5,
        "dp-noise-multiplier": 1.0,
        "dp-sample-rate": 0.2,
        "dp-round-steps": 5.0,
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


def test_server_stops_before_a_round_that_would_exceed_the_target() -> None:
    """Clients report what one more round costs (σ, q, steps per round); planned for 2 rounds,
    a 3-round run ends cleanly after round 2 without sending round 3."""
    sigma = noise_multiplier_for(target_epsilon=2.0, delta=1e-5, sample_rate=0.2, steps=10)

    def reported(client: int, server_round: int) -> dict[str, float]:
        steps = 5 * server_round  # what a DP-SGD client with q = 0.2 and 1 local epoch composes
        eps = epsilon_for(noise_multiplier=sigma, sample_rate=0.2, steps=steps, delta=1e-5)
        return {"epsilon": eps, "dp-steps": steps, "dp-noise-multiplier": sigma} | {
            "dp-sample-rate": 0.2,
            "dp-round-steps": 5,
        }

    cfg = Config.from_mapping({"dp": "sample", "target-epsilon": 2.0, "rounds": 3})
    strategy = LayerSkipFedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=2,
        min_evaluate_nodes=0,
        min_available_nodes=2,
        planner=TwoTensorPlanner(),
        all_keys=["w", "u"],
        min_replies=1,
        seed=0,
    )
    strategy = add_privacy(strategy, cfg)
    grid = WireGrid(delta_client_app({0: 0.5, 1: 0.25}, metrics=reported), 2, {})
    initial = ArrayRecord(
        {"w": Array(np.zeros(SIZE, np.float32)), "u": Array(np.ones(7, np.float32))}
    )
    ended: list[int] = []
    loop = RoundLoop(strategy)
    with pytest.warns(PrivacyWarning, match="run stopped: privacy budget: one more round"):
        result = loop.start(
            grid=grid,
            initial_arrays=initial,
            num_rounds=3,
            on_round_end=lambda r, a, rec: ended.append(r),
        )
    assert ended == [1, 2]
    np.testing.assert_allclose(result.arrays["w"].numpy(), 0.75, rtol=1e-6)  # two rounds of 0.375
    train_configs = [
        m.content.config_records[M.CONFIG]
        for m in grid.delivered
        if m.metadata.message_type == "train"
    ]
    assert [list(c.get(DP_STEPS_DONE, [])) for c in train_configs] == [[], [], [5, 5], [5, 5]]
    assert strategy.rounds[2].train_metrics["epsilon"] <= 2.0
    summary = privacy_summary(cfg, [{"epsilon": 1.9}], strategy, stopped=loop.stopped)
    assert summary["stopped"].startswith("privacy budget")


def test_ledger_reports_the_weakest_privacy_unit_and_units_per_client() -> None:
    from fedskip.fl.strategy.privacy import privacy_summary

    ledger = DPStepsLedger()
    assert ledger.privacy_unit() is None
    ledger.record(0, {"dp-unit": 2.0, "dp-units": 12.0})
    ledger.record(1, {"dp-unit": 1.0, "dp-units": 30.0})  # a site without patient ids: notes
    assert ledger.privacy_unit() == "note" and ledger.units == {0: 12, 1: 30}
    restored = DPStepsLedger()
    restored.load_state_dict(ledger.state_dict())
    assert (restored.units, restored.unit_kinds) == ({0: 12, 1: 30}, {0: "patient", 1: "note"})
    summary = privacy_summary(
        Config.from_mapping({"dp": "sample"}), [], SimpleNamespace(dp_ledger=ledger)
    )
    assert (summary["privacy_unit"], summary["dp_units"]) == ("note", {"0": 12, "1": 30})
    assert "dp_warning" not in summary  # no step rates reported yet


def test_summary_warns_of_clients_whose_steps_sample_half_their_units() -> None:
    """Client 0 samples each of its 12 units at rate 0.67 a step, client 1 its 30 at 0.27."""
    from fedskip.fl.strategy.privacy import privacy_summary

    ledger = DPStepsLedger()
    ledger.record(
        0,
        {
            "dp-unit": 2.0,
            "dp-units": 12.0,
            "dp-noise-multiplier": 1.0,
            "dp-sample-rate": 8 / 12,
            "dp-round-steps": 2.0,
        },
    )
    ledger.record(
        1,
        {
            "dp-unit": 2.0,
            "dp-units": 30.0,
            "dp-noise-multiplier": 1.0,
            "dp-sample-rate": 8 / 30,
            "dp-round-steps": 4.0,
        },
    )
    summary = privacy_summary(
        Config.from_mapping({"dp": "sample"}), [], SimpleNamespace(dp_ledger=ledger)
    )
    assert summary["dp_warning"] == (
        "DP-SGD steps sampled half or more of a site's privacy units (client 0: 12 units, rate "
        "0.67): sampling amplifies almost nothing there and the noise swamps the few units a "
        "step averages; use a smaller batch-size × grad-accum or more units per site"
    )


@pytest.mark.parametrize("dp", ["sample", "client"])
def test_unnoised_dp_reports_infinite_epsilon_not_none(dp: str) -> None:
    """Clients cannot send ε = ∞ (only finite numbers travel): the server fills it in."""
    import math

    from fedskip.fl.strategy.privacy import privacy_summary, unnoised

    cfg = Config.from_mapping({"dp": dp, "noise-multiplier": 0})
    assert unnoised(cfg)
    assert privacy_summary(cfg, [{"epsilon": None}], None)["epsilon"] == math.inf
    planned = Config.from_mapping({"dp": dp, "noise-multiplier": 0, "target-epsilon": 4})
    assert not unnoised(planned)
    assert privacy_summary(planned, [], None)["epsilon"] is None

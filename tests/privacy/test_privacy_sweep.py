"""The ε-sweep configs for benchmarks and the per-client DP-SGD plan."""

from __future__ import annotations

import pytest

from fedskip.config import Config
from fedskip.privacy.accounting import epsilon_for
from fedskip.privacy.dpsgd import DPSGD, DPSGDSettings
from fedskip.privacy.sweep import epsilon_sweep, sample_dp_plan, sweep_settings


def test_epsilon_sweep_names_and_settings() -> None:
    base = Config.from_mapping({"rounds": 3, "out": "runs/sweep/"})
    runs = epsilon_sweep(base)
    assert [name for name, _ in runs] == [
        "layerskip-nodp",
        "layerskip-eps8",
        "layerskip-eps4",
        "layerskip-eps2",
        "layerskip-eps1",
        "fedavg-nodp",
        "fedavg-eps8",
        "fedavg-eps4",
        "fedavg-eps2",
        "fedavg-eps1",
    ]
    by_name = dict(runs)
    assert (by_name["fedavg-nodp"].dp, by_name["fedavg-nodp"].target_epsilon) == ("none", 0.0)
    eps2 = by_name["layerskip-eps2"]
    assert (eps2.method, eps2.dp, eps2.target_epsilon) == ("layerskip", "sample", 2.0)
    assert eps2.out == "runs/sweep/layerskip-eps2" and eps2.rounds == 3


def test_client_level_sweep_and_bad_epsilon() -> None:
    base = Config()
    ((_, cfg),) = epsilon_sweep(base, epsilons=[0.5], methods=["layerskip"], dp="client")
    assert (cfg.dp, cfg.target_epsilon) == ("client", 0.5)
    with pytest.raises(ValueError, match="must be > 0"):
        epsilon_sweep(base, epsilons=[0.0])


def test_plan_matches_what_dpsgd_will_do() -> None:
    cfg = Config.from_mapping(
        {"dp": "sample", "target-epsilon": 4.0, "rounds": 5, "local-epochs": 2, "batch-size": 8}
    )
    plan = sample_dp_plan(cfg, 200)
    assert (plan.sample_rate, plan.steps_per_round, plan.steps) == (0.04, 50, 250)
    dp = DPSGD(DPSGDSettings.from_config(cfg))
    dp.check_round(200, 8, epochs=2)  # plans σ for q = 8/200 over 5 × 2 epochs
    assert dp.noise_multiplier == plan.noise_multiplier
    assert 4.0 - 0.01 <= plan.epsilon <= 4.0


def test_plan_with_a_fixed_noise_multiplier() -> None:
    cfg = Config.from_mapping(
        {"dp": "sample", "noise-multiplier": 1.5, "rounds": 1, "local-epochs": 1, "batch-size": 4}
    )
    plan = sample_dp_plan(cfg, 100)
    assert plan.noise_multiplier == 1.5
    assert plan.epsilon == epsilon_for(noise_multiplier=1.5, sample_rate=0.04, steps=25, delta=1e-5)


def test_sweep_settings_are_config_keys() -> None:
    assert sweep_settings(None) == {"dp": "none", "target-epsilon": 0.0}
    assert sweep_settings(4) == {"dp": "sample", "target-epsilon": 4.0, "dp-unit": "patient"}
    cfg = Config.from_mapping(sweep_settings(2.0, dp="client"))
    assert (cfg.dp, cfg.target_epsilon) == ("client", 2.0)


@pytest.mark.parametrize(
    "units, rate, steps, sigma8, sigma2",
    [
        (100, 1.0, 20, 2.85, 9.65),
        (250, 0.512, 40, 2.24, 7.15),
        (500, 0.256, 80, 1.70, 5.14),
        (1000, 0.128, 160, 1.31, 3.69),
        (2000, 0.064, 320, 1.04, 2.66),
        (5000, 0.0256, 780, 0.81, 1.75),
        (10000, 0.0128, 1560, 0.70, 1.33),
    ],
)
def test_the_units_table_of_docs_privacy(
    units: int, rate: float, steps: int, sigma8: float, sigma2: float
) -> None:
    """docs/privacy.md, "Why a DP study needs many units": σ for ε = 8 and 2 over 20 rounds of
    one epoch, 64 × 2 units per step, δ = 1e-5."""
    cfg = Config(batch_size=64, grad_accum=2, rounds=20, dp="sample", target_epsilon=8.0)
    plan = sample_dp_plan(cfg, units)
    assert (min(1.0, 2 * plan.sample_rate), plan.steps) == (pytest.approx(rate), steps)
    assert round(plan.noise_multiplier, 2) == sigma8
    assert (
        round(sample_dp_plan(cfg.replace(target_epsilon=2.0), units).noise_multiplier, 2) == sigma2
    )

"""SecAgg+ on the legacy path: the server's aggregate equals the plain one within the quantization
step, and nothing the server receives is one client's update — checked on every message the
grid carried."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedskip.config import Config
from fedskip.errors import PrivacyBudgetExceeded
from fedskip.fl.privacy import DP_STEPS_DONE
from fedskip.fl.rounds import RoundPlan
from fedskip.fl.secagg import TRAIN_KEYS, _keys, _weight, secagg_client_app, secagg_update
from fedskip.fl.secagg_server import (
    QUANTIZATION_RANGE,
    UPDATE_RANGE,
    SecAggLayerSkip,
    run_secagg_rounds,
)
from fedskip.privacy.accounting import epsilon_for
from fedskip.privacy.client_dp import ClientDPSettings
from tests.fl.local_grid import LocalGrid
from tests.privacy.privacy_helpers import WireGrid

SHAPES = {"w": (40, 25), "b": (25,), "frozen": (3,)}
EXAMPLES = {0: 10, 1: 40, 2: 25, 3: 7}


class Planner:
    """Trains ``w`` and ``b`` every round (``frozen`` never travels)."""

    def needs_scores(self, server_round: int) -> bool:
        return False

    def plan(self, server_round: int, scores: list[float] | None) -> RoundPlan:
        return RoundPlan(layers=[0], train_keys=["w", "b"])


def client_update(pid: int, server_round: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(100 * server_round + pid)
    return {k: (0.01 * rng.normal(size=SHAPES[k])).astype(np.float32) for k in ("w", "b")}


class DeltaClient(NumPyClient):
    """Returns a known update per (client, round); client ``fail`` raises while training."""

    def __init__(self, context: Context, cfg: Config, fail: int | None) -> None:
        self.pid = int(context.node_config["partition-id"])
        self.cfg, self.fail = cfg, fail

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        if self.pid == self.fail:
            raise RuntimeError("hospital went offline")
        update = client_update(self.pid, int(config["server-round"]))
        n = EXAMPLES[self.pid]
        vector = secagg_update(update, _keys(config[TRAIN_KEYS]), self.cfg)
        steps = 5 * int(config["server-round"])  # as a DP-SGD client would report
        metrics = {"num-examples": n, "train-loss": float(self.pid), "client-id": self.pid}
        return vector, _weight(self.cfg, n), {**metrics, "dp-steps": steps}


def run(
    cfg: Config, *, secure: bool = True, rounds: int = 1, fail: int | None = None, **kw: Any
) -> tuple[SecAggLayerSkip, LocalGrid, list[int]]:
    def make(context: Context) -> Any:
        return DeltaClient(context, cfg, fail).to_client()

    app = secagg_client_app(make) if secure else ClientApp(client_fn=make)
    grid = WireGrid(app, len(EXAMPLES), {})
    grid.set_run(SimpleNamespace(run_id=1))
    ended: list[int] = []
    strategy = SecAggLayerSkip(
        global_state={k: np.zeros(s, np.float32) for k, s in SHAPES.items()},
        planner=Planner(),
        cfg=cfg,
        num_clients=len(EXAMPLES),
        on_round_end=lambda rnd, arrays, record: ended.append(rnd),
        **kw,
    )
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    if not secure:  # the same strategy over Flower's plain fit workflow, for comparison
        from flwr.server import ServerConfig
        from flwr.server.compat import LegacyContext
        from flwr.server.workflow import DefaultWorkflow

        legacy = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        DefaultWorkflow()(grid, legacy)
    else:
        run_secagg_rounds(grid, context, strategy, rounds)
    return strategy, grid, ended


def _cfg(**kw: Any) -> Config:
    base = {"secagg": True, "secagg-shares": 3, "secagg-threshold": 2, "clients": 4}
    base.update({"eval-clients": False, "partition": "iid"})
    return Config.from_mapping({**base, **{k.replace("_", "-"): v for k, v in kw.items()}})


def _plain_mean(server_round: int, clients: list[int]) -> dict[str, np.ndarray]:
    total = sum(EXAMPLES[c] for c in clients)
    return {
        k: sum(EXAMPLES[c] * client_update(c, server_round)[k].astype(np.float64) for c in clients)
        / total
        for k in ("w", "b")
    }


def _bound(num_clients: int, max_weight: float, weights: list[int], update_range: float) -> float:
    """Worst-case SecAgg+ error of the weighted mean: one quantization step per client on
    (n/max_weight)·Δ, divided by the sum of the weight ratios (plus weight rounding)."""
    step = 2 * update_range / QUANTIZATION_RANGE
    return 2 * num_clients * step / (sum(weights) / max_weight)


def test_secagg_mean_equals_plain_mean_and_server_sees_no_single_update() -> None:
    np.random.seed(0)  # SecAgg+'s stochastic rounding uses numpy's global generator
    strategy, grid, ended = run(_cfg(), rounds=2)
    plain, plain_grid, _ = run(_cfg(), secure=False, rounds=2)
    assert ended == [1, 2]
    everyone = sorted(EXAMPLES)
    for rnd, max_weight in ((1, 10_000.0), (2, 40.0)):
        expected = _plain_mean(rnd, everyone)
        bound = _bound(4, max_weight, list(EXAMPLES.values()), UPDATE_RANGE)
        inputs = strategy.fit_inputs[rnd - 1]
        assert len(inputs) == 4  # one FitRes per client, each holding ...
        for arrays in inputs:  # ... the same unmasked mean, not that client's update
            for got, key in zip(arrays, ("w", "b")):
                assert np.abs(got - expected[key]).max() <= bound
        for got, key in zip(plain.fit_inputs[rnd - 1][0], ("w", "b")):
            np.testing.assert_allclose(got, client_update(min(everyone), rnd)[key], atol=1e-7)
    np.testing.assert_allclose(
        strategy.global_state["w"], plain.global_state["w"], atol=2 * _bound(4, 1e4, [82], 1.0)
    )
    _assert_nothing_unmasked(grid)
    assert strategy.dp_ledger.as_list() == [10, 10, 10, 10]
    round2 = [m for m in grid.sent if "fitins.config" in m.content.config_records]
    assert round2[-1].content.config_records["fitins.config"][DP_STEPS_DONE] == "[5, 5, 5, 5]"


def _assert_nothing_unmasked(grid: LocalGrid) -> None:
    """No reply carries arrays; masked vectors share no entry pattern with any update."""
    updates = [
        np.concatenate([client_update(c, r)[k].ravel() for k in ("w", "b")])
        for c in EXAMPLES
        for r in (1, 2)
    ]
    masked_seen = 0
    for reply in grid.received:
        if reply.has_error():
            continue
        assert all(len(record) == 0 for record in reply.content.array_records.values())
        configs = reply.content.config_records.get(RECORD_KEY_CONFIGS, {})
        if Key.MASKED_PARAMETERS in configs:
            masked_seen += 1
            vector = np.concatenate(
                [bytes_to_ndarray(b).ravel() for b in configs[Key.MASKED_PARAMETERS]]
            )
            assert vector.dtype.kind in "iu"  # integers modulo 2³²: no float weights travel
            for update in updates:  # masked entries are uniform in [0, 2³²): unrelated
                assert abs(np.corrcoef(vector[1:].astype(np.float64), update)[0, 1]) < 0.2
    assert masked_seen == 8


def test_secagg_tolerates_a_dropout_within_the_threshold() -> None:
    np.random.seed(1)
    strategy, grid, _ = run(_cfg(min_replies=2), fail=2)
    record = strategy.records[1]
    assert record.replies_ok == 3 and record.replies_rejected == 1
    survivors = [0, 1, 3]
    expected = _plain_mean(1, survivors)
    bound = _bound(3, 10_000.0, [EXAMPLES[c] for c in survivors], UPDATE_RANGE)
    assert np.abs(strategy.global_state["w"] - expected["w"]).max() <= bound
    assert np.abs(strategy.global_state["b"] - expected["b"]).max() <= bound


def test_secagg_with_client_level_dp() -> None:
    """dp=client: clients clip Δ to C before masking (range ±C, weight 1), the server adds
    N(0, (σC/m)²) to the unmasked mean and accounts one release per round."""
    np.random.seed(2)
    cfg = _cfg(dp="client", clip_norm=0.05, noise_multiplier=0.0)
    strategy, _, _ = run(cfg, client_dp=ClientDPSettings.from_config(cfg))
    clipped = []
    for c in sorted(EXAMPLES):
        vec = secagg_update(client_update(c, 1), ["w", "b"], cfg)
        assert np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in vec)) == pytest.approx(0.05)
        clipped.append(vec[0].astype(np.float64))
    bound = _bound(4, 1.0, [1, 1, 1, 1], 0.05)
    assert np.abs(strategy.global_state["w"] - np.mean(clipped, axis=0)).max() <= bound
    noisy_cfg = _cfg(dp="client", clip_norm=0.05, noise_multiplier=2.0)
    noisy, _, _ = run(
        noisy_cfg,
        client_dp=ClientDPSettings.from_config(noisy_cfg),
        rng=np.random.default_rng(5),
    )
    noise = (noisy.global_state["w"] - strategy.global_state["w"]).astype(np.float64)
    assert noise.std() == pytest.approx(2.0 * 0.05 / 4, rel=0.1)
    assert noisy.records[1].train_metrics["epsilon"] == epsilon_for(
        noise_multiplier=2.0, sample_rate=1.0, steps=1, delta=1e-5
    )


def test_secagg_round_beyond_the_budget_is_refused_before_it_starts() -> None:
    np.random.seed(3)
    cfg = _cfg(dp="client", clip_norm=0.05, target_epsilon=3.0, rounds=1)
    with pytest.raises(PrivacyBudgetExceeded, match="the next round would raise ε"):
        run(cfg, rounds=2, client_dp=ClientDPSettings.from_config(cfg))

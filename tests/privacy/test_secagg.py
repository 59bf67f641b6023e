"""SecAgg+ as the training exchange of fedskip's main path: the server's aggregate equals the
plain one within the quantization step, and nothing the server receives is one client's
update — checked on every message the grid carried."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedskip.config import Config
from fedskip.federation.round_types import RoundPlan
from fedskip.fl import messages as M
from fedskip.fl.dpsgd_node import DP_STEPS_DONE
from fedskip.fl.round_loop import RoundLoop, plain_exchange
from fedskip.fl.secagg import TRAIN_KEYS, _keys, _weight, secagg_dispatch_mod, secagg_update
from fedskip.fl.secagg_server import NO_RESULT, QUANTIZATION_RANGE, UPDATE_RANGE, SecAggExchange
from fedskip.fl.strategy.builder import build_strategy
from fedskip.fl.strategy.privacy import add_privacy, privacy_summary
from fedskip.privacy.accounting import epsilon_for
from fedskip.privacy.checks import PrivacyWarning
from fedskip.privacy.units import unit_code
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
        units = {"dp-unit": float(unit_code("patient")), "dp-units": 3 * self.pid + 2}
        return vector, _weight(self.cfg, n), {**metrics, "dp-steps": steps, **units}


class Recording(SecAggExchange):
    """The exchange, keeping (for this test only) what it handed the strategy each round."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replies: list[list[Message]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> list[Message]:
        replies = super().__call__(*args, **kwargs)
        self.replies.append(replies)
        return replies


def client_app(cfg: Config, fail: int | None, *, secure: bool) -> ClientApp:
    """fedskip's ClientApp layout: identification and (without SecAgg+) training as plain
    messages, SecAgg+ stages through :func:`secagg_dispatch_mod`."""

    def make(context: Context) -> Any:
        return DeltaClient(context, cfg, fail).to_client()

    app = ClientApp(mods=[secagg_dispatch_mod(make)] if secure else [])

    @app.query("identify")
    def identify(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        record = M.to_metric_record({"num-examples": EXAMPLES[pid], M.CLIENT_ID: pid})
        return Message(RecordDict({M.METRICS: record}), reply_to=message)

    @app.train()
    def train(message: Message, context: Context) -> Message:  # the plain path, to compare
        pid = int(context.node_config["partition-id"])
        rnd = int(message.content.config_records[M.CONFIG][M.SERVER_ROUND])  # type: ignore[arg-type]
        received = M.to_numpy(message.content.array_records[M.ARRAYS])
        update = client_update(pid, rnd)
        trained = {k: received[k] + update[k] for k in ("w", "b")}
        metrics = {"num-examples": EXAMPLES[pid], "train-loss": float(pid)}
        content = RecordDict(
            {M.ARRAYS: M.to_array_record(trained), M.METRICS: M.to_metric_record(metrics)}
        )
        return Message(content, reply_to=message)

    return app


def run(
    cfg: Config,
    *,
    secure: bool = True,
    rounds: int = 1,
    fail: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[Any, WireGrid, Any]:
    """``rounds`` of fedskip's strategy for ``cfg`` over SecAgg+ (or plain messages); returns
    (strategy, grid, loop)."""
    grid = WireGrid(client_app(cfg, fail, secure=secure), len(EXAMPLES), {})
    grid.set_run(SimpleNamespace(run_id=1))
    core = build_strategy(
        cfg.replace(dp="none"), planner=Planner(), all_keys=list(SHAPES), num_clients=len(EXAMPLES)
    )
    strategy = add_privacy(core, cfg, rng=rng)
    exchange = Recording(cfg, train_keys=core.core.train_keys_of) if secure else plain_exchange
    loop = RoundLoop(strategy, train_exchange=exchange)
    ended: list[int] = []
    initial = M.to_array_record({k: np.zeros(SHAPES[k], np.float32) for k in ("w", "b")})
    result = loop.start(
        grid,
        initial,
        num_rounds=rounds,
        on_round_end=lambda rnd, arrays, record: ended.append(rnd),
    )
    loop.ended, loop.result = ended, result
    return strategy, grid, loop


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
    strategy, grid, loop = run(_cfg(dp="sample"), rounds=2)
    _, _, plain = run(_cfg(dp="sample"), secure=False, rounds=2)
    assert loop.ended == [1, 2]
    everyone = sorted(EXAMPLES)
    previous = {k: np.zeros(SHAPES[k]) for k in ("w", "b")}
    for rnd, max_weight in ((1, 10_000.0), (2, 40.0)):
        expected = _plain_mean(rnd, everyone)
        bound = _bound(4, max_weight, list(EXAMPLES.values()), UPDATE_RANGE)
        replies = loop.train_exchange.replies[rnd - 1]
        assert len(replies) == 4  # one reply per client, each holding ...
        for reply in replies:  # ... received + the unmasked mean, not that client's update
            arrays = M.to_numpy(reply.content.array_records[M.ARRAYS])
            for key in ("w", "b"):
                assert np.abs(arrays[key] - previous[key] - expected[key]).max() <= bound
        previous = M.to_numpy(replies[0].content.array_records[M.ARRAYS])
    final, plain_final = loop.result.arrays, plain.result.arrays
    np.testing.assert_allclose(
        final["w"].numpy(), plain_final["w"].numpy(), atol=2 * _bound(4, 1e4, [82], 1.0)
    )
    _assert_nothing_unmasked(grid)
    assert strategy.dp_ledger.as_list() == [10, 10, 10, 10]
    round2 = [m for m in grid.sent if "fitins.config" in m.content.config_records]
    assert round2[-1].content.config_records["fitins.config"][DP_STEPS_DONE] == "[5, 5, 5, 5]"
    assert strategy.rounds[2].clients == everyone  # sampled by client id, as on the main path


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
    strategy, _, loop = run(_cfg(min_replies=2), fail=2)
    record = strategy.rounds[1]
    assert record.replies_ok == 3 and record.replies_rejected == 1
    assert record.rejections == [f"train reply from client 2 rejected: client error: {NO_RESULT}"]
    survivors = [0, 1, 3]
    expected = _plain_mean(1, survivors)
    bound = _bound(3, 10_000.0, [EXAMPLES[c] for c in survivors], UPDATE_RANGE)
    for key in ("w", "b"):
        assert np.abs(loop.result.arrays[key].numpy() - expected[key]).max() <= bound


def test_secagg_with_client_level_dp() -> None:
    """dp=client: clients clip Δ to C before masking (range ±C, weight 1), the server adds
    N(0, (σC/m)²) to the unmasked mean, accounts one release per round and warns loudly that
    4 hospitals are too few for client-level DP (as the main path does: it is the main path)."""
    np.random.seed(2)
    cfg = _cfg(dp="client", clip_norm=0.05, noise_multiplier=0.0)
    with pytest.warns(PrivacyWarning, match=r"round 1 aggregated 4 client\(s\), fewer than 50"):
        strategy, _, loop = run(cfg)
    clipped = []
    for c in sorted(EXAMPLES):
        vec = secagg_update(client_update(c, 1), ["w", "b"], cfg)
        assert np.sqrt(sum(np.sum(v.astype(np.float64) ** 2) for v in vec)) == pytest.approx(0.05)
        clipped.append(vec[0].astype(np.float64))
    bound = _bound(4, 1.0, [1, 1, 1, 1], 0.05)
    clean = loop.result.arrays["w"].numpy()
    assert np.abs(clean - np.mean(clipped, axis=0)).max() <= bound
    summary = privacy_summary(cfg, [], strategy)
    assert summary["privacy_unit"] == "client" and "fewer than 50" in summary["dp_warning"]
    noisy_cfg = _cfg(dp="client", clip_norm=0.05, noise_multiplier=2.0)
    with pytest.warns(PrivacyWarning):
        noisy, _, noisy_loop = run(noisy_cfg, rng=np.random.default_rng(5))
    noise = (noisy_loop.result.arrays["w"].numpy() - clean).astype(np.float64)
    assert noise.std() == pytest.approx(2.0 * 0.05 / 4, rel=0.1)
    assert noisy.rounds[1].train_metrics["epsilon"] == epsilon_for(
        noise_multiplier=2.0, sample_rate=1.0, steps=1, delta=1e-5
    )


def test_secagg_round_beyond_the_budget_is_refused_before_it_starts() -> None:
    np.random.seed(3)
    cfg = _cfg(dp="client", clip_norm=0.05, target_epsilon=3.0, rounds=1)
    with pytest.warns(PrivacyWarning, match="run stopped: privacy budget"):
        _, grid, loop = run(cfg, rounds=2)
    assert loop.ended == [1] and "the next round would raise ε" in loop.stopped
    fit_rounds = {
        m.content.config_records["fitins.config"]["server-round"]
        for m in grid.sent
        if "fitins.config" in m.content.config_records
    }
    assert fit_rounds == {1}


def test_sample_dp_summary_has_the_unit_and_units_per_client() -> None:
    """dp=sample under SecAgg+: the clients' privacy units reach the summary (clear-text
    metrics, recorded by the same wrapper as on the main path)."""
    np.random.seed(4)
    strategy, _, _ = run(_cfg(dp="sample"))
    summary = privacy_summary(_cfg(dp="sample"), [], strategy)
    assert summary["privacy_unit"] == "patient"
    assert summary["dp_units"] == {str(c): 3 * c + 2 for c in sorted(EXAMPLES)}

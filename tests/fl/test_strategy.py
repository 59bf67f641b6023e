"""The layer-skip strategy on real Flower messages: what is sent, what is accepted, aggregates."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAdam

from fedskip.config import Config
from fedskip.federation.round_types import ClientsUnavailable, RoundPlan
from fedskip.fl import messages as M
from fedskip.fl.strategy.builder import LayerSkipFedAdam, LayerSkipFedAvg, build_strategy

ALL_KEYS = ["embed.w", "blk0.w", "blk1.w", "head.b"]


class FixedPlanner:
    """Trains ``plans[round]`` (block indices, tensor names)."""

    def __init__(self, plans: dict[int, tuple[list[int], list[str]]]) -> None:
        self.plans = plans

    def needs_scores(self, server_round: int) -> bool:
        return False

    def plan(self, server_round: int, scores: list[float] | None) -> RoundPlan:
        layers, keys = self.plans[server_round]
        return RoundPlan(layers, keys)


class NodesGrid(Grid):
    """A grid that only lists nodes (messages are answered by hand in these tests)."""

    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    def get_node_ids(self) -> Iterable[int]:
        return list(self.nodes)

    def set_run(self, run: Any) -> None: ...

    @property
    def run(self) -> Any:
        return None

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        raise NotImplementedError


def global_state() -> ArrayRecord:
    return M.to_array_record(
        {
            "blk0.w": np.zeros((2, 2), dtype=np.float32),
            "blk1.w": np.full((2, 2), 5.0, dtype=np.float32),
            "head.b": np.zeros(2, dtype=np.float32),
        }
    )


def make_strategy(
    plans: dict[int, tuple[list[int], list[str]]], *, nodes: int = 3, **cfg: Any
) -> Any:
    config = Config(eval_clients=False, **({"compression": "none"} | cfg))
    strategy = build_strategy(
        config, planner=FixedPlanner(plans), all_keys=ALL_KEYS, num_clients=nodes
    )
    strategy.client_ids = {10 + i: i for i in range(nodes)}
    return strategy


def reply(
    message: Message, tensors: dict[str, np.ndarray], examples: int, loss: float = 1.0
) -> Message:
    content = RecordDict(
        {
            "arrays": M.to_array_record(tensors),
            "metrics": MetricRecord({"num-examples": examples, "train-loss": loss}),
        }
    )
    return Message(content, reply_to=message)


def npy_bytes(name: str, array: np.ndarray) -> int:
    """What one tensor costs on the wire, computed without Flower: .npy bytes + key bytes."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return len(buffer.getvalue()) + len(name)


def test_sends_only_planned_tensors_and_counts_bytes() -> None:
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])})
    messages = list(
        strategy.configure_train(1, global_state(), ConfigRecord(), NodesGrid([10, 11, 12]))
    )
    assert [m.metadata.dst_node_id for m in messages] == [10, 11, 12]
    for message in messages:
        assert list(message.content["arrays"].keys()) == ["blk1.w", "head.b"]
        assert message.content["config"]["train-layers"] == [1]
        assert message.content["config"]["server-round"] == 1
    per_message = npy_bytes("blk1.w", np.zeros((2, 2), np.float32)) + npy_bytes(
        "head.b", np.zeros(2, np.float32)
    )
    assert per_message == 150 + 142
    assert strategy.rounds[1].bytes_down == 3 * per_message


def test_aggregate_is_the_example_weighted_mean() -> None:
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])})
    messages = list(
        strategy.configure_train(1, global_state(), ConfigRecord(), NodesGrid([10, 11, 12]))
    )
    values = [1.0, 2.0, 4.0]
    weights = [1, 1, 2]
    replies = [
        reply(
            m,
            {"blk1.w": np.full((2, 2), v, np.float32), "head.b": np.array([v, -v], np.float32)},
            w,
            loss=v,
        )
        for m, v, w in zip(messages, values, weights)
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    # (1*1 + 2*1 + 4*2) / 4 = 2.75
    np.testing.assert_array_equal(arrays["blk1.w"].numpy(), np.full((2, 2), 2.75, np.float32))
    np.testing.assert_array_equal(arrays["head.b"].numpy(), np.array([2.75, -2.75], np.float32))
    np.testing.assert_array_equal(arrays["blk0.w"].numpy(), np.zeros((2, 2), np.float32))
    assert metrics["train-loss"] == pytest.approx(2.75)
    record = strategy.rounds[1]
    assert (record.replies_ok, record.replies_rejected, record.failed) == (3, 0, False)
    assert record.bytes_up == sum(r.content["arrays"].count_bytes() for r in replies)


def _bad_replies(messages: list[Message]) -> list[Message]:
    good = {"blk1.w": np.ones((2, 2), np.float32), "head.b": np.ones(2, np.float32)}
    nan = {**good, "head.b": np.array([np.nan, 0.0], np.float32)}
    shape = {**good, "blk1.w": np.ones((4,), np.float32)}
    frozen = {**good, "embed.w": np.ones(3, np.float32)}
    unknown = {**good, "secret": np.ones(1, np.float32)}
    return [
        reply(messages[0], good, 3),
        reply(messages[1], {k: v * 3 for k, v in good.items()}, 1),
        reply(messages[2], nan, 5),
        reply(messages[3], shape, 5),
        reply(messages[4], frozen, 5),
        reply(messages[5], unknown, 5),
        Message(Error(code=0, reason="out of memory"), reply_to=messages[6]),
    ]


def test_bad_replies_are_rejected_and_the_round_completes() -> None:
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])}, nodes=7, min_replies=2)
    grid = NodesGrid(list(range(10, 17)))
    messages = list(strategy.configure_train(1, global_state(), ConfigRecord(), grid))
    arrays, _ = strategy.aggregate_train(1, _bad_replies(messages))
    assert arrays is not None
    # only the two good replies count: (1*3 + 3*1) / 4 = 1.5
    np.testing.assert_array_equal(arrays["blk1.w"].numpy(), np.full((2, 2), 1.5, np.float32))
    record = strategy.rounds[1]
    assert (record.replies_ok, record.replies_rejected) == (2, 5)
    reasons = "\n".join(record.rejections)
    for expected in (
        "client 2 rejected: tensor 'head.b' has 1 non-finite",
        "client 3 rejected: tensor 'blk1.w' has shape (4,)",
        "client 4 rejected: sent 1 frozen tensor(s): 'embed.w'",
        "client 5 rejected: sent 1 unknown tensor(s): 'secret'",
        "client 6 rejected: client error: out of memory",
    ):
        assert expected in reasons


def test_too_few_valid_replies_fail_the_round() -> None:
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])}, nodes=7, min_replies=3)
    messages = list(
        strategy.configure_train(1, global_state(), ConfigRecord(), NodesGrid(list(range(10, 17))))
    )
    arrays, metrics = strategy.aggregate_train(1, _bad_replies(messages))
    assert arrays is None and metrics is None
    record = strategy.rounds[1]
    assert record.failed
    assert record.failure.startswith("2 valid train replies, fewer than min-replies=3")


def test_dynamic_rounds_send_changed_tensors_and_keep_unreturned_ones() -> None:
    plans = {1: ([0], ["blk0.w", "head.b"]), 2: ([1], ["blk1.w", "head.b"])}
    strategy = make_strategy(plans, nodes=2)
    grid = NodesGrid([10, 11])
    messages = list(strategy.configure_train(1, global_state(), ConfigRecord(), grid))
    assert list(messages[0].content["arrays"].keys()) == ["blk0.w", "head.b"]
    one = {"blk0.w": np.ones((2, 2), np.float32), "head.b": np.ones(2, np.float32)}
    arrays, _ = strategy.aggregate_train(1, [reply(m, one, 1) for m in messages])
    assert arrays is not None
    messages = list(strategy.configure_train(2, arrays, ConfigRecord(), grid))
    # block 0 changed in round 1, so clients need it to run the current global model
    assert list(messages[0].content["arrays"].keys()) == ["blk0.w", "blk1.w", "head.b"]
    two = {"blk1.w": np.full((2, 2), 7.0, np.float32), "head.b": np.full(2, 7.0, np.float32)}
    stale = {**two, "blk0.w": np.full((2, 2), 9.0, np.float32)}  # block 0 is frozen this round
    arrays, _ = strategy.aggregate_train(
        2, [reply(messages[0], two, 1), reply(messages[1], stale, 1)]
    )
    assert arrays is not None
    np.testing.assert_array_equal(arrays["blk0.w"].numpy(), np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(arrays["blk1.w"].numpy(), np.full((2, 2), 7.0, np.float32))
    assert strategy.rounds[2].replies_rejected == 1
    assert "frozen tensor(s): 'blk0.w'" in strategy.rounds[2].rejections[0]


def test_fedadam_step_equals_flowers_fedadam() -> None:
    plans = {r: ([1], ["blk1.w", "head.b"]) for r in (1, 2)}
    ours = make_strategy(plans, server_optimizer="adam", server_lr=0.1)
    assert isinstance(ours, LayerSkipFedAdam)
    theirs = FedAdam(eta=0.1, min_available_nodes=3)
    grid = NodesGrid([10, 11, 12])
    start = M.subset(global_state(), ["blk1.w", "head.b"])
    ours_arrays, theirs_arrays = global_state(), start
    rng = np.random.default_rng(0)
    for rnd in (1, 2):
        updates = [
            {k: rng.normal(size=v.shape).astype(np.float32) for k, v in M.to_numpy(start).items()}
            for _ in range(3)
        ]
        mine = list(ours.configure_train(rnd, ours_arrays, ConfigRecord(), grid))
        ours_arrays, _ = ours.aggregate_train(
            rnd, [reply(m, u, i + 1) for i, (m, u) in enumerate(zip(mine, updates))]
        )
        flower = sorted(
            theirs.configure_train(rnd, theirs_arrays, ConfigRecord(), grid),
            key=lambda m: m.metadata.dst_node_id,
        )
        theirs_arrays, _ = theirs.aggregate_train(
            rnd, [reply(m, u, i + 1) for i, (m, u) in enumerate(zip(flower, updates))]
        )
        for key in ("blk1.w", "head.b"):
            np.testing.assert_allclose(
                ours_arrays[key].numpy(), theirs_arrays[key].numpy(), rtol=1e-6, atol=1e-7
            )
    state = ours.state_dict()
    assert sorted(state["m_t"]) == ["blk1.w", "head.b"] and sorted(state["touched"]) == [
        "blk1.w",
        "head.b",
    ]


def test_fedprox_sends_mu_and_fedavg_does_not() -> None:
    prox = make_strategy({1: ([1], ["head.b"])}, method="fedprox", proximal_mu=0.5)
    message = next(
        iter(prox.configure_train(1, global_state(), ConfigRecord(), NodesGrid([10, 11, 12])))
    )
    assert message.content["config"]["proximal-mu"] == 0.5
    plain = make_strategy({1: ([1], ["head.b"])})
    assert isinstance(plain, LayerSkipFedAvg)
    message = next(
        iter(plain.configure_train(1, global_state(), ConfigRecord(), NodesGrid([10, 11, 12])))
    )
    assert "proximal-mu" not in message.content["config"]


def test_evaluation_sends_changed_tensors_and_weights_metrics() -> None:
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])}, nodes=2)
    strategy.fraction_evaluate = 1.0
    strategy.touched = {"head.b"}
    grid = NodesGrid([10, 11])
    messages = list(strategy.configure_evaluate(1, global_state(), ConfigRecord(), grid))
    assert [list(m.content["arrays"].keys()) for m in messages] == [["head.b"], ["head.b"]]
    replies = [
        Message(
            RecordDict({"metrics": MetricRecord({"num-examples": 1, "f1": 0.2})}),
            reply_to=messages[0],
        ),
        Message(
            RecordDict({"metrics": MetricRecord({"num-examples": 3, "f1": 0.6})}),
            reply_to=messages[1],
        ),
    ]
    metrics = strategy.aggregate_evaluate(1, replies)
    assert metrics is not None and metrics["f1"] == pytest.approx(0.5)
    assert strategy.rounds[1].bytes_eval == 2 * npy_bytes("head.b", np.zeros(2, np.float32))


def test_a_site_that_left_is_skipped_when_min_replies_are_online() -> None:
    """After identification a round needs only min-replies connected clients, not all of them."""
    strategy = make_strategy({1: ([1], ["blk1.w", "head.b"])}, nodes=3, min_replies=2)
    strategy.node_wait_s = 0.0
    grid = NodesGrid([10, 12])  # client 1 (node 11) died after identifying itself
    messages = list(strategy.configure_train(1, global_state(), ConfigRecord(), grid))
    assert sorted(m.metadata.dst_node_id for m in messages) == [10, 12]
    assert strategy.rounds[1].rejections == [
        "clients [1] not connected; round 1 goes on without them"
    ]
    with pytest.raises(ClientsUnavailable, match="only 1 of 2 SuperNodes connected"):
        strategy.configure_train(2, global_state(), ConfigRecord(), NodesGrid([10]))


def test_the_builder_configures_compression_evaluation_and_the_run_token() -> None:
    base = {"blk1.w": np.full((2, 2), 5.0, np.float32), "head.b": np.zeros(2, np.float32)}
    cfg = Config(compression="fp16", personalize="none")
    plain = Config(compression="none", personalize="none")
    build = {"planner": FixedPlanner({}), "all_keys": ALL_KEYS, "num_clients": 3}
    compressed = build_strategy(cfg, base=base, client_evaluation=False, **build)
    assert (compressed.compression, sorted(compressed.base)) == ("fp16", ["blk1.w", "head.b"])
    assert (compressed.fraction_evaluate, compressed.min_evaluate_nodes) == (0.0, 0)
    assert len(compressed.run_token) == 12  # the sites keep error feedback: a fresh run's token
    uncompressed = build_strategy(plain, **build)
    assert (uncompressed.compression, uncompressed.base, uncompressed.run_token) == ("none", {}, "")
    assert (uncompressed.fraction_evaluate, uncompressed.min_evaluate_nodes) == (1.0, 1)
    with pytest.raises(ValueError, match="needs the base values"):
        build_strategy(cfg, **build)


def test_a_resumed_strategy_takes_its_run_token_from_the_checkpoint() -> None:
    cfg = Config(personalize="head", compression="none")
    strategy = build_strategy(cfg, planner=FixedPlanner({}), all_keys=ALL_KEYS, num_clients=3)
    assert len(strategy.run_token) == 12
    strategy.load_state_dict({"touched": ["head.b"], "run_token": "abc"})
    assert (strategy.run_token, strategy.touched) == ("abc", {"head.b"})
    strategy.load_state_dict({"touched": []})  # a checkpoint of a run without a token
    assert strategy.run_token == ""


def test_a_site_name_already_claimed_by_another_client_is_ignored() -> None:
    from fedskip.fl.strategy.core import claim_site_name

    names: dict[int, str] = {}
    claim_site_name(names, 0, "site-a")
    claim_site_name(names, 1, "site-a")  # e.g. both sites' data files are notes.jsonl
    claim_site_name(names, 2, None)  # no site-name configured: nothing sent
    claim_site_name(names, 0, "site-a")  # identifying again keeps its own name
    assert names == {0: "site-a"}

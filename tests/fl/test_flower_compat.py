"""The Flower internals fedskip relies on (fedskip.fl.flower_compat), exercised against the
installed Flower: when an upgrade renames or changes one, these fail first and say which."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MessageType,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp.strategy import FedAdam, FedAvg, FedYogi

from fedskip.fl.flower_compat import (
    KEY_CLIPPING_NORM,
    aggregate_metricrecords,
    construct_messages,
    fedopt_step,
)


def test_construct_messages_is_flowers_private_builder() -> None:
    params = list(inspect.signature(FedAvg._construct_messages).parameters)
    assert params == ["self", "record", "node_ids", "message_type"], "Flower changed it"
    content = RecordDict({"config": ConfigRecord({"server-round": 1})})
    messages = construct_messages(FedAvg(), content, [3, 5], MessageType.TRAIN)
    assert [m.metadata.dst_node_id for m in messages] == [3, 5]
    assert all(m.metadata.message_type == MessageType.TRAIN for m in messages)
    assert all(m.content["config"]["server-round"] == 1 for m in messages)


@pytest.mark.parametrize("flower_class", [FedAdam, FedYogi])
def test_fedopt_keeps_its_state_where_fedskip_sets_it(flower_class: type[FedAdam]) -> None:
    """After one step Flower's own FedAdam / FedYogi hold ``current_arrays``, ``m_t`` and
    ``v_t`` as dicts by tensor name: the attributes fedopt_step sets and reads."""
    arrays = ArrayRecord({"w": Array(np.zeros(3, np.float32))})
    theirs = flower_class(eta=0.1, min_available_nodes=1)
    (instruction,) = theirs._construct_messages(RecordDict({"arrays": arrays}), [1], "train")
    theirs.current_arrays = {"w": np.zeros(3, np.float32)}  # as configure_train sets it
    reply = Message(
        RecordDict(
            {
                "arrays": ArrayRecord({"w": Array(np.ones(3, np.float32))}),
                "metrics": MetricRecord({theirs.weighted_by_key: 1}),
            }
        ),
        reply_to=instruction,
    )
    stepped, _ = theirs.aggregate_train(1, [reply])
    assert stepped is not None
    for name in ("current_arrays", "m_t", "v_t"):
        state = getattr(theirs, name)
        assert isinstance(state, dict) and set(state) == {"w"}, f"Flower changed {name}"

    ours = flower_class(eta=0.1)
    moments: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = ({}, {})
    new = fedopt_step(
        ours, 1, {"w": np.zeros(3, np.float32)}, {"w": np.ones(3, np.float32)}, moments
    )
    np.testing.assert_array_equal(new["w"], stepped["w"].numpy().astype(np.float32))
    np.testing.assert_array_equal(moments[0]["w"], theirs.m_t["w"])
    np.testing.assert_array_equal(moments[1]["w"], theirs.v_t["w"])


def test_fedopt_step_keeps_moments_of_tensors_not_in_the_round() -> None:
    moments = ({"other": np.full(2, 7.0)}, {"other": np.full(2, 9.0)})
    fedopt_step(FedAdam(eta=0.1), 1, {"w": np.zeros(2)}, {"w": np.ones(2)}, moments)
    assert set(moments[0]) == {"other", "w"} and moments[0]["other"].tolist() == [7.0, 7.0]


def test_client_side_clipping_key_and_metric_averaging() -> None:
    assert KEY_CLIPPING_NORM == "clipping_norm"
    records = [
        RecordDict({"metrics": MetricRecord({"num-examples": 1, "loss": 1.0})}),
        RecordDict({"metrics": MetricRecord({"num-examples": 3, "loss": 3.0})}),
    ]
    assert aggregate_metricrecords(records, "num-examples")["loss"] == 2.5

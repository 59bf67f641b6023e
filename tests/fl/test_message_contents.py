"""What leaves a site, for every way a run can be configured: each reply of a real one-round run
(real ServerApp and ClientApps over an in-process grid that copies messages as the network
would) carries nothing but the tensors the site trained — as the wire scheme encodes them — and
numbers of known meaning (docs/deployment.md §8). One row per configuration."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key

from fedskip.compression import SCALE_SUFFIX
from fedskip.config import Config
from fedskip.fl import messages as M
from fedskip.fl.wire_compression import WIRE_DTYPES
from tests.fl.conftest import DATA_WORDS
from tests.fl.local_grid import wire_bytes
from tests.privacy.privacy_helpers import WireGrid

pytestmark = pytest.mark.slow

NUMBERS = re.compile(
    r"^(num-examples|num_examples|client-id|train-(loss|steps|seconds)|epsilon"
    r"|dp-(delta|noise-multiplier|round-steps|sample-rate|steps|unit|units)|score-\d+"
    r"|(personal-)?(f1|precision|recall|sentences|accuracy|macro_f1|micro_f1|auroc|documents))$"
)
"""Every number a reply may carry (their meaning: docs/deployment.md §8)."""

SECAGG_PROTOCOL = {
    Key.PUBLIC_KEY_1,
    Key.PUBLIC_KEY_2,
    Key.DESTINATION_LIST,
    Key.CIPHERTEXT_LIST,
    Key.MASKED_PARAMETERS,
    Key.NODE_ID_LIST,
    Key.SHARE_LIST,
}
"""SecAgg+ reply fields: public keys, encrypted shares, masked (integer) vectors, the shares
of dropped-out neighbours' secrets, node ids."""

CASES = {
    "default-int8": {"compression": "auto"},
    "fp16": {"compression": "fp16"},
    "dp-sgd": {"dp": "sample", "noise_multiplier": 1.0, "clip_norm": 1.0},
    "client-dp": {"dp": "client", "noise_multiplier": 0.5, "clip_norm": 1.0},
    "secagg": {"secagg": True, "secagg_shares": 3, "secagg_threshold": 2},
    "personalization": {"personalize": "head"},
    "importance": {"layer_strategy": "importance"},
}


def _run(cfg: Config) -> WireGrid:
    from fedskip.fl.client_app import build_client_app
    from fedskip.fl.server import run_server
    from fedskip.pipeline import prepare

    run_config = cfg.to_run_config()
    grid = WireGrid(build_client_app(run_config), prepare(cfg).num_clients, run_config)
    grid.set_run(SimpleNamespace(run_id=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # privacy warnings of tiny runs (few clients)
        run_server(grid, cfg)
    return grid


def _trainable(cfg: Config) -> tuple[Any, set[str]]:
    """The model's block stack, and the names of the tensors a site may send: its trainable
    parameters (any block, head, final norm) less those that stay at the site."""
    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle, personal_names, trainable_names

    bundle = load_bundle(cfg, prepare(cfg))
    every = range(bundle.stack.num_blocks)
    names = set(trainable_names(bundle, cfg, list(every)))
    return bundle, names - set(personal_names(bundle, cfg, sorted(names)))


def _check_arrays(record: ArrayRecord, sent: set[str], cfg: Config, shapes: dict[str, Any]) -> None:
    wire = WIRE_DTYPES[cfg.wire_compression]
    for name, array in record.items():
        tensor = name.removesuffix(SCALE_SUFFIX)
        assert tensor in sent, name  # a trainable tensor the server asked this site for
        if name.endswith(SCALE_SUFFIX):
            assert cfg.wire_compression == "int8" and array.dtype == "float32", name
        else:
            assert array.dtype == wire and tuple(array.shape) == shapes[name], name


def _check_numbers(record: MetricRecord | ConfigRecord) -> None:
    for key, value in record.items():
        assert NUMBERS.match(key), key
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (key, value)


def _check_secagg(name: str, record: ConfigRecord) -> None:
    if name == "fitres.status":  # Flower's legacy status: code 0, its fixed message
        assert dict(record) == {"code": 0, "message": "Success"}
    elif name == "fitres.metrics":
        _check_numbers(record)
    else:
        assert name == RECORD_KEY_CONFIGS and set(record) <= SECAGG_PROTOCOL, (name, set(record))
        for blob in record.get(Key.MASKED_PARAMETERS, []):
            assert bytes_to_ndarray(blob).dtype.kind in "iu"  # integers mod 2³², not weights


def _instruction_tensors(grid: WireGrid) -> dict[str, set[str]]:
    """The tensors each train instruction sent, by message id."""
    return {
        m.metadata.message_id: {k.removesuffix(SCALE_SUFFIX) for k in m.content[M.ARRAYS]}
        for m in grid.sent
        if m.metadata.message_type == "train" and M.ARRAYS in m.content.array_records
    }


@pytest.mark.parametrize("changes", list(CASES.values()), ids=list(CASES))
def test_replies_carry_only_trained_tensors_and_numbers(
    changes: dict[str, Any], make_cfg: Callable[..., Config]
) -> None:
    cfg = make_cfg(rounds=1, **changes)
    grid = _run(cfg)
    bundle, shared = _trainable(cfg)
    shapes = {n: tuple(p.shape) for n, p in bundle.model.named_parameters()}
    asked = _instruction_tensors(grid)
    replies = [m for m in grid.received if m.metadata.message_type != "query.identify"]
    assert replies and all(m.has_content() for m in grid.received), "a site failed"
    kinds = set()
    for reply in replies:
        for name, record in reply.content.items():
            kinds.add(type(record).__name__)
            if isinstance(record, ArrayRecord):
                sent = asked.get(reply.metadata.reply_to_message_id, set()) & shared
                assert len(record) == 0 or sent, name  # tensors only in a train reply
                _check_arrays(record, sent, cfg, shapes)
            elif isinstance(record, MetricRecord):
                _check_numbers(record)
            else:
                assert cfg.secagg, (name, type(record))  # no other records on the plain path
                _check_secagg(name, record)
    assert "ArrayRecord" in kinds and "MetricRecord" in kinds
    wire = wire_bytes(grid.received).lower()
    assert not [word for word in DATA_WORDS if word.encode() in wire]


def test_the_checks_catch_what_must_not_leave(make_cfg: Callable[..., Config]) -> None:
    """The checks above are not vacuous: a frozen tensor, a personal head, a wrong dtype, a
    note's text in a config record or a non-numeric metric each fail them."""
    cfg = make_cfg(personalize="head")
    bundle, shared = _trainable(cfg)
    shapes = {n: tuple(p.shape) for n, p in bundle.model.named_parameters()}
    params = dict(bundle.model.named_parameters())
    head = next(n for n in params if bundle.stack.is_head(n))
    frozen = next(n for n in params if bundle.stack.block_of(n) is None and n != head)
    trained = next(n for n in shared if not bundle.stack.is_head(n))
    asked = {head, frozen, trained}

    def record(name: str, dtype: str = "float32") -> ArrayRecord:
        return ArrayRecord({name: Array(np.zeros(shapes[name], dtype=dtype))})

    _check_arrays(record(trained), asked & shared, cfg, shapes)  # what may leave
    for leak in (record(head), record(frozen), record(trained, "float64")):
        with pytest.raises(AssertionError):
            _check_arrays(leak, asked & shared, cfg, shapes)
    with pytest.raises(AssertionError):
        _check_secagg("fitres.status", ConfigRecord({"code": 0, "message": "patient denies"}))
    with pytest.raises(AssertionError):
        _check_numbers(ConfigRecord({"note": "patient denies chest pain"}))

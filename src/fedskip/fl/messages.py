"""What travels between the fedskip ServerApp and ClientApps, and how it is counted.

Protocol (Flower Message API; record names are the keys of the message's ``RecordDict``):

- train instruction: ``arrays`` — current global values of the tensors the client needs
  (the tensors it trains, plus any tensor earlier rounds changed away from the pretrained
  weights), fp32; ``config`` — ``server-round``, ``train-layers`` (block indices trained this
  round, layer skipping only), ``proximal-mu`` (FedProx) and, under ``personalize`` or
  ``compression``, ``fedskip-run`` (the run's token, which keys the state the sites keep: their
  personal tensors, their error-feedback residuals).
- train reply: ``arrays`` — the updated values of exactly the tensors the client trained, fp32;
  ``metrics`` — ``num-examples`` (training examples, what FedAvg weights by) and numbers only.
- evaluate instruction: ``arrays`` as above; reply: ``metrics`` with ``num-examples`` (and,
  under ``personalize``, the site's own model's scores as ``personal-<metric>``).

Under ``personalize`` a site's personal tensors (its head and/or norms) are in no message, in
either direction: the train keys are the shared tensors only (:mod:`fedskip.fl.personal`).
- query ``identify``: reply ``metrics`` with ``client-id`` (partition index) and ``num-examples``.
- query ``score``: ``arrays`` as above; reply ``metrics`` with ``num-examples`` and ``score-<i>``
  per block (layer importance for ``layer-strategy=importance``).

Frozen tensors never travel, and neither does any text or token of the data: only tensors of
the model and numeric metrics leave a client. Everything is fp32 on the wire because an
``ArrayRecord`` cannot carry bfloat16. Traffic is measured with ``ArrayRecord.count_bytes()``
over the records actually placed in (or received in) messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedskip.federation.validation import NUM_EXAMPLES, TensorSpec

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"

SERVER_ROUND = "server-round"
TRAIN_LAYERS = "train-layers"
PROXIMAL_MU = "proximal-mu"
CLIENT_ID = "client-id"
SCORE_PREFIX = "score-"
RUN_TOKEN = "fedskip-run"
PERSONAL_PREFIX = "personal-"

QUERY_IDENTIFY = "query.identify"
QUERY_SCORE = "query.score"


def to_array_record(state: Mapping[str, torch.Tensor | np.ndarray]) -> ArrayRecord:
    """Tensors → ``ArrayRecord`` in fp32 (bf16/fp16 weights are upcast; the wire is fp32)."""
    record = ArrayRecord()
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            array = value.detach().to("cpu", torch.float32).contiguous().numpy()
        else:
            array = np.ascontiguousarray(value, dtype=np.float32)
        record[name] = Array(array)
    return record


def to_numpy(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Decode every tensor of a record (dtype as sent; never unpickles)."""
    return {name: array.numpy() for name, array in record.items()}


def to_torch(record: ArrayRecord) -> dict[str, torch.Tensor]:
    """Decode a record into CPU tensors (fp32 as sent)."""
    return {
        name: torch.from_numpy(np.array(arr, copy=True)) for name, arr in to_numpy(record).items()
    }


def subset(record: ArrayRecord, keys: Iterable[str]) -> ArrayRecord:
    """A record holding only ``keys`` of ``record`` (shares the serialized arrays, no copy)."""
    out = ArrayRecord()
    for key in keys:
        out[key] = record[key]
    return out


def specs(record: ArrayRecord) -> dict[str, TensorSpec]:
    """Shape and dtype of each tensor, read from the record's metadata (no decoding)."""
    return {name: TensorSpec(tuple(arr.shape), str(arr.dtype)) for name, arr in record.items()}


def array_bytes(content: RecordDict) -> int:
    """Bytes of model tensors in a message: ``count_bytes()`` summed over its ArrayRecords."""
    return sum(record.count_bytes() for record in content.array_records.values())


def message_array_bytes(messages: Iterable[Message]) -> int:
    """Tensor bytes carried by messages that have content (error replies carry none)."""
    return sum(array_bytes(m.content) for m in messages if m.has_content())


def numeric_metrics(values: Mapping[str, Any]) -> dict[str, int | float]:
    """The finite scalar numbers of a metrics dict (nested dicts, strings and None dropped).

    Booleans become 0/1. This is the only path by which client metrics enter a message, so
    nothing but numbers can leave a client through metrics.
    """
    out: dict[str, int | float] = {}
    for key, value in values.items():
        if isinstance(value, (bool, int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)) and math.isfinite(float(value)):
            out[key] = float(value)
    return out


def to_metric_record(values: Mapping[str, Any]) -> MetricRecord:
    """Numeric metrics → ``MetricRecord`` (see :func:`numeric_metrics`)."""
    record: dict[str, int | float | list[int] | list[float]] = {**numeric_metrics(values)}
    return MetricRecord(record)


def metric_dict(content: RecordDict) -> dict[str, Any]:
    """The reply's ``metrics`` record as a plain dict (empty when absent)."""
    records = content.metric_records
    if METRICS in records:
        return dict(records[METRICS])
    return dict(next(iter(records.values()))) if records else {}


def num_examples(content: RecordDict) -> int:
    """The ``num-examples`` of a (validated) reply."""
    return int(metric_dict(content)[NUM_EXAMPLES])


SITE = "site"
"""ConfigRecord of an identification reply: ``name``, the site's configured name (node config
``site-name``; sent only when set, never derived from a local file or folder name), so a
deployment names a site's rows as simulation does (there the coordinator knows the names). The
only text a site sends, and never from its data; a name another client already claimed is
ignored (the site is then ``client-<id>``)."""
_SITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def site_record(name: str) -> ConfigRecord:
    """The :data:`SITE` record of an identification reply."""
    return ConfigRecord({"name": name})


def site_name_of(content: RecordDict) -> str | None:
    """The site name of an identification reply; None when absent or not a plain name (at most
    64 letters, digits, ``.``, ``_``, ``-``: a reply is untrusted)."""
    record = content.config_records.get(SITE)
    name = record.get("name") if record is not None else None
    return name if isinstance(name, str) and _SITE_NAME.fullmatch(name) else None

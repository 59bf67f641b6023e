"""How Flower 1.42 carries a large message, and why LLaMA 3.2-1B's fit no matter the k.

A 1.42 message is never one transfer: its ``RecordDict`` is deflated into a tree of objects
(record dict → array record → array → array chunks), and the SuperNode / ServerApp push and
pull each object separately over HTTP (``/push-object``, ``/pull-object``). An ``Array``'s data
is cut into ``ArrayChunk`` objects of at most ``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`` bytes
(5 MiB), so the largest transfer does not grow with the message: gRPC's 2 GiB ceiling
(``GRPC_MAX_MESSAGE_LENGTH``, still the Control API's limit) and the 2 GiB frame limit of
Flower's protobuf streams never see the model tensors. These tests run Flower's own deflation;
a message above 2 GiB is shown by its object sizes, computed from LLaMA 3.2-1B's real shapes.
"""

from __future__ import annotations

import math

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.common.constant import FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
from flwr.supercore.constant import MAX_PROTOBUF_STREAM_MESSAGE_LENGTH
from flwr.supercore.grpc import GRPC_MAX_MESSAGE_LENGTH
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents

from fedskip.models.loading import build_meta_model

CHUNK = FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE
CHUNK_HEADER = 20
"""Bytes Flower adds to each chunk's data (object type and body length)."""
NPY_HEADER = 128
"""``np.save``'s header of a float32 array of up to 2 dimensions (what ``Array.data`` holds)."""


def _objects(record: RecordDict) -> dict[str, bytes]:
    """Every object Flower pushes for ``record``: object id → deflated bytes."""
    return {oid: obj.deflate() for oid, obj in get_all_nested_objects(record).items()}


def _chunk_sizes(record: RecordDict) -> list[int]:
    """Deflated sizes of the ``ArrayChunk`` objects of ``record``, largest first."""
    objects = get_all_nested_objects(record).values()
    chunks = [o for o in objects if type(o).__name__ == "ArrayChunk"]
    return sorted((len(o.deflate()) for o in chunks), reverse=True)


def test_flower_chunk_size_is_5_mib() -> None:
    # the sizes below (and docs/deployment.md) rest on it; Flower reads it once at import
    assert CHUNK == 5 * 1024 * 1024
    assert GRPC_MAX_MESSAGE_LENGTH == MAX_PROTOBUF_STREAM_MESSAGE_LENGTH == 2**31 - 1


def test_an_array_larger_than_a_chunk_travels_as_chunks_and_comes_back_whole() -> None:
    values = np.random.default_rng(0).standard_normal(3 * CHUNK // 4 + 100, dtype=np.float32)
    record = RecordDict({"arrays": ArrayRecord({"w": Array(values)})})
    contents = _objects(record)
    data = len(Array(values).data)  # npy bytes: 15,729,168
    assert data == values.nbytes + NPY_HEADER
    # three full chunks and the rest (15,729,168 - 3 x 5,242,880 = 524 bytes)
    assert _chunk_sizes(record) == [CHUNK + CHUNK_HEADER] * 3 + [524 + CHUNK_HEADER]
    assert max(len(c) for c in contents.values()) == CHUNK + CHUNK_HEADER
    root = get_all_nested_objects(record)
    root_id = next(reversed(root))  # the record dict is listed last, after its children
    back = inflate_object_from_contents(root_id, contents)
    assert isinstance(back, RecordDict)
    np.testing.assert_array_equal(back.array_records["arrays"]["w"].numpy(), values)


def test_llama_1b_messages_above_2_gib_never_make_an_object_above_one_chunk() -> None:
    """All 16 blocks + embeddings in fp32 (the largest message fedskip can send: 4.94 GB)."""
    model = build_meta_model("llama-3.2-1b")
    tensors = [p.numel() * 4 + NPY_HEADER for p in model.parameters()]
    total = sum(tensors)
    assert total > GRPC_MAX_MESSAGE_LENGTH  # one transfer of it would fail
    largest_tensor = max(tensors)  # the 128256 x 2048 embedding: 1.05 GB
    assert largest_tensor == 128256 * 2048 * 4 + NPY_HEADER
    chunks = sum(math.ceil(size / CHUNK) for size in tensors)
    # per block: q 4, k 1, v 1, o 4, gate / up / down 13 each, 2 norms 1 each = 51 chunks;
    # 16 blocks + embedding 201 + final norm 1 + head weight and bias 2
    assert chunks == 16 * 51 + 201 + 1 + 2 == 1020  # each at most 5 MiB + 20 bytes
    # the one per-tensor object that grows with the tensor: the Array's metadata, whose chunk
    # index list has one entry per chunk (201 for the embedding)
    assert math.ceil(largest_tensor / CHUNK) == 201

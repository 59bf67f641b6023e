"""Compressed model tensors on the wire (``compression`` = fp16 | bf16 | int8): the Flower glue.

What travels is always a *delta* against a state both ends hold, compressed with
:mod:`fedskip.compression`:

- **uplink** (train reply): ``trained - received``, where ``received`` is the state the client
  decoded from its instruction. The client keeps an :class:`~fedskip.compression.ErrorFeedback`
  per node (its residuals persist across rounds in the node's ``Context.state`` as an
  ``ArrayRecord``, :data:`EF_STATE`, and on the site's disk for a restart or a resumed run:
  :data:`fedskip.fl.personal.ERROR_FEEDBACK`), so what quantization drops in one round is sent
  in the next.
  The server adds the decoded delta to its *exact* global tensors before aggregating.
- **downlink** (train / evaluate / score instructions): ``global - base``, where ``base`` is the
  pretrained model (+ seeded head / adapters) that every client builds locally. The server
  keeps its global state exact; each instruction re-quantizes the whole difference, so the
  downlink error stays within half a quantization step and never accumulates (no feedback needed).

``compression=none`` leaves the protocol unchanged (plain fp32 values). Payload keys are tensor
names; int8 adds ``name + "::scale"`` (one fp32 scale per block of :data:`BLOCK_SIZE` values).
Bytes on the wire are what ``ArrayRecord.count_bytes()`` reports for these payloads.

A payload from a client is untrusted: :func:`decode_update` checks names, dtypes, shapes, block
scales and finiteness and raises :class:`PayloadError` with one line naming the problem.
Compression protects nothing (it is a deterministic function of the update); it is refused with
client-level DP and SecAgg+, which operate on the plain update (:class:`fedskip.config.Config`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict

from fedskip.compression import SCALE_SUFFIX, ErrorFeedback, compress, decompress

BLOCK_SIZE = 256
"""int8 values per quantization block (one fp32 scale each: ≈1.016 bytes per value)."""
EF_STATE = "fedskip.error-feedback"
"""``Context.state`` ArrayRecord of a node's error-feedback residuals (fp32, by tensor name)."""

WIRE_DTYPES = {"none": "float32", "fp16": "float16", "bf16": "int16", "int8": "int8"}
"""numpy dtype of the values of each scheme on the wire (bf16 travels as its int16 bit pattern)."""

Tensors = Mapping[str, torch.Tensor | np.ndarray]


class PayloadError(ValueError):
    """A compressed payload that cannot be decoded against the expected tensors."""


def enabled(scheme: str) -> bool:
    """True when tensors travel compressed (any scheme but ``none``)."""
    return scheme != "none"


def _fp32(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


# ---------------------------------------------------------------------- Flower-free core
def encode_update(
    new_state: Tensors,
    reference_state: Tensors,
    ef: ErrorFeedback | str,
) -> dict[str, np.ndarray]:
    """Compress ``new_state - reference_state`` (same keys) for the wire.

    ``ef``: the client's error feedback (its residuals for other tensors are kept, so a block
    trained again in a later round still gets what it lost), or a scheme name for a one-off
    encoding without feedback (the downlink).
    """
    missing = sorted(set(new_state) - set(reference_state))
    if missing:
        raise KeyError(f"no reference value for {missing[0]!r}")
    delta = {k: _fp32(v) - _fp32(reference_state[k]) for k, v in new_state.items()}
    if isinstance(ef, str):
        return compress(delta, ef, block_size=BLOCK_SIZE)
    if ef.block_size != BLOCK_SIZE:
        raise ValueError(f"error feedback uses blocks of {ef.block_size}, the wire {BLOCK_SIZE}")
    kept = {k: v for k, v in ef.residual.items() if k not in delta}
    payload = ef.compress(delta)
    ef.residual.update(kept)
    return payload


def tensor_names(payload: Mapping[str, np.ndarray]) -> set[str]:
    """The tensor names a payload carries (int8 scale entries folded into their tensor)."""
    return {k for k in payload if not k.endswith(SCALE_SUFFIX)}


def _check_entry(
    name: str, payload: Mapping[str, np.ndarray], shape: tuple[int, ...], scheme: str
) -> None:
    values = payload[name]
    want = WIRE_DTYPES[scheme]
    if str(values.dtype) != want:
        raise PayloadError(f"tensor {name!r} has dtype {values.dtype}, expected {want} ({scheme})")
    if tuple(values.shape) != shape:
        raise PayloadError(f"tensor {name!r} has shape {tuple(values.shape)}, expected {shape}")
    if scheme == "int8":
        scales = payload.get(name + SCALE_SUFFIX)
        blocks = max(1, -(-int(np.prod(shape, dtype=np.int64)) // BLOCK_SIZE))
        if scales is None or str(scales.dtype) != "float32" or scales.shape != (blocks,):
            raise PayloadError(
                f"tensor {name!r} needs {blocks} float32 scale(s) in {name + SCALE_SUFFIX!r}"
            )
        if not (np.isfinite(scales).all() and (scales >= 0).all()):
            raise PayloadError(f"tensor {name!r} has non-finite or negative scales")


def decode_update(
    payload: Mapping[str, np.ndarray],
    reference_state: Tensors,
    scheme: str,
    *,
    expected: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """``reference + decompress(payload)`` per tensor, as fp32 CPU tensors.

    ``expected``: the names the payload must carry (default: every reference name). Raises
    :class:`PayloadError` for a missing or unexpected name, a stray scale entry, a wrong dtype,
    shape or scale count. Values are exact up to the quantization step (half a step for int8,
    half an ulp of fp16 / bf16); non-finite results are left for the caller's validation.
    """
    want = set(reference_state if expected is None else expected)
    names = tensor_names(payload)
    if names != want:
        missing, extra = sorted(want - names), sorted(names - want)
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise PayloadError(f"payload tensors differ from the expected ones: {what}")
    stray = [
        k
        for k in payload
        if k.endswith(SCALE_SUFFIX) and (scheme != "int8" or k[: -len(SCALE_SUFFIX)] not in names)
    ]
    if stray:
        raise PayloadError(f"payload has a stray scale entry {stray[0]!r}")
    reference = {k: _fp32(reference_state[k]) for k in names}
    for name in sorted(names):
        _check_entry(name, payload, tuple(reference[name].shape), scheme)
    delta = decompress(payload, scheme, block_size=BLOCK_SIZE)
    return {k: reference[k] + delta[k] for k in sorted(names)}


# ---------------------------------------------------------------------- Flower records
def to_record(payload: Mapping[str, np.ndarray]) -> ArrayRecord:
    """A payload as an ``ArrayRecord`` (dtypes kept: fp16 / int16 / int8 / fp32)."""
    record = ArrayRecord()
    for name, array in payload.items():
        record[name] = Array(np.ascontiguousarray(array))
    return record


def from_record(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The payload of an ``ArrayRecord`` (never unpickles)."""
    return {name: array.numpy() for name, array in record.items()}


def load_feedback(state: RecordDict, scheme: str) -> ErrorFeedback:
    """This node's error feedback for ``scheme``, with the residuals saved in ``state``."""
    ef = ErrorFeedback(scheme, block_size=BLOCK_SIZE)
    saved = state.array_records.get(EF_STATE)
    if saved is not None:
        ef.load_state_dict(from_record(saved))
    return ef


def save_feedback(state: RecordDict, ef: ErrorFeedback) -> None:
    """Keep the residuals in the node's ``Context.state`` for its next round."""
    state.array_records[EF_STATE] = to_record(ef.state_dict())


# ---------------------------------------------------------------------- the two directions
def encode_instruction(record: ArrayRecord, base: Tensors, scheme: str) -> ArrayRecord:
    """Server → client: the global tensors of ``record`` as compressed ``global - base``
    (``record`` itself for ``none``)."""
    if not enabled(scheme):
        return record
    state = {name: array.numpy() for name, array in record.items()}
    return to_record(encode_update(state, base, scheme))


def decode_instruction(record: ArrayRecord, base: Tensors, scheme: str) -> dict[str, torch.Tensor]:
    """Client side of :func:`encode_instruction`: the global tensors the server sent (fp32)."""
    payload = from_record(record)
    if not enabled(scheme):
        return {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in payload.items()}
    names = tensor_names(payload)
    unknown = sorted(names - set(base))
    if unknown:
        raise PayloadError(f"instruction names a tensor this model lacks: {unknown[0]!r}")
    return decode_update(payload, {k: base[k] for k in names}, scheme)


def encode_reply(
    state: Tensors, received: Tensors, scheme: str, node_state: RecordDict
) -> ArrayRecord:
    """Client → server: ``trained - received`` with this node's error feedback (kept in
    ``node_state``, the node's ``Context.state``); plain fp32 values for ``none``."""
    if not enabled(scheme):
        return to_record({k: _fp32(v).numpy() for k, v in state.items()})
    ef = load_feedback(node_state, scheme)
    payload = encode_update(state, received, ef)
    save_feedback(node_state, ef)
    return to_record(payload)


def decode_reply(
    record: ArrayRecord, global_state: Tensors, expected: Collection[str], scheme: str
) -> dict[str, np.ndarray]:
    """Server side of :func:`encode_reply`: the client's trained values (exact global + decoded
    delta) for exactly ``expected``; :class:`PayloadError` when the payload does not fit."""
    payload = from_record(record)
    if not enabled(scheme):
        return payload
    missing = sorted(set(expected) - set(global_state))
    if missing:
        raise KeyError(f"no global value for {missing[0]!r}")
    reference = {k: global_state[k] for k in expected}
    decoded = decode_update(payload, reference, scheme, expected=expected)
    return {k: v.numpy() for k, v in decoded.items()}


def base_values(
    model: torch.nn.Module, names: Collection[str] | None = None
) -> dict[str, np.ndarray]:
    """fp32 copies of the base model's tensors (``names`` or all): the downlink reference."""
    wanted = None if names is None else set(names)
    return {
        name: param.detach().to("cpu", torch.float32).numpy().copy()
        for name, param in model.named_parameters()
        if wanted is None or name in wanted
    }


def received_tensors(
    record: ArrayRecord, base_model: torch.nn.Module, scheme: str
) -> dict[str, torch.Tensor]:
    """What a client was sent, as fp32 tensors: decoded against its own ``base_model`` when
    compressed, the plain values otherwise."""
    if not enabled(scheme):
        return decode_instruction(record, {}, scheme)
    names = [k for k in record if not k.endswith(SCALE_SUFFIX)]
    return decode_instruction(record, base_values(base_model, names), scheme)

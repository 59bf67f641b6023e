"""Compressed deltas through fedskip.fl.wire_compression: exact up to the quantization step, error
feedback keeps the accumulated error at one residual, malformed payloads are refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from flwr.app import RecordDict

from fedskip.fl.wire_compression import (
    BLOCK_SIZE,
    EF_STATE,
    PayloadError,
    decode_instruction,
    decode_reply,
    decode_update,
    encode_instruction,
    encode_reply,
    encode_update,
    to_record,
)

SCALE = "::scale"


def _state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "blocks.3.weight": torch.randn(40, 17, generator=g) * scale,
        "head.bias": torch.randn(3, generator=g) * scale,
    }


def test_int8_hand_computed_delta() -> None:
    reference = {"w": torch.ones(4)}
    new = {"w": torch.tensor([1.0, 2.27, 0.365, 1.5])}
    payload = encode_update(new, reference, "int8")
    assert payload["w"].tolist() == [0, 127, -64, 50] and payload["w" + SCALE].dtype == np.float32
    np.testing.assert_allclose(payload["w" + SCALE], [0.01], rtol=1e-6)
    back = decode_update(payload, reference, "int8")
    np.testing.assert_allclose(back["w"].numpy(), [1.0, 2.27, 0.36, 1.5], atol=1e-6)


@pytest.mark.parametrize("scheme", ["none", "fp16", "bf16", "int8"])
def test_round_trip_is_exact_up_to_the_step(scheme: str) -> None:
    reference = _state(0)
    new = {k: v + d for (k, v), d in zip(reference.items(), _state(1, 1e-3).values())}
    back = decode_update(encode_update(new, reference, scheme), reference, scheme)
    assert set(back) == set(new)
    for name, value in new.items():
        delta = value - reference[name]
        err = (back[name] - value).abs()
        if scheme == "none":
            bound = torch.full_like(err, 1e-7)  # fp32 re-association of ref + (new - ref)
        elif scheme == "int8":
            flat = delta.reshape(-1)
            steps = [
                flat[i : i + BLOCK_SIZE].abs().max() / 127 for i in range(0, len(flat), BLOCK_SIZE)
            ]
            step = torch.repeat_interleave(torch.stack(steps), BLOCK_SIZE)[: len(flat)]
            bound = step.reshape(delta.shape) / 2 + 1e-7
        else:
            rel = 2.0**-11 if scheme == "fp16" else 2.0**-8
            bound = delta.abs() * rel + 2.0**-25 + 1e-7
        assert torch.all(err <= bound), name


def test_error_feedback_through_node_state_bounds_accumulated_error() -> None:
    """Ten rounds of one client: with feedback (kept in Context.state) the sum of what the
    server decoded differs from the sum of true updates by exactly the last residual."""
    node_state = RecordDict()
    reference = {"w": torch.zeros(300)}
    bias = torch.linspace(-2e-3, 2e-3, 300)  # a steady component that rounding to 0.01 drops
    true_sum = torch.zeros(300)
    sent_ef = torch.zeros(300)
    sent_plain = torch.zeros(300)
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        update = {"w": bias + torch.randn(300, generator=g) * 0.5}
        true_sum += update["w"]
        record = encode_reply(update, reference, "int8", node_state)
        sent_ef += decode_reply(record, reference, ["w"], "int8")["w"]
        plain = encode_update(update, reference, "int8")
        sent_plain += decode_update(plain, reference, "int8")["w"]
    residual = torch.from_numpy(node_state.array_records[EF_STATE]["w"].numpy())
    torch.testing.assert_close(true_sum - sent_ef, residual, atol=1e-5, rtol=0)
    err_ef = (sent_ef - true_sum).abs().max().item()
    err_plain = (sent_plain - true_sum).abs().max().item()
    assert err_ef < err_plain / 3


def test_feedback_keeps_residuals_of_tensors_not_trained_this_round() -> None:
    node_state = RecordDict()
    zeros = {k: torch.zeros_like(v) for k, v in _state(0).items()}
    encode_reply(_state(0, 1e-2), zeros, "int8", node_state)
    first = node_state.array_records[EF_STATE]["head.bias"].numpy().copy()
    only_block = {"blocks.3.weight": _state(1, 1e-2)["blocks.3.weight"]}
    encode_reply(only_block, zeros, "int8", node_state)
    saved = node_state.array_records[EF_STATE]
    assert set(saved) == {"blocks.3.weight", "head.bias"}
    assert np.array_equal(saved["head.bias"].numpy(), first) and np.abs(first).sum() > 0


def test_instruction_round_trip_and_bytes() -> None:
    base = {"w": np.linspace(-1, 1, 1000, dtype=np.float32)}
    plain = to_record({"w": base["w"] + np.float32(0.25)})
    # round 1: the global state equals the base, so the client gets the base back exactly
    same = decode_instruction(encode_instruction(to_record(base), base, "int8"), base, "int8")
    assert np.array_equal(same["w"].numpy(), base["w"])
    sent = encode_instruction(plain, base, "int8")
    got = decode_instruction(sent, base, "int8")["w"].numpy()
    np.testing.assert_allclose(got, base["w"] + 0.25, atol=0.25 / 127 / 2 + 1e-6)
    # count_bytes = per entry a 128-byte .npy header + the values + the key's characters
    assert plain.count_bytes() == 128 + 4000 + 1 == 4129  # as in VERIFIED.md
    assert sent.count_bytes() == (128 + 1000) + (128 + 4 * 4) + len("w") + len("w::scale") == 1281
    assert encode_instruction(plain, base, "fp16").count_bytes() == 128 + 2000 + 1
    assert encode_instruction(plain, base, "bf16").count_bytes() == 128 + 2000 + 1
    assert encode_instruction(plain, base, "none") is plain


def test_server_adds_the_delta_to_its_exact_global() -> None:
    received = {"w": torch.tensor([0.5, 0.5])}  # what the client decoded (quantized)
    exact = {"w": torch.tensor([0.501, 0.499])}  # what the server holds
    trained = {"w": torch.tensor([0.6, 0.4])}
    record = encode_reply(trained, received, "fp16", RecordDict())
    got = decode_reply(record, exact, ["w"], "fp16")["w"]
    np.testing.assert_allclose(got, [0.601, 0.399], atol=1e-4)


def _payload(**changes: object) -> dict[str, np.ndarray]:
    payload = encode_update({"w": torch.ones(300)}, {"w": torch.zeros(300)}, "int8")
    payload.update(changes)  # type: ignore[arg-type]
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_payload(w=None), "payload tensors differ from the expected ones: missing 'w'"),
        (
            _payload(v=np.zeros(3, np.int8)),
            "payload tensors differ from the expected ones: unexpected 'v'",
        ),
        (
            _payload(w=np.ones(300, np.float32)),
            "tensor 'w' has dtype float32, expected int8 (int8)",
        ),
        (_payload(w=np.ones(299, np.int8)), "tensor 'w' has shape (299,), expected (300,)"),
        (_payload(**{"w::scale": None}), "tensor 'w' needs 2 float32 scale(s) in 'w::scale'"),
        (_payload(**{"w::scale": np.ones(1, np.float32)}), "tensor 'w' needs 2 float32 scale(s)"),
        (_payload(**{"w::scale": np.array([1, -1], np.float32)}), "non-finite or negative scales"),
        (_payload(**{"v::scale": np.ones(1, np.float32)}), "stray scale entry 'v::scale'"),
    ],
)
def test_malformed_payloads_are_refused(payload: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(message)):
        decode_reply(to_record(payload), {"w": torch.zeros(300)}, ["w"], "int8")


def test_instruction_naming_an_unknown_tensor_is_refused() -> None:
    record = encode_instruction(
        to_record({"x": np.ones(2, np.float32)}), {"x": np.zeros(2)}, "fp16"
    )
    with pytest.raises(PayloadError, match="instruction names a tensor this model lacks: 'x'"):
        decode_instruction(record, {"w": np.zeros(2)}, "fp16")


def test_fedskip_run_refuses_compression_with_secagg(tmp_path, capsys) -> None:
    from fedskip.cli import main

    args = ["run", "--set", "compression=bf16", "secagg=true", f"out={tmp_path}"]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "fedskip: error: config key 'compression': bf16 cannot be combined with secagg=true "
        "(masked sums need plain values); set compression=none\n"
    )

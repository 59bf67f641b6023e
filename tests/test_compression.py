"""Compressed round trips are exact up to the quantization step; error feedback stops drift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedskip.compression import (
    SCALE_SUFFIX,
    ErrorFeedback,
    compress,
    decompress,
    dequantize_int8,
    payload_bytes,
    quantize_int8,
)


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "block.weight": torch.randn(33, 17, generator=g) * 1e-3,
        "head.bias": torch.randn(5, generator=g) * 1e-2,
    }


def test_int8_hand_computed_codes_and_scales() -> None:
    t = torch.tensor([0.0, 1.27, -0.635, 0.5, 2.54, -2.54])
    codes, scales = quantize_int8(t, block_size=3)
    np.testing.assert_allclose(scales, [0.01, 0.02], rtol=1e-6)
    assert codes.tolist() == [0, 127, -64, 25, 127, -127]  # -0.635/0.01 = -63.5 rounds to even: -64
    back = dequantize_int8(codes, scales, 3)
    np.testing.assert_allclose(back.numpy(), [0.0, 1.27, -0.64, 0.5, 2.54, -2.54], atol=1e-6)


@pytest.mark.parametrize("scheme", ["none", "fp16", "bf16", "int8"])
def test_round_trip_within_quantization_step(scheme: str) -> None:
    delta = _delta()
    payload = compress(delta, scheme, block_size=64)
    back = decompress(payload, scheme, block_size=64)
    assert set(back) == set(delta)
    for name, original in delta.items():
        assert back[name].shape == original.shape and back[name].dtype == torch.float32
        err = (back[name] - original).abs()
        if scheme == "none":
            assert torch.equal(back[name], original)
        elif scheme == "int8":
            codes, scales = quantize_int8(original, 64)
            step = torch.from_numpy(np.repeat(scales, 64)[: original.numel()]).reshape(
                original.shape
            )
            assert torch.all(err <= step / 2 * (1 + 1e-5))
        else:
            # half an ulp of the mantissa; fp16 values below 2**-14 are subnormal (fixed 2**-24 ulp)
            rel, floor = (2.0**-11, 2.0**-25) if scheme == "fp16" else (2.0**-8, 0.0)
            assert torch.all(err <= original.abs() * rel + floor + 1e-12)


def test_payload_sizes() -> None:
    delta = {"w": torch.ones(1000)}
    assert payload_bytes(compress(delta, "none")) == 4000
    assert payload_bytes(compress(delta, "fp16")) == 2000
    assert payload_bytes(compress(delta, "bf16")) == 2000
    int8 = compress(delta, "int8", block_size=256)
    assert payload_bytes(int8) == 1000 + 4 * 4
    assert int8["w"].dtype == np.int8 and int8["w" + SCALE_SUFFIX].dtype == np.float32


def test_error_feedback_bounds_accumulated_error() -> None:
    """Sum of what was sent tracks the sum of true deltas with EF; without EF the error grows."""
    torch.manual_seed(0)
    true_sum = torch.zeros(200)
    sent_ef = torch.zeros(200)
    sent_plain = torch.zeros(200)
    ef = ErrorFeedback("int8", block_size=200)
    bias = torch.linspace(-1e-3, 1e-3, 200)  # a consistent small component quantization rounds away
    for _ in range(50):
        d = {"w": bias + torch.randn(200) * 1e-1}
        true_sum += d["w"]
        sent_ef += decompress(ef.compress(d), "int8", block_size=200)["w"]
        sent_plain += decompress(compress(d, "int8", block_size=200), "int8", block_size=200)["w"]
    err_ef = (sent_ef - true_sum).abs().max().item()
    err_plain = (sent_plain - true_sum).abs().max().item()
    # with EF the accumulated error equals the last residual: at most half of one step
    assert err_ef <= ef.residual["w"].abs().max().item() + 1e-6
    assert err_ef < err_plain / 3


def test_error_feedback_state_round_trip() -> None:
    ef = ErrorFeedback("int8", block_size=8)
    ef.compress(_delta(1))
    other = ErrorFeedback("int8", block_size=8)
    other.load_state_dict(ef.state_dict())
    d = _delta(2)
    assert all(
        np.array_equal(a, b) for a, b in zip(ef.compress(d).values(), other.compress(d).values())
    )


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="allowed: none, fp16, bf16, int8"):
        compress({}, "int4")


def test_block_size_mismatch_is_detected() -> None:
    payload = compress({"w": torch.ones(561)}, "int8", block_size=64)
    with pytest.raises(ValueError, match="9 scales do not fit 561 values in blocks of 32"):
        decompress(payload, "int8", block_size=32)

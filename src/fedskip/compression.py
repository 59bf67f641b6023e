"""Compressed updates on the wire: fp16 / bf16 casts and int8 block quantization with error feedback.

What travels is always a *delta* (an update relative to a state both sides know), as a flat
mapping ``name -> numpy array`` that fits in a Flower ``ArrayRecord``:

- ``none``: the fp32 delta itself (4 bytes per value);
- ``fp16``: float16 values (2 bytes per value);
- ``bf16``: bfloat16 bit patterns stored as int16, since ``ArrayRecord`` cannot hold bfloat16
  (2 bytes per value);
- ``int8``: symmetric per-block quantization: ``name`` holds int8 codes, ``name + SCALE_SUFFIX``
  one fp32 scale per block of ``block_size`` values (≈1 byte per value + 4 bytes per block).

Dequantization error per value is at most half a quantization step (``scale / 2`` for int8).
:class:`ErrorFeedback` keeps, per tensor, what quantization lost and adds it to the next delta,
so the error does not accumulate across rounds (the sum of everything sent tracks the sum of the
true deltas to within one step).

Privacy note: compression is a deterministic function of the update and protects nothing; DP
noise is added before compression and secure aggregation operates on what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

SCHEMES = ("none", "fp16", "bf16", "int8")
SCALE_SUFFIX = "::scale"
DEFAULT_BLOCK_SIZE = 256


def _check_scheme(scheme: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown compression {scheme!r}; allowed: {', '.join(SCHEMES)}")


def compress(
    delta: Mapping[str, torch.Tensor], scheme: str, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> dict[str, np.ndarray]:
    """Encode fp32 tensors for the wire. Returns ``name -> array`` (plus int8 scales)."""
    _check_scheme(scheme)
    payload: dict[str, np.ndarray] = {}
    for name, tensor in delta.items():
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        if scheme == "none":
            payload[name] = t.numpy().copy()
        elif scheme == "fp16":
            payload[name] = t.to(torch.float16).numpy()
        elif scheme == "bf16":
            payload[name] = t.to(torch.bfloat16).view(torch.int16).numpy()
        else:
            codes, scales = quantize_int8(t, block_size)
            payload[name] = codes
            payload[name + SCALE_SUFFIX] = scales
    return payload


def decompress(
    payload: Mapping[str, np.ndarray], scheme: str, *, block_size: int = DEFAULT_BLOCK_SIZE
) -> dict[str, torch.Tensor]:
    """Decode a payload from :func:`compress` (same ``block_size``) back to fp32 tensors."""
    _check_scheme(scheme)
    out: dict[str, torch.Tensor] = {}
    for name, array in payload.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if scheme == "int8":
            scale_key = name + SCALE_SUFFIX
            if scale_key not in payload:
                raise ValueError(f"int8 payload for {name!r} has no {scale_key!r}")
            out[name] = dequantize_int8(array, payload[scale_key], block_size)
        elif scheme == "bf16":
            out[name] = torch.from_numpy(np.ascontiguousarray(array)).view(torch.bfloat16).float()
        else:
            out[name] = torch.from_numpy(np.asarray(array, dtype=np.float32).copy())
    return out


def quantize_int8(tensor: torch.Tensor, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization with one fp32 scale per block of the flattened tensor.

    ``scale = max|x| / 127`` per block; codes are ``round(x / scale)`` in [-127, 127].
    """
    if block_size < 1:
        raise ValueError("block_size must be >= 1")
    flat = tensor.reshape(-1).to(torch.float32)
    n = flat.numel()
    blocks = max(1, -(-n // block_size))
    padded = torch.zeros(blocks * block_size, dtype=torch.float32)
    padded[:n] = flat
    grid = padded.view(blocks, block_size)
    scales = grid.abs().amax(dim=1) / 127.0
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    codes = torch.round(grid / safe[:, None]).clamp_(-127, 127).to(torch.int8)
    return codes.reshape(-1)[:n].reshape(tensor.shape).numpy(), scales.numpy()


def dequantize_int8(codes: np.ndarray, scales: np.ndarray, block_size: int) -> torch.Tensor:
    """Inverse of :func:`quantize_int8` with the same ``block_size`` (up to half a step per value)."""
    c = torch.from_numpy(np.ascontiguousarray(codes)).to(torch.float32)
    s = torch.from_numpy(np.ascontiguousarray(scales)).to(torch.float32)
    n = c.numel()
    blocks = s.numel()
    if blocks != max(1, -(-n // block_size)):
        raise ValueError(f"{blocks} scales do not fit {n} values in blocks of {block_size}")
    padded = torch.zeros(blocks * block_size, dtype=torch.float32)
    padded[:n] = c.reshape(-1)
    return (padded.view(blocks, block_size) * s[:, None]).reshape(-1)[:n].reshape(c.shape)


def payload_bytes(payload: Mapping[str, np.ndarray]) -> int:
    """Raw bytes of the arrays in a payload (without container overhead)."""
    return int(sum(a.nbytes for a in payload.values()))


class ErrorFeedback:
    """Client-side error feedback: what quantization loses this round is sent next round.

    Keeps one fp32 residual per tensor name; its state travels in the client's persistent state
    (``state_dict`` / ``load_state_dict``), so a resumed run continues with the same residuals.
    """

    def __init__(self, scheme: str, *, block_size: int = DEFAULT_BLOCK_SIZE) -> None:
        _check_scheme(scheme)
        self.scheme = scheme
        self.block_size = block_size
        self.residual: dict[str, torch.Tensor] = {}

    def compress(self, delta: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """Compress ``delta + residual`` and keep the new residual (what was lost)."""
        corrected = {
            k: v.detach().float().cpu()
            + self.residual.get(k, torch.zeros_like(v, dtype=torch.float32))
            for k, v in delta.items()
        }
        payload = compress(corrected, self.scheme, block_size=self.block_size)
        sent = decompress(payload, self.scheme, block_size=self.block_size)
        self.residual = {k: corrected[k] - sent[k] for k in corrected}
        return payload

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in self.residual.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.residual = {
            k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()
        }

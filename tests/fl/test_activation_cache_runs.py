"""Federated runs with the frozen-prefix activation cache on and off (llama-tiny, in-process grid)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.privacy.dpsgd import DPSGD
from fedskip.train import activation_store as st
from tests.fl.local_grid import wire_bytes

SCALARS = ("train_loss", "f1", "precision", "recall")


def _pinned_generator(self: DPSGD, purpose: str, device: Any = "cpu") -> torch.Generator:
    self._rng_calls += 1
    mix = f"{purpose}:{self.accountant.steps}:{self._rng_calls}".encode()
    return torch.Generator(device=device).manual_seed(zlib.crc32(mix))


def _rows(out: str) -> list[dict[str, Any]]:
    lines = (Path(out) / "metrics.jsonl").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    values = {k: float(row[k]) for k in SCALARS if isinstance(row.get(k), (int, float))}
    for k, v in (row.get("client_eval") or {}).items():
        if isinstance(v, (int, float)):
            values[f"client_eval.{k}"] = float(v)
    return values


def _run_both(
    make_cfg: Callable[..., Config], run_local: Any, tmp_path: Path, **changes: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
    st.STORE.clear()
    off = make_cfg(activation_cache="off", out=str(tmp_path / "off"), **changes)
    run_local(off)
    assert st.STORE.fills == 0
    on = make_cfg(activation_cache="auto", out=str(tmp_path / "on"), **changes)
    _, grid = run_local(on)
    assert st.STORE.fills > 0, "the cache was never used"
    return _rows(off.out), _rows(on.out), grid


def _assert_same_rounds(off: list[dict[str, Any]], on: list[dict[str, Any]]) -> None:
    assert len(off) == len(on)
    for a, b in zip(off, on):
        na, nb = _numbers(a), _numbers(b)
        assert set(na) == set(nb) and "f1" in na and "train_loss" in na
        for key in na:
            assert na[key] == pytest.approx(nb[key], abs=1e-6), key
        assert a["cum_bytes"] == b["cum_bytes"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"lora_rank": 4, "layers": 2},
        {"dp": "sample", "noise_multiplier": 0.5, "clip_norm": 1.0},
        {"method": "fedprox", "compression": "int8"},
    ],
    ids=["layerskip", "lora-in-blocks", "dp-sgd", "fedprox-int8"],
)
def test_cache_on_and_off_give_the_same_rounds(
    make_cfg: Callable[..., Config],
    run_local: Any,
    tmp_path: Path,
    changes: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if changes.get("dp") == "sample":  # DP noise and sampling from OS entropy: pin them here
        monkeypatch.setattr(DPSGD, "_generator", _pinned_generator)
    off, on, _ = _run_both(make_cfg, run_local, tmp_path, rounds=2, **changes)
    _assert_same_rounds(off, on)


@pytest.mark.slow
def test_cached_states_appear_in_no_message_and_no_export(
    make_cfg: Callable[..., Config], run_local: Any, tmp_path: Path
) -> None:
    st.STORE.clear()
    cfg = make_cfg(rounds=1, out=str(tmp_path / "run"))
    _, grid = run_local(cfg)
    entries = list(st.STORE.memory.values())
    assert entries, "the run used no cache"
    # a fingerprint of every cached example: its first hidden row's bytes
    probes = [
        bytes(entry.rows(i)[0].numpy().tobytes())
        for entry in entries
        for i in range(len(entry.lengths))
    ]
    wire = wire_bytes([*grid.sent, *grid.received])
    assert wire and not any(p in wire for p in probes)
    exported = b"".join(p.read_bytes() for p in (Path(cfg.out) / "model").rglob("*") if p.is_file())
    checkpoint = b"".join(p.read_bytes() for p in Path(cfg.out).rglob("*") if p.is_file())
    assert exported and not any(p in exported or p in checkpoint for p in probes)

"""The activation cache at 1 B scale: entry sizes follow the hidden size, the in-memory budget
follows the memory available, and an entry past it is written straight to disk."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedskip.models.freeze import apply_layer_skip
from fedskip.models.layers import discover_layers
from fedskip.train import activation_store as st
from fedskip.train import cache_budget as cb
from fedskip.train import prefix_cache as pc
from fedskip.train.engine import predict
from tests.train.test_prefix_cache import assert_same_logits, collate_for, features, tiny

GB = 10**9
MIB = 2**20


def windows(n: int, tokens: int) -> list[dict[str, Any]]:
    return [{"input_ids": [0] * tokens}] * n


@pytest.mark.parametrize(
    ("hidden", "itemsize", "expected"),
    [
        (384, 4, 393_216_000),  # MiniLM: 1,000 windows of 256 tokens, 0.39 GB
        (2048, 4, 2_097_152_000),  # LLaMA 3.2-1B in fp32: 8,192 bytes a token, 2.10 GB
        (2048, 2, 1_048_576_000),  # ... in bf16
    ],
)
def test_entry_bytes_follow_the_hidden_size(hidden: int, itemsize: int, expected: int) -> None:
    assert cb.entry_bytes(windows(1000, 256), hidden, itemsize) == expected


def test_entry_bytes_count_every_token() -> None:
    feats = [{"input_ids": [1, 2, 3]}, {"input_ids": [4, 5, 6, 7, 8]}]
    assert cb.entry_bytes(feats, 2048) == 8 * 2048 * 4 == 65_536


@pytest.mark.parametrize(
    ("configured_mb", "available", "expected"),
    [
        (2048, 19 * GB, 2048 * MIB),  # 24 GB machine, 1 B model loaded: the configured budget
        (2048, 11 * GB, 2048 * MIB),  # a 16 GB site: 2.75 GB would be allowed
        (2048, 4 * GB, 1 * GB),  # little memory left: a quarter of it
        (0, 19 * GB, 0),  # activation-cache-mb=0: every entry goes to disk
    ],
)
def test_memory_budget(configured_mb: int, available: int, expected: int) -> None:
    assert cb.RAM_SHARE == 0.25
    assert cb.memory_budget_bytes(configured_mb, available) == expected


def test_available_memory_is_measured() -> None:
    assert cb.available_memory_bytes() > 0


@pytest.fixture(autouse=True)
def _fresh_store() -> Any:
    st.STORE.clear()
    yield
    st.STORE.clear()


def _skip_model() -> Any:
    model = tiny("llama")
    apply_layer_skip(model, discover_layers(model), [3])
    return model


def test_little_memory_writes_the_entry_straight_to_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, feats, coll = _skip_model(), features(), collate_for("token")
    tokens = sum(len(f["input_ids"]) for f in feats)
    monkeypatch.setattr(pc, "available_memory_bytes", lambda: 1000)  # budget 250 bytes
    compute = pc.compute_prefix
    seen: list[Any] = []
    monkeypatch.setattr(
        pc, "compute_prefix", lambda *a, **kw: seen.append(kw["into"]) or compute(*a, **kw)
    )
    plain = predict(model, feats, coll, batch_size=4, device="cpu")
    cache = pc.ActivationCache(
        discover_layers(model), budget_mb=2048, batch_size=4, folder=tmp_path
    )
    with caplog.at_level(logging.WARNING, logger="fedskip.train"):
        cached = predict(model, feats, coll, batch_size=4, device="cpu", cache=cache)
    assert_same_logits(plain, cached)
    assert seen[0] is not None and seen[0].parent.parent == tmp_path  # process-<pid>/<key>
    assert st.STORE.memory_bytes == 0 and list(st.STORE.spilled.values()) == [seen[0]]
    npy = seen[0].with_suffix(".npy")
    assert stat.S_IMODE(npy.stat().st_mode) == 0o600
    assert np.load(npy, mmap_mode="r").shape == (tokens, 32)
    size = tokens * 32 * 4
    assert f"({tokens} tokens x hidden 32 x 4 bytes) = {size / 10**6:.1f} MB" in caplog.text
    assert not list(tmp_path.rglob("*.tmp*"))


def test_bf16_entry_streams_to_disk(tmp_path: Path) -> None:
    model = _skip_model().to(torch.bfloat16)
    feats = features()
    states = pc.compute_prefix(
        model,
        discover_layers(model),
        3,
        feats,
        collate_for("token"),
        batch_size=4,
        device="cpu",
        into=tmp_path / "entry",
    )
    memory = pc.compute_prefix(
        model, discover_layers(model), 3, feats, collate_for("token"), batch_size=4, device="cpu"
    )
    assert states.dtype == memory.dtype == torch.bfloat16
    for i in range(len(feats)):
        assert torch.equal(states.rows(i), memory.rows(i))


def test_no_disk_room_runs_uncached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    model, feats, coll = _skip_model(), features(), collate_for("token")
    monkeypatch.setattr(pc, "available_memory_bytes", lambda: 1000)
    monkeypatch.setattr(pc, "disk_free_bytes", lambda folder: 10)
    cache = pc.ActivationCache(
        discover_layers(model), budget_mb=2048, batch_size=4, folder=tmp_path
    )
    with caplog.at_level(logging.WARNING, logger="fedskip.train"):
        out, same = cache.prepare(model, feats, coll, device="cpu")
    assert out is feats and same is coll and st.STORE.fills == 0
    assert "running uncached" in caplog.text

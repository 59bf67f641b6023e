"""Compressed updates through the real fedskip ServerApp/ClientApp over an in-process grid:
the bytes counted are the compressed payloads, the server dequantizes before averaging, error
feedback lives in each node's Context.state, LoRA-in-selected-blocks exchanges adapters only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, Message

from fedskip.compression import SCALE_SUFFIX
from fedskip.config import Config
from fedskip.fl import messages as M
from fedskip.fl.wire_compression import BLOCK_SIZE, EF_STATE
from fedskip.records.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
NODES = 3  # the three sites of tests/fl/conftest.py
Run = Callable[..., tuple[dict[str, Any], Any]]


@pytest.fixture
def run(make_cfg: Callable[..., Config], run_local: Run, tmp_path: Path) -> Run:
    """One federated run over the in-process grid (``out`` under ``tmp_path``)."""

    def go(name: str, *, tamper: Any = None, **changes: Any) -> tuple[dict[str, Any], Any]:
        settings = {"rounds": 1, "eval_clients": False, "out": str(tmp_path / name), **changes}
        return run_local(make_cfg(**settings), tamper=tamper)

    return go


def _rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _int8_bytes(shapes: dict[str, tuple[int, ...]]) -> int:
    """``count_bytes`` of an int8 payload: per entry a 128-byte .npy header + values + key."""
    total = 0
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        blocks = -(-n // BLOCK_SIZE)
        total += 128 + n + len(name) + 128 + 4 * blocks + len(name + SCALE_SUFFIX)
    return total


def test_int8_round_is_the_plain_round_up_to_half_a_step(run: Run, tmp_path: Path) -> None:
    plain, _ = run("plain")
    packed, grid = run("int8", compression="int8")
    exact = load_checkpoint(tmp_path / "plain").global_state
    got = load_checkpoint(tmp_path / "int8").global_state
    shapes = {k: tuple(np.shape(v)) for k, v in exact.items()}
    # round 1 starts from the base: both runs train identically, only the uplink is quantized,
    # so the (example-weighted) average differs by at most the largest client half step
    deltas = [
        M.to_numpy(m.content.array_records[M.ARRAYS])
        for m in grid.received
        if m.has_content() and M.ARRAYS in m.content.array_records
    ]
    assert len(deltas) == NODES
    for name in exact:
        diff = np.abs(np.asarray(got[name]) - np.asarray(exact[name]))
        steps = [np.repeat(d[name + SCALE_SUFFIX], BLOCK_SIZE)[: diff.size] for d in deltas]
        bound = np.max(np.stack(steps), axis=0).reshape(diff.shape) / 2
        assert np.all(diff <= bound + 1e-6) and diff.max() > 0, name
    # bytes are the compressed payloads: exactly the int8 framing per client and direction
    row = _rows(tmp_path / "int8")[0]
    assert row["bytes_up"] == row["bytes_down"] == NODES * _int8_bytes(shapes)
    assert packed["bytes"]["total"] < 0.3 * plain["bytes"]["total"]
    for context in grid.contexts.values():  # each node kept its error-feedback residuals
        residuals = context.state.array_records[EF_STATE]
        assert set(residuals) == set(exact) and any(
            np.abs(a.numpy()).sum() > 0 for a in residuals.values()
        )


def test_lora_with_fp16_exchanges_only_adapters_head_and_norm(run: Run, tmp_path: Path) -> None:
    summary, grid = run("lora", compression="fp16", lora_rank=4, rounds=2)
    assert summary["rounds_completed"] == 2 and summary["failed_rounds"] == []
    replies = [m for m in grid.received if m.has_content() and M.ARRAYS in m.content.array_records]
    assert len(replies) == 2 * NODES
    for reply in replies:
        arrays = M.to_numpy(reply.content.array_records[M.ARRAYS])
        assert {str(a.dtype) for a in arrays.values()} == {"float16"}
        for name in arrays:
            assert (
                ".layers.3." in name
                and ".lora_" in name
                or (".modules_to_save." in name or name.endswith("model.norm.weight"))
            ), name
    # 4 * (2*128 + 2*96 + 3*192) adapter values + 7-label head + final norm, 2 bytes each
    assert summary["parameters"]["exchanged"] == 4096 + 7 * 64 + 7 + 64
    from transformers import AutoModelForTokenClassification

    exported = AutoModelForTokenClassification.from_pretrained(tmp_path / "lora" / "model")
    assert not any("lora" in n for n, _ in exported.named_parameters())


def test_a_malformed_compressed_reply_is_rejected(run: Run, tmp_path: Path) -> None:
    def tamper(message: Message, reply: Message) -> Message:
        if reply.has_content() and M.ARRAYS in reply.content.array_records:
            record = reply.content.array_records[M.ARRAYS]
            if message.metadata.dst_node_id == 1000:  # first node: scales as fp16
                key = next(k for k in record if k.endswith(SCALE_SUFFIX))
                record[key] = Array(record[key].numpy().astype(np.float16))
        return reply

    summary, _ = run("bad", tamper=tamper, compression="int8")
    row = _rows(tmp_path / "bad")[0]
    assert row["replies_ok"] == NODES - 1 and row["replies_rejected"] == 1
    assert "float32 scale(s)" in row["rejections"][0]
    assert summary["failed_rounds"] == []


def test_a_resumed_default_int8_run_equals_an_uninterrupted_one_bit_for_bit(
    make_cfg: Callable[..., Config],
    run_local: Run,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default compression (int8 deltas with error feedback) stopped after the clients had
    trained round 2 but before its checkpoint: the resumed run restarts round 2 in new
    Contexts, with the residuals of round 1 from the sites' disks, and ends identical."""
    from fedskip.fl.server import ServerRun

    straight = make_cfg(rounds=3, compression="auto", out=str(tmp_path / "straight"))
    assert straight.wire_compression == "int8"
    run_local(straight)
    cut = straight.replace(out=str(tmp_path / "cut"))
    original = ServerRun.on_round_end

    def crash_before_checkpoint(self: ServerRun, rnd: int, arrays: Any, record: Any) -> None:
        if rnd == 2:  # the sites already trained round 2 and kept its residuals
            raise KeyboardInterrupt
        original(self, rnd, arrays, record)

    monkeypatch.setattr(ServerRun, "on_round_end", crash_before_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_local(cut)
    monkeypatch.setattr(ServerRun, "on_round_end", original)
    assert load_checkpoint(cut.out).round == 1
    run_local(cut.replace(resume=True))
    rows = [_rows(Path(c.out)) for c in (straight, cut)]
    assert [r["round"] for r in rows[1]] == [1, 2, 3]
    for a, b in zip(*rows):
        for key in ("train_loss", "f1", "precision", "recall", "bytes_up", "cum_bytes"):
            assert a[key] == b[key], (a["round"], key)
    states = [load_checkpoint(c.out).global_state for c in (straight, cut)]
    assert sorted(states[0]) == sorted(states[1])
    for name, value in states[0].items():
        np.testing.assert_array_equal(value, states[1][name], err_msg=name)

"""Checkpoints (atomic, RNG states) and the per-round / summary records, without training."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.federation.round_rows import headline, round_row, summarize
from fedskip.federation.round_types import RoundRecord
from fedskip.records.checkpoint import (
    Checkpoint,
    capture_rng,
    check_checkpoint,
    find_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from fedskip.records.schema import MetricsRow


def test_checkpoint_round_trip_with_optimizer_moments(tmp_path: Path) -> None:
    state = {"a.w": np.arange(4, dtype=np.float32), "b": np.ones((2, 2), dtype=np.float32)}
    strategy = {
        "touched": ["a.w"],
        "m_t": {"a.w": np.full(4, 0.5, np.float32)},
        "v_t": {"a.w": np.zeros(4, np.float32)},
    }
    save_checkpoint(
        tmp_path,
        Checkpoint(3, state, strategy, {"scores": [1.0, 2.0]}, {"seconds": 9.5}, {"rounds": 5}),
    )
    ckpt = load_checkpoint(tmp_path)
    assert (
        ckpt.round == 3
        and ckpt.planner == {"scores": [1.0, 2.0]}
        and ckpt.totals == {"seconds": 9.5}
    )
    assert sorted(ckpt.global_state) == ["a.w", "b"]
    np.testing.assert_array_equal(ckpt.global_state["a.w"], state["a.w"])
    assert ckpt.strategy["touched"] == ["a.w"]
    np.testing.assert_array_equal(ckpt.strategy["m_t"]["a.w"], np.full(4, 0.5, np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_an_interrupted_swap_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, Checkpoint(1, {"w": np.zeros(1, np.float32)}))
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # crash between renames
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    assert load_checkpoint(tmp_path).round == 1


def test_missing_checkpoint_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        load_checkpoint(tmp_path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside the stored tensor: the archive still opens
    path.write_bytes(bytes(data))


def _drop_round(path: Path) -> None:
    path.write_text(path.read_text().replace('"round": 2,', ""))


@pytest.mark.parametrize(
    ("damage", "file", "reason"),
    [
        (_truncate, "global.npz", "missing, or not a .npz archive"),
        (lambda p: p.write_text("garbage"), "global.npz", "missing, or not a .npz archive"),
        (lambda p: p.unlink(), "global.npz", "missing, or not a .npz archive"),
        (_truncate, "best.npz", "missing, or not a .npz archive"),
        (_flip_a_byte, "global.npz", None),
        (_drop_round, "state.json", "'round' is None, not a round >= 1"),
        (lambda p: p.write_text("[1]"), "state.json", "not a JSON object"),
        (lambda p: p.write_bytes(b"\xff{"), "state.json", None),
    ],
    ids=[
        "truncated-npz",
        "garbage-npz",
        "missing-npz",
        "truncated-best",
        "flipped-byte",
        "no-round",
        "list",
        "binary",
    ],
)
def test_damaged_checkpoint_is_a_user_error(tmp_path: Path, damage, file: str, reason) -> None:
    state = {"w": np.arange(4096, dtype=np.float32)}
    save_checkpoint(tmp_path, Checkpoint(2, state, best_state=state))
    path = tmp_path / "checkpoint" / file
    damage(path)
    for read in (load_checkpoint, check_checkpoint):  # check: before Ray, tensors not loaded
        with pytest.raises(ConfigError) as info:
            read(tmp_path)
        if reason is None:  # the decoder's own words
            assert str(info.value).startswith(f"{path}: unreadable checkpoint (")
        else:
            assert str(info.value) == f"{path}: unreadable checkpoint ({reason})"


def test_a_whole_checkpoint_passes_the_check(tmp_path: Path) -> None:
    state = {"w": np.arange(4096, dtype=np.float32)}
    save_checkpoint(tmp_path, Checkpoint(2, state, {"m_t": {"w": state["w"]}}, best_state=state))
    assert check_checkpoint(tmp_path) == tmp_path / "checkpoint"


def test_rng_states_are_restored() -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = capture_rng()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(saved)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _record(
    rnd: int, down: int, up: int, clients: list[int], *, failed: bool = False
) -> RoundRecord:
    return RoundRecord(
        round=rnd,
        bytes_down=down,
        bytes_up=up,
        clients=clients,
        replies_ok=len(clients),
        failed=failed,
        train_metrics={"train-loss": 0.5},
        seconds=1.0,
    )


def test_rows_accumulate_bytes_and_the_summary_compares_with_full_fedavg() -> None:
    rows: list[MetricsRow] = []
    rows.append(
        round_row(_record(1, 100, 80, [0, 1]), {"f1": 0.4, "per_type": {}}, rows, elapsed=1.0)
    )
    rows.append(
        round_row(_record(2, 100, 90, [0, 1, 2], failed=True), {"f1": 0.3}, rows, elapsed=2.0)
    )
    assert [r.cum_bytes for r in rows] == [180, 370]
    assert [r.to_json()["cum_bytes"] for r in rows] == [180, 370]
    assert rows[1].status == "failed" and rows[0].train_loss == 0.5
    summary = summarize(
        rows,
        cfg=Config(rounds=2),
        primary="f1",
        full_model_bytes=1000,
        exchanged_parameters=10,
        seconds=3.0,
    )
    # full FedAvg: 1000 bytes down + 1000 up for each of 2 + 3 client-rounds
    assert summary["fedavg_bytes"] == 10_000
    assert summary["reduction"] == pytest.approx(1 - 370 / 10_000)
    top = headline(rows, "f1")  # the last round, failed or not, and the best of the curve
    assert (top.final_metric, top.best_metric, top.best_round, top.source) == (
        0.3,
        0.4,
        1,
        "global-test",
    )
    assert summary["failed_rounds"] == [2] and summary["bytes"] == {
        "down": 200,
        "up": 170,
        "total": 370,
        "eval": 0,
    }


def test_remove_checkpoint_clears_every_stage(tmp_path: Path) -> None:
    from fedskip.records.checkpoint import remove_checkpoint

    save_checkpoint(tmp_path, Checkpoint(1, {"w": np.zeros(1, np.float32)}))
    (tmp_path / "checkpoint.new").mkdir()
    remove_checkpoint(tmp_path)
    assert find_checkpoint(tmp_path) is None and list(tmp_path.iterdir()) == []


def test_resume_refuses_a_torn_row_that_the_checkpoint_covers(tmp_path: Path) -> None:
    from fedskip.federation.round_rows import truncate_metrics
    from fedskip.records.rundir import RunDir

    run = RunDir(tmp_path)
    for rnd in (1, 2, 3):
        run.append_metrics(MetricsRow(round=rnd, train_loss=1.0 / rnd))
    text = run.metrics_path.read_text()
    run.metrics_path.write_text(text[: len(text) - 20])  # round 3's line torn
    with pytest.raises(ConfigError) as info:
        truncate_metrics(run, 3)  # the checkpoint is after round 3
    assert str(info.value) == (
        f"{run.metrics_path}:3: the row of round 3 is torn or missing, but the checkpoint is "
        "after round 3: resuming would leave a gap in the record; restore the row, or run "
        "again without --resume"
    )
    rows = truncate_metrics(run, 2)  # covered by a checkpoint after round 2: the torn line goes
    assert [r.round for r in rows] == [1, 2]
    assert [r.round for r in run.read_metrics()] == [1, 2]
    assert run.metrics_path.read_text().count("\n") == 2

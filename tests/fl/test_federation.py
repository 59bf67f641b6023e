"""Federated runs of the real ServerApp / ClientApp logic over an in-process grid (llama-tiny)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.app import Message, RecordDict

from fedskip.config import Config
from fedskip.fl import messages as M
from tests.fl.conftest import DATA_WORDS
from tests.fl.local_grid import wire_bytes as _all_wire_bytes


@pytest.mark.slow
def test_messages_carry_only_trainable_tensors_and_numbers(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(rounds=1)
    summary, grid = run_local(cfg)
    from fedskip.models.freeze import trainable_names_for
    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle

    bundle = load_bundle(cfg, prepare(cfg))
    top = bundle.stack.num_blocks - 1
    expected = set(trainable_names_for(bundle.model, bundle.stack, [top]))
    all_names = {n for n, _ in bundle.model.named_parameters()}
    assert expected and expected < all_names
    train_out = [m for m in grid.sent if m.metadata.message_type == "train"]
    train_back = [r for r in grid.received if r.metadata.message_type == "train"]
    assert len(train_out) == len(train_back) == 3
    for message in train_out:
        assert set(message.content["arrays"].keys()) == expected
        assert message.content["config"]["train-layers"] == [top]
    for message in train_back:
        content = message.content
        assert set(content.keys()) == {"arrays", "metrics"}
        assert set(content["arrays"].keys()) == expected
        assert all(a.dtype == "float32" for a in content["arrays"].values())
        metrics = dict(content["metrics"])
        assert set(metrics) == {"num-examples", "train-loss", "train-steps", "train-seconds"}
        assert all(isinstance(v, (int, float)) for v in metrics.values())
    examples = sorted(int(m.content["metrics"]["num-examples"]) for m in train_back)
    assert examples == [4, 4, 4]  # 5 one-sentence notes per site, 1 held out for testing
    for message in grid.received:
        if message.has_content() and "metrics" in message.content:
            assert all(isinstance(v, (int, float)) for v in message.content["metrics"].values())
    wire = _all_wire_bytes(grid.sent + grid.received).lower()
    for word in DATA_WORDS:
        assert word.encode() not in wire, word
    row = json.loads(Path(cfg.out, "metrics.jsonl").read_text().splitlines()[0])
    sent = sum(M.array_bytes(m.content) for m in train_out)
    assert row["bytes_down"] == sent == 3 * train_out[0].content["arrays"].count_bytes()
    assert row["bytes_up"] == sum(m.content["arrays"].count_bytes() for m in train_back)
    assert summary["bytes"]["total"] == row["cum_bytes"] == row["bytes_down"] + row["bytes_up"]
    assert summary["fedavg_bytes"] == 2 * 3 * 4 * bundle.full_parameters
    assert summary["reduction"] == pytest.approx(1 - row["cum_bytes"] / summary["fedavg_bytes"])
    spent = sorted(float(m.content["metrics"]["train-seconds"]) for m in train_back)
    assert set(row["train_seconds"]) == {"0", "1", "2"}  # every client that trained, by id
    assert sorted(row["train_seconds"].values()) == spent
    assert summary["client_train_seconds"] == pytest.approx(sum(spent))


@pytest.mark.slow
def test_frozen_layers_are_unchanged_after_a_federated_run(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(rounds=2)
    run_local(cfg)
    from transformers import AutoModelForTokenClassification

    from fedskip.pipeline import prepare
    from fedskip.trainability import load_bundle

    pretrained = load_bundle(cfg, prepare(cfg))
    exported = AutoModelForTokenClassification.from_pretrained(Path(cfg.out) / "model")
    trained = dict(exported.named_parameters())
    top = pretrained.stack.num_blocks - 1
    changed, frozen = 0, 0
    for name, before in pretrained.model.named_parameters():
        after = trained[name]
        trained_here = pretrained.stack.block_of(name) == top or pretrained.stack.is_head(name)
        if trained_here or pretrained.stack.is_final_norm(name):  # final norm goes with the top
            changed += int(not torch.equal(before, after))
        else:
            frozen += 1
            assert torch.equal(before, after), name
    assert changed > 0 and frozen > 0


def _corrupt(kind: str, partition: int) -> Callable[[Message, Message], Message]:
    """Tamper with one client's train reply on the way to the server."""

    def tamper(instruction: Message, reply: Message) -> Message:
        node = instruction.metadata.dst_node_id
        if instruction.metadata.message_type != "train" or (node - 1000) // 7 != partition:
            return reply
        tensors = M.to_numpy(reply.content["arrays"])
        name = sorted(tensors)[0]
        if kind == "nan":
            tensors[name] = np.full_like(tensors[name], np.nan)
        elif kind == "shape":
            tensors[name] = tensors[name].reshape(-1)[:-1].copy()
        elif kind == "frozen":
            tensors["model.embed_tokens.weight"] = np.zeros((2, 2), np.float32)
        elif kind == "wrong-key":
            tensors["not.a.parameter"] = tensors.pop(name)
        content = RecordDict(
            {"arrays": M.to_array_record(tensors), "metrics": reply.content["metrics"]}
        )
        return Message(content, reply_to=instruction)

    return tamper


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["nan", "shape", "frozen", "wrong-key"])
def test_a_bad_reply_is_rejected_and_the_round_completes(
    kind: str, make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(rounds=1, eval_clients=False, min_replies=2)
    summary, _ = run_local(cfg, tamper=_corrupt(kind, partition=1))
    row = json.loads(Path(cfg.out, "metrics.jsonl").read_text().splitlines()[0])
    assert (row["status"], row["replies_ok"], row["replies_rejected"]) == ("ok", 2, 1)
    assert row["rejections"][0].startswith("train reply from client 1 rejected: ")
    assert summary["failed_rounds"] == []


@pytest.mark.slow
def test_a_round_with_too_few_good_replies_fails_loudly(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    cfg = make_cfg(rounds=1, eval_clients=False, min_replies=3)
    summary, _ = run_local(cfg, tamper=_corrupt("nan", partition=0))
    row = json.loads(Path(cfg.out, "metrics.jsonl").read_text().splitlines()[0])
    assert row["status"] == "failed" and row["replies_ok"] == 2
    assert "fewer than min-replies=3" in row["failure"]
    assert summary["failed_rounds"] == [1]


@pytest.mark.slow
def test_resumed_run_ends_with_the_same_metrics(
    make_cfg: Callable[..., Config],
    run_local: Any,
    tmp_path: Path,
    interrupted: Callable[[Config, int], None],
) -> None:
    straight = make_cfg(
        rounds=2, out=str(tmp_path / "straight"), layer_strategy="rotating", fraction_train=0.67
    )
    run_local(straight)
    cut = straight.replace(out=str(tmp_path / "cut"))
    interrupted(cut, 1)
    run_local(cut.replace(resume=True))
    rows = [
        [json.loads(line) for line in Path(c.out, "metrics.jsonl").read_text().splitlines()]
        for c in (straight, cut)
    ]
    assert [r["round"] for r in rows[1]] == [1, 2]
    assert rows[1][0]["selected_layers"] != rows[1][1]["selected_layers"]  # rotating
    for a, b in zip(*rows):
        for key in ("train_loss", "f1", "precision", "recall"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
        for key in ("bytes_down", "bytes_up", "cum_bytes", "selected_layers", "clients"):
            assert a[key] == b[key], key
    states = [np.load(Path(c.out, "checkpoint", "global.npz")) for c in (straight, cut)]
    for key in states[0].files:
        np.testing.assert_allclose(states[0][key], states[1][key], atol=1e-6)


@pytest.mark.slow
def test_the_server_refuses_to_resume_another_runs_checkpoint(
    make_cfg: Callable[..., Config],
    run_local: Any,
    tmp_path: Path,
    interrupted: Callable[[Config, int], None],
) -> None:
    """A deployment's ServerApp gets ``resume=true`` from a regenerated app, not from
    ``fedskip run --resume``: a changed key outside RESUME_MAY_CHANGE (here the seed) is
    refused before a round runs, and the folder keeps the first run's records."""
    from fedskip.errors import ConfigError

    cut = make_cfg(rounds=2, out=str(tmp_path / "cut"))
    interrupted(cut, 1)
    before = {
        p.relative_to(cut.out): p.read_bytes() for p in Path(cut.out).rglob("*") if p.is_file()
    }
    with pytest.raises(ConfigError, match=r"config.json: config key 'seed': cannot change"):
        run_local(cut.replace(resume=True, seed=cut.seed + 1))
    after = {
        p.relative_to(cut.out): p.read_bytes() for p in Path(cut.out).rglob("*") if p.is_file()
    }
    assert after == before
    Path(cut.out, "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json: missing"):
        run_local(cut.replace(resume=True))


@pytest.mark.slow
def test_clients_that_cannot_start_stop_the_run_with_one_line(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    from fedskip.federation.round_types import ClientsUnavailable

    def fail_everything(instruction: Message, reply: Message) -> Message:
        from flwr.app import Error

        return Message(Error(code=0, reason="ClientWorkFailed: DataError"), reply_to=instruction)

    with pytest.raises(ClientsUnavailable, match="only 0 of 3 SuperNodes answered"):
        run_local(make_cfg(rounds=1), tamper=fail_everything)


@pytest.mark.slow
@pytest.mark.parametrize("simulation", [True, False], ids=["simulation", "deployment"])
def test_a_user_error_at_a_client_ends_the_run_with_one_line(
    make_cfg: Callable[..., Config],
    run_local: Any,
    monkeypatch: pytest.MonkeyPatch,
    simulation: bool,
) -> None:
    """A FedskipError in a client's work (here: training finds no notes) ends the run with
    that error — one line, exit 2 at the CLI — instead of failed rounds and tracebacks. Only
    in a simulation (one person, one machine) does the message itself travel."""
    import fedskip.federation.client as client_core
    from fedskip.errors import DataError
    from fedskip.federation.round_types import ClientUserError
    from fedskip.fl.worker_log import WORKER_LOG_ENV

    def no_notes(runtime: Any, data: Any, *args: Any, **kwargs: Any) -> Any:
        raise DataError(f"client {data.client_id} ({data.name}) has no training notes")

    monkeypatch.setattr(client_core, "train_round", no_notes)
    if simulation:
        monkeypatch.setenv(WORKER_LOG_ENV, "run.log")
    else:
        monkeypatch.delenv(WORKER_LOG_ENV, raising=False)
    with pytest.raises(ClientUserError) as info:
        run_local(make_cfg(rounds=1))
    first = str(info.value).split(" (raised by client ")[-1][0]  # the first reply to arrive
    detail = (
        f"client {first} (site-{first}) has no training notes"
        if simulation
        else "DataError, see the site's log"
    )
    assert str(info.value) == f"{detail} (raised by client {first} during training)"


def test_federated_export_carries_its_model_card(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    """The model card of a federated run names its sites, rounds and exchanged blocks and
    holds the exported model's test scores."""
    from fedskip.modelcard import read_card_metadata

    cfg = make_cfg(rounds=1)
    summary, _ = run_local(cfg)
    model = Path(cfg.out) / "model"
    scores = read_card_metadata(model)["model-index"][0]["results"][0]["metrics"]
    assert scores[0] == {"type": "f1", "value": summary["final"]["f1"], "name": "test f1"}
    lines = (model / "README.md").read_text().splitlines()
    assert "- Sites (3): site-0, site-1, site-2" in lines
    assert (
        "- Federated: method layerskip, 1 of 1 rounds, 1 local epoch(s) per round, "
        "partition natural" in lines
    )
    assert "- Trained transformer blocks: [3] of 4 (the others kept the base weights)" in lines

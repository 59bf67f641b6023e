"""Per-site personalization (``personalize``): personal tensors never travel, sites keep them
across rounds and resumes, score and export their own models (llama-tiny, in-process grid)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedskip.config import Config


def _personal_and_shared(cfg: Config) -> tuple[set[str], set[str]]:
    from fedskip.pipeline import prepare
    from fedskip.trainability import (
        load_bundle,
        personal_names,
        set_trainable,
        shared_names,
        static_layers,
    )

    bundle = load_bundle(cfg, prepare(cfg))
    layers = static_layers(cfg, bundle.stack) or [bundle.stack.num_blocks - 1]
    trainable = set_trainable(bundle, cfg, layers)
    return set(personal_names(bundle, cfg, trainable)), set(shared_names(bundle, cfg, trainable))


def _keys_on_the_wire(grid: Any) -> set[str]:
    keys: set[str] = set()
    for message in grid.sent + grid.received:
        if message.has_content():
            for record in message.content.array_records.values():
                keys |= set(record.keys())
    return keys


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {"personalize": "head"},
        {"personalize": "head+norms"},
        {"personalize": "head", "lora_rank": 2},
        {"personalize": "norms", "compression": "int8"},
    ],
    ids=["head", "head+norms", "lora-head", "norms-int8"],
)
def test_personal_tensors_never_travel_and_sites_score_their_own_models(
    make_cfg: Callable[..., Config], run_local: Any, changes: dict[str, Any]
) -> None:
    cfg = make_cfg(rounds=2, **changes)
    summary, grid = run_local(cfg)
    personal, shared = _personal_and_shared(cfg)
    assert personal and shared
    wire = _keys_on_the_wire(grid)  # compressed records name their parts after the tensor
    assert wire and not any(name in key for key in wire for name in personal)
    train_back = [r for r in grid.received if r.metadata.message_type == "train"]
    assert len(train_back) == 6
    if cfg.compression == "none":
        assert all(set(r.content["arrays"].keys()) == shared for r in train_back)
    assert summary["failed_rounds"] == []
    rows = [json.loads(x) for x in Path(cfg.out, "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        sites = row["personal_eval"]["sites"]
        assert len(sites) == 3
        for scores in sites.values():
            assert set(scores) == {"personal", "global"}
            assert "f1" in scores["personal"] and "f1" in scores["global"]
        assert "f1" in row["personal_eval"]["mean"]["personal"]
    report = summary["personalization"]
    assert report["mode"] == cfg.personalize and report["round"] == 2
    assert report["sites"] == rows[-1]["personal_eval"]["sites"]
    manifest = json.loads(Path(cfg.out, "model", "fedskip.json").read_text())
    assert manifest["personalized"] == cfg.personalize


@pytest.mark.slow
def test_a_site_export_loads_with_plain_transformers_and_holds_its_own_head(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    import torch
    from transformers import AutoModelForTokenClassification

    cfg = make_cfg(rounds=1, personalize="head")
    run_local(cfg)
    sites = sorted(p.parent for p in Path(cfg.out, "sites").glob("*/model"))
    assert len(sites) == 3
    models = [AutoModelForTokenClassification.from_pretrained(s / "model") for s in sites]
    coordinator = AutoModelForTokenClassification.from_pretrained(Path(cfg.out, "model"))
    heads = [dict(m.named_parameters())["score.weight"] for m in (*models, coordinator)]
    assert not torch.equal(heads[0], heads[1])  # each site trained its own head
    assert not torch.equal(heads[0], heads[3])
    bodies = [{k: v for k, v in m.state_dict().items() if "score" not in k} for m in models]
    for key, value in bodies[0].items():  # the shared part is the same at every site
        torch.testing.assert_close(value, bodies[1][key])
    marker = json.loads((sites[0] / "model" / "fedskip.json").read_text())
    assert marker["site_model"] is True and marker["personalized"] == "head"


@pytest.mark.slow
def test_resume_with_personal_state_is_exact(
    make_cfg: Callable[..., Config],
    run_local: Any,
    tmp_path: Path,
    interrupted: Callable[[Config, int], None],
) -> None:
    straight = make_cfg(rounds=2, out=str(tmp_path / "straight"), personalize="head+norms")
    run_local(straight)
    cut = straight.replace(out=str(tmp_path / "cut"))
    interrupted(cut, 1)
    run_local(cut.replace(resume=True))  # new Contexts: the sites read their disk state
    rows = [
        [json.loads(line) for line in Path(c.out, "metrics.jsonl").read_text().splitlines()]
        for c in (straight, cut)
    ]
    assert [r["round"] for r in rows[1]] == [1, 2]
    for a, b in zip(*rows):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        for site, scores in a["personal_eval"]["sites"].items():
            other = b["personal_eval"]["sites"][site]["personal"]
            for key, value in scores["personal"].items():
                assert value == pytest.approx(other[key], abs=1e-6), (site, key)
    for site in Path(straight.out, "sites").iterdir():
        mine = [
            np.load(
                sorted(Path(c.out, "sites", site.name, "personal").glob("*/round-00002.npz"))[0]
            )
            for c in (straight, cut)
        ]
        for key in mine[0].files:
            np.testing.assert_allclose(mine[0][key], mine[1][key], atol=1e-6)
    checkpoint = np.load(Path(cut.out, "checkpoint", "global.npz"))
    personal, _ = _personal_and_shared(cut)
    assert not set(checkpoint.files) & personal  # the server never holds personal tensors


def test_the_closing_lines_name_the_sites_own_models() -> None:
    from fedskip.commands.run import format_federated

    summary = {
        "primary_metric": "f1",
        "final_metric": 0.5,
        "best_metric": 0.5,
        "best_round": 1,
        "bytes": {"total": 8, "down": 4, "up": 4},
        "rounds_completed": 1,
        "seconds": 1.0,
        "out": "runs/x",
        "personalization": {
            "mode": "head",
            "sites": {"a": {}},
            "mean": {"personal": {"f1": 0.75}, "global": {"f1": 0.25}},
        },
    }
    assert (
        "personalized (head): mean F1 0.7500 of the sites' own models on their test splits "
        "(global model: 0.2500); site exports in runs/x/sites/<site>/model (or each node's "
        "state-dir)"
    ) in format_federated(summary).splitlines()


@pytest.mark.slow
def test_a_reply_that_sends_its_personal_head_is_refused(
    make_cfg: Callable[..., Config], run_local: Any
) -> None:
    from flwr.app import Array, Message

    cfg = make_cfg(rounds=1, personalize="head", min_replies=2)
    personal, _ = _personal_and_shared(cfg)
    name = sorted(personal)[0]

    def leak_head(message: Message, reply: Message) -> Message:
        if message.metadata.message_type == "train" and message.metadata.dst_node_id == 1007:
            arrays = reply.content["arrays"]
            arrays[name] = Array(np.zeros((2, 2), np.float32))
        return reply

    summary, _ = run_local(cfg, tamper=leak_head)
    row = json.loads(Path(cfg.out, "metrics.jsonl").read_text().splitlines()[0])
    assert (row["replies_ok"], row["replies_rejected"]) == (2, 1)
    assert f"sent 1 frozen tensor(s): {name!r}" in row["rejections"][0]
    assert summary["failed_rounds"] == []

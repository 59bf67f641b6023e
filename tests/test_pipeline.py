"""Config → data + model: sites, labels, splits, partitions, layer plans, encoding cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fedskip.config import Config
from fedskip.errors import ConfigError
from fedskip.pipeline import encode, prepare
from fedskip.trainability import build_trainable, layer_plan, trained_blocks

SENTENCES = [
    (["patient", "denies", "chest", "pain"], ["O", "O", "B-problem", "I-problem"]),
    (["ordered", "a", "chest", "x-ray"], ["O", "O", "B-test", "I-test"]),
    (["started", "aspirin", "today"], ["O", "B-treatment", "O"]),
    (["no", "fever", "noted"], ["O", "B-problem", "O"]),
]


def ner_site(n: int, offset: int, *, with_treatment: bool = True) -> str:
    pool = SENTENCES if with_treatment else [s for s in SENTENCES if "B-treatment" not in s[1]]
    lines = []
    for i in range(n):
        tokens, tags = pool[(i + offset) % len(pool)]
        lines.append(json.dumps({"id": f"d{offset}-{i}", "tokens": tokens, "tags": tags}))
    return "\n".join(lines) + "\n"


@pytest.fixture
def ner_sites(write_tree: Any) -> Path:
    return write_tree(
        {
            "site-a/notes.jsonl": ner_site(5, 0, with_treatment=False),
            "site-b/notes.jsonl": ner_site(5, 1),
        },
        root="ner",
    )


def cfg_for(data: Path, **kw: Any) -> Config:
    base = dict(
        data=str(data),
        model="llama-tiny",
        device="cpu",
        quiet=True,
        max_length=32,
        stride=4,
        test_fraction=0.2,
    )
    return Config(**{**base, **kw})


def _ids(docs: list[Any]) -> set[tuple[str | None, str]]:
    return {(d.site, d.doc_id) for d in docs}


def test_natural_one_client_per_site(ner_sites: Path) -> None:
    p = prepare(cfg_for(ner_sites))
    assert p.task == "ner" and not p.multi_label
    # union of types across sites (site-a has no treatment), sorted
    assert p.label_list == [
        "O",
        "B-problem",
        "I-problem",
        "B-test",
        "I-test",
        "B-treatment",
        "I-treatment",
    ]
    assert p.client_names == ["site-a", "site-b"]
    assert [len(t) for t in p.client_train] == [4, 4]
    assert [len(t) for t in p.client_test] == [1, 1]
    assert _ids(p.global_test) == _ids(p.client_test[0]) | _ids(p.client_test[1])
    assert not _ids(p.train_docs) & _ids(p.global_test)
    assert all(d.site == "site-a" for d in p.client_train[0] + p.client_test[0])
    assert [(r["client"], r["documents"], r["test_documents"]) for r in p.report] == [
        ("site-a", 4, 1),
        ("site-b", 4, 1),
    ]
    assert p.task_info.task == "ner"
    again = prepare(cfg_for(ner_sites))
    assert [_ids(t) for t in again.client_train] == [_ids(t) for t in p.client_train]


def test_pooled_partition_splits_each_client(ner_sites: Path) -> None:
    p = prepare(cfg_for(ner_sites, partition="iid", clients=3))
    assert p.client_names == ["client-0", "client-1", "client-2"]
    # 8 pooled training docs -> 3/3/2 -> each split 80/20 (at least one test doc)
    assert [len(t) for t in p.client_train] == [2, 2, 1]
    assert [len(t) for t in p.client_test] == [1, 1, 1]
    assert len(p.global_test) == 2
    client_docs = [_ids(a) | _ids(b) for a, b in zip(p.client_train, p.client_test)]
    assert sum(len(c) for c in client_docs) == 8
    assert not set().union(*client_docs) & _ids(p.global_test)
    assert p.train_docs == [d for part in p.client_train for d in part]


def test_task_mismatch_is_a_config_error(ner_sites: Path) -> None:
    with pytest.raises(ConfigError, match="task=ner"):
        prepare(cfg_for(ner_sites, task="classification"))


def test_multi_label_classification(write_tree: Any) -> None:
    rows = [
        {"text": f"note {i} about things", "labels": labs}
        for i, labs in enumerate([["4019"], ["4280", "4019"], ["25000"], ["4280"], ["4019"]])
    ]
    root = write_tree({"h1/a.jsonl": "\n".join(json.dumps(r) for r in rows)}, root="cls")
    p = prepare(cfg_for(root, task="classification", partition="natural"))
    assert p.label_list == ["25000", "4019", "4280"]
    assert p.multi_label
    assert p.client_names == ["h1"]
    assert len(p.global_test) == 1


@pytest.fixture
def prepared_ner(ner_sites: Path) -> tuple[Config, Any]:
    torch.set_num_threads(1)
    cfg = cfg_for(ner_sites)
    return cfg, prepare(cfg)


@pytest.mark.parametrize(
    ("changes", "blocks", "embeddings_trainable"),
    [
        ({"layers": 1}, [3], False),
        ({"layers": 2, "layer-strategy": "bottom"}, [0, 1], False),
        ({"layer-strategy": "explicit", "layer-ids": "0,2"}, [0, 2], False),
        ({"layers": 4}, [0, 1, 2, 3], True),  # every block = full fine-tuning
        ({"method": "fedavg", "layers": 1}, [0, 1, 2, 3], True),
    ],
)
def test_build_trainable_applies_layer_plan(
    prepared_ner: tuple[Config, Any],
    changes: dict[str, Any],
    blocks: list[int],
    embeddings_trainable: bool,
) -> None:
    cfg, prepared = prepared_ner
    cfg = Config.from_mapping(changes, base=cfg)
    bundle, layers = build_trainable(cfg, prepared)
    model, stack = bundle.model, bundle.stack
    assert stack.num_blocks == 4
    assert trained_blocks(bundle) == blocks == sorted(layers)
    emb = [p.requires_grad for n, p in model.named_parameters() if stack.is_embedding(n)]
    assert emb and all(e == embeddings_trainable for e in emb)
    assert all(p.requires_grad for n, p in model.named_parameters() if stack.is_head(n))
    assert model.config.id2label == dict(enumerate(prepared.label_list))


def test_too_many_layers_is_a_config_error(prepared_ner: tuple[Config, Any]) -> None:
    cfg, prepared = prepared_ner
    with pytest.raises(ConfigError, match="'layers'"):
        build_trainable(cfg.replace(layers=5), prepared)


def test_importance_and_rotating_plans(prepared_ner: tuple[Config, Any]) -> None:
    cfg, prepared = prepared_ner
    cfg = cfg.replace(layer_strategy="importance", layers=2, importance_batches=1, batch_size=4)
    bundle, _ = build_trainable(cfg, prepared)
    stack = bundle.stack
    assert len(trained_blocks(bundle)) == 2
    rotating = cfg.replace(layer_strategy="rotating")
    assert [layer_plan(rotating, stack, r) for r in (1, 2, 3)] == [[2, 3], [0, 1], [2, 3]]


def test_encode_is_cached_per_tokenizer_and_settings(prepared_ner: tuple[Config, Any]) -> None:
    cfg, prepared = prepared_ner
    from fedskip.models.loading import load_tokenizer

    tok = load_tokenizer("llama-tiny")
    first = encode(prepared.train_docs, tok, prepared, cfg)
    assert encode(prepared.train_docs, tok, prepared, cfg) is first
    assert len(first.gold) == 8  # one sentence per JSONL document
    other = encode(prepared.train_docs, tok, prepared, cfg.replace(max_length=16))
    assert other is not first
    assert encode(prepared.global_test, tok, prepared, cfg) is not first


@pytest.fixture
def synth_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEDSKIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_synth_corpus_ner_and_icd9(synth_cache: Path) -> None:
    cfg = Config(data="synth", synth_sites=2, synth_docs=10, device="cpu")
    p = prepare(cfg)
    assert p.label_list == [
        "O",
        "B-problem",
        "I-problem",
        "B-test",
        "I-test",
        "B-treatment",
        "I-treatment",
    ]
    assert p.client_names == ["site-1", "site-2"]
    assert p.data_path is not None and p.data_path.parent.parent == synth_cache
    assert len(p.global_test) == sum(len(t) for t in p.client_test) > 0
    icd = prepare(cfg.replace(task="classification", label="icd9", icd9_top_k=5))
    assert icd.multi_label and len(icd.label_list) == 5
    assert all(
        set(d.labels) <= set(icd.label_list) and d.labels for d in icd.train_docs + icd.global_test
    )
    cat = prepare(cfg.replace(task="classification"))
    assert not cat.multi_label and "Radiology" in cat.label_list

"""Tiny random BERT models and hand-made features for the training-engine tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

VOCAB = 32


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


def make_tiny_bert(kind: str, num_labels: int, *, seed: int = 0, multi_label: bool = False) -> Any:
    """A 2-block BERT (hidden 16) without dropout: ``kind`` is "token" or "sequence"."""
    from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        classifier_dropout=0.0,
        num_labels=num_labels,
        problem_type="multi_label_classification" if multi_label else None,
    )
    cls = BertForTokenClassification if kind == "token" else BertForSequenceClassification
    return cls(config)


def make_token_features(n: int, length: int = 6, num_labels: int = 3) -> list[dict[str, list[int]]]:
    """Learnable NER-like examples: the label of token id ``t`` is ``t % num_labels``."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (length,), generator=g).tolist()
        out.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * length,
                "labels": [t % num_labels for t in ids],
            }
        )
    return out


def make_sequence_features(n: int, length: int = 5) -> list[dict[str, Any]]:
    """Examples whose class is whether token id 1 occurs (same length: equal-weight batches)."""
    g = torch.Generator().manual_seed(2)
    out = []
    for i in range(n):
        ids = torch.randint(2, VOCAB, (length,), generator=g).tolist()
        if i % 2:
            ids[i % length] = 1
        out.append({"input_ids": ids, "attention_mask": [1] * length, "labels": i % 2})
    return out


@pytest.fixture
def tiny_bert() -> Any:
    return make_tiny_bert


@pytest.fixture
def token_features() -> Any:
    return make_token_features


@pytest.fixture
def sequence_features() -> Any:
    return make_sequence_features

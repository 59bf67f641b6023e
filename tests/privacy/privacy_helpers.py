"""Helpers for the privacy tests: tiny BERT / LLaMA token classifiers with frozen lower blocks, and learnable token features."""

from __future__ import annotations

from typing import Any

import torch

VOCAB = 32
LABELS = 3


def tiny_bert(*, blocks: int = 3, seed: int = 0) -> Any:
    """BERT token classifier (hidden 16, no dropout) training only its top block + head."""
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    model = BertForTokenClassification(
        BertConfig(
            vocab_size=VOCAB,
            hidden_size=16,
            num_hidden_layers=blocks,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            num_labels=LABELS,
        )
    )
    train_only(model, (f"bert.encoder.layer.{blocks - 1}.", "classifier."))
    return model


def tiny_llama(*, vocab: int = VOCAB, seed: int = 0) -> Any:
    """LLaMA token classifier (hidden 16, 3 blocks, GQA, RMSNorm, rotary) training its top block,
    final norm and head."""
    from transformers import LlamaConfig, LlamaForTokenClassification

    torch.manual_seed(seed)
    model = LlamaForTokenClassification(
        LlamaConfig(
            vocab_size=vocab,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
            num_labels=LABELS,
            pad_token_id=0,
            classifier_dropout=0.0,
        )
    )
    train_only(model, ("model.layers.2.", "model.norm.", "score."))
    return model


def train_only(model: Any, prefixes: tuple[str, ...]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(prefixes)


def token_features(n: int, length: int = 6, *, seed: int = 1) -> list[dict[str, list[int]]]:
    """Examples whose tag of token id ``t`` is ``t % 3``; every token is labelled."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (length,), generator=g).tolist()
        out.append(
            {"input_ids": ids, "attention_mask": [1] * length, "labels": [t % LABELS for t in ids]}
        )
    return out


def collate(items: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([item[k] for item in items]) for k in items[0]}


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def frozen_state(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}

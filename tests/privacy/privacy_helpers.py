"""Helpers for the privacy tests: tiny BERT / LLaMA token classifiers with frozen lower blocks, and learnable token features."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedskip.federation.round_types import RoundPlan
from fedskip.fl import messages as M
from tests.fl.local_grid import LocalGrid

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


# ---------------------------------------------------------------------- Flower stubs
SIZE = 20_000  # coordinates of the trained tensor: enough for a 3 % variance estimate


class TwoTensorPlanner:
    """Trains tensor ``w`` every round; ``u`` is in the global state but never trained."""

    def needs_scores(self, server_round: int) -> bool:
        return False

    def plan(self, server_round: int, scores: list[float] | None) -> RoundPlan:
        return RoundPlan(layers=[0], train_keys=["w"])


def delta_client_app(
    deltas: dict[int, float],
    mods: list[Any] | None = None,
    metrics: Callable[[int, int], dict[str, float]] | None = None,
) -> ClientApp:
    """Client ``i`` returns ``w + deltas[i]`` (a known update) with 10 examples, plus
    ``metrics(client, round)`` in its reply."""
    app = ClientApp(mods=mods or [])

    @app.train()
    def train(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        w = message.content.array_records[M.ARRAYS]["w"].numpy()
        content = RecordDict(
            {
                M.ARRAYS: ArrayRecord({"w": Array((w + deltas[pid]).astype(np.float32))}),
                M.METRICS: M.to_metric_record(
                    {"num-examples": 10, "train-loss": 1.0, **extra(pid, message)}
                ),
            }
        )
        return Message(content, reply_to=message)

    def extra(pid: int, message: Message) -> dict[str, float]:
        if metrics is None:
            return {}
        return metrics(pid, int(message.content.config_records[M.CONFIG][M.SERVER_ROUND]))  # type: ignore[arg-type]

    @app.query("identify")
    def identify(message: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        record = M.to_metric_record({"num-examples": 10, M.CLIENT_ID: pid})
        return Message(RecordDict({M.METRICS: record}), reply_to=message)

    return app


class WireGrid(LocalGrid):
    """An in-process grid that delivers a copy of each message, as the network would: SecAgg+
    stages send one shared content object to every node, and strategies reuse their config
    record across rounds. ``delivered`` keeps what each node got."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delivered: list[Message] = []

    def _handle(self, message: Message) -> Message:
        copied = copy.deepcopy(message)
        self.delivered.append(copied)
        return super()._handle(copy.deepcopy(copied))

"""Frozen-prefix activation cache: run the frozen blocks below the lowest trained one only once.

Under layer skipping every parameter below the lowest trained block ``j`` (the embeddings and
blocks ``0..j-1``) is frozen, and frozen modules run in eval mode (no dropout, see
:func:`fedskip.models.freeze.frozen_modules_eval`). The hidden states entering block ``j`` are
then a fixed function of each example's tokens: this module computes them once per example and
from then on the model runs only blocks ``j..L-1`` and the head — in every later local epoch,
round and evaluation.

How a cached forward works (any Hugging Face family, no per-architecture code): the batch carries
``prefix_hidden`` (the cached block-``j`` inputs, right-padded with zeros). A pre-hook on the
model pops it and, for the duration of that one forward call, puts stand-ins in the block list:
blocks ``0..j-2`` pass their input through, block ``j-1`` returns the cached states. The model's
own code still computes masks, position ids and rotary tables from ``input_ids`` /
``attention_mask`` (cheap), and the embedding lookup still runs (cheap, its output is replaced).
Padded positions hold zeros instead of the frozen prefix's output for pad tokens; real positions
never attend to them (padding masks), and their labels are ignored, so logits at real positions
and the loss are those of the uncached model.

Never stale: an entry is found by its key (:mod:`fedskip.train.cache_keys`: the prefix's weights,
``j``, the tokenization and the examples' tokens). Where entries live — this process's memory
within ``activation-cache-mb``, then the run's owner-only ``activation-cache/`` folder, never a
message, checkpoint or exported model — is :mod:`fedskip.train.activation_store`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedskip.models.layers import LayerStack
from fedskip.train.activation_store import STORE, PrefixStates, RowWriter
from fedskip.train.cache_budget import (
    available_memory_bytes,
    disk_free_bytes,
    entry_bytes,
    memory_budget_bytes,
)
from fedskip.train.cache_keys import base_model_of, cache_key

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "off")
"""``activation-cache`` values: ``auto`` caches whenever the prefix below the lowest trained
block is frozen; ``off`` always runs the whole model."""

PREFIX_KEY = "prefix_hidden"
"""Batch key of the cached block inputs (float tensor ``[batch, tokens, hidden]``)."""

INDEX_KEY = "prefix_index"
"""Feature key: the example's row in its cache entry."""

Collate = Callable[[list[Any]], Mapping[str, Tensor]]


# --------------------------------------------------------------------------- which prefix
def cacheable_block(model: nn.Module, stack: LayerStack) -> int | None:
    """The lowest trained block ``j`` when everything below it is frozen and ``j >= 1``, else
    None (full fine-tuning, trainable embeddings, block 0 trained, nothing trained)."""
    lowest: int | None = None
    for name, param in base_model_of(model).named_parameters():
        if not param.requires_grad:
            continue
        block = stack.block_of(name)
        if block is None:
            if stack.is_head(name) or stack.is_final_norm(name):
                continue
            return None  # a trainable embedding or "other" parameter feeds every block
        lowest = block if lowest is None else min(lowest, block)
    return lowest if lowest is not None and lowest >= 1 else None


class _StopForward(Exception):
    """Raised by the capture hook once block ``j``'s input is known (skips blocks j..L-1)."""


def block_list(model: nn.Module, stack: LayerStack) -> nn.ModuleList:
    blocks = base_model_of(model).get_submodule(stack.blocks_prefix)
    assert isinstance(blocks, nn.ModuleList)
    return blocks


@torch.no_grad()
def compute_prefix(
    model: nn.Module,
    stack: LayerStack,
    j: int,
    features: Sequence[Mapping[str, Any]],
    collate: Collate,
    *,
    batch_size: int,
    device: torch.device | str,
    into: Path | None = None,
) -> PrefixStates:
    """Run the frozen prefix (eval mode) over ``features`` and keep the inputs of block ``j``:
    in memory, or with ``into`` (a spill path without suffix) written row by row into a
    memory-mapped ``into.npy`` and read back from it, so an entry past the memory budget is never
    held in memory whole."""
    blocks = block_list(model, stack)
    captured: list[Tensor] = []
    template: list[int] = []
    lengths = np.array([len(f["input_ids"]) for f in features], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    rows = RowWriter(int(lengths.sum()), into)

    def capture(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured.append(hidden.detach())
        raise _StopForward

    def shape_of(module: nn.Module, args: tuple, output: Any) -> None:
        template.append(len(output) if isinstance(output, tuple) else 0)

    modes = {m: m.training for m in model.modules()}
    model.eval()
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    handles = [
        blocks[j].register_forward_pre_hook(capture, with_kwargs=True),
        blocks[j - 1].register_forward_hook(shape_of),
    ]
    try:
        for begin in range(0, len(order), batch_size):
            indices = order[begin : begin + batch_size]
            raw = collate([features[i] for i in indices])
            batch = {
                k: v.to(device)
                for k, v in raw.items()
                if isinstance(v, Tensor) and k not in ("labels", PREFIX_KEY)
            }
            captured.clear()
            with contextlib.suppress(_StopForward):
                model(**batch)
            hidden = captured[0].to("cpu")
            target = rows.target(hidden)
            for row, i in enumerate(indices):
                start, n = int(offsets[i]), int(lengths[i])
                target[start : start + n] = hidden[row, :n]
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes.items():
            module.train(mode)
    entry = PrefixStates(
        j, rows.flat(), offsets, lengths, template[0] if template else 0, rows.dtype
    )
    return rows.finish(entry)


# --------------------------------------------------------------------------- replay
class _PassThrough(nn.Module):
    """Stands in for a frozen prefix block during a cached forward: returns its input hidden
    states (or, for the last prefix block, the cached states) in the block's output form."""

    def __init__(self, slot: dict[str, Any], tuple_len: int, replay: bool) -> None:
        super().__init__()
        self.slot, self.tuple_len, self.replay = slot, tuple_len, replay

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = (
            self.slot["hidden"] if self.replay else (args[0] if args else kwargs["hidden_states"])
        )
        if self.tuple_len == 0:
            return hidden
        return (hidden, *([None] * (self.tuple_len - 1)))


@dataclass
class _Replay:
    j: int
    tuple_len: int
    handles: list[Any]


def install_replay(model: nn.Module, stack: LayerStack, j: int, tuple_len: int) -> None:
    """Hooks on ``model`` (idempotent per ``j``): a forward whose kwargs carry ``prefix_hidden``
    runs blocks ``j..`` only on those states; any other forward runs the whole model."""
    current: _Replay | None = getattr(model, "_fedskip_replay", None)
    if current is not None and (current.j, current.tuple_len) == (j, tuple_len):
        return
    remove_replay(model)
    blocks = block_list(model, stack)
    slot: dict[str, Any] = {}
    stand_ins = [_PassThrough(slot, tuple_len, replay=(i == j - 1)) for i in range(j)]

    def before(module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Any:
        hidden = kwargs.pop(PREFIX_KEY, None)
        if hidden is None:
            return None
        slot["hidden"] = hidden
        slot["saved"] = [blocks[i] for i in range(j)]
        for i in range(j):
            blocks[i] = stand_ins[i]
        return args, kwargs

    def after(module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        saved = slot.pop("saved", None)
        if saved is not None:
            for i, block in enumerate(saved):
                blocks[i] = block
        slot.pop("hidden", None)

    handles = [
        model.register_forward_pre_hook(before, with_kwargs=True),
        model.register_forward_hook(after, with_kwargs=True, always_call=True),
    ]
    vars(model)["_fedskip_replay"] = _Replay(j, tuple_len, handles)  # a plain attribute


def remove_replay(model: nn.Module) -> None:
    """Remove the hooks of :func:`install_replay` (safe when none are installed)."""
    current: _Replay | None = getattr(model, "_fedskip_replay", None)
    if current is not None:
        for handle in current.handles:
            handle.remove()
        del model._fedskip_replay


def collate_with_prefix(
    features: list[dict[str, Any]], *, base: Collate, states: PrefixStates
) -> dict[str, Tensor]:
    """``base``'s batch plus ``prefix_hidden``: each example's cached states, right-padded with
    zeros to the batch's longest example."""
    batch = dict(base(features))
    width = int(batch["input_ids"].shape[1])
    hidden = torch.zeros((len(features), width, int(states.flat.shape[1])), dtype=states.dtype)
    for row, f in enumerate(features):
        rows = states.rows(int(f[INDEX_KEY]))
        hidden[row, : rows.shape[0]] = rows
    batch[PREFIX_KEY] = hidden
    return batch


# --------------------------------------------------------------------------- the public hook
@dataclass(frozen=True)
class ActivationCache:
    """What the training engine needs to use the cache (see the config keys of the same names).

    ``stack``: the model's block stack; ``tokenization``: settings that shaped the features
    (max-length, stride, tokenizer), part of the key; ``budget_mb``: this process's memory
    budget (MiB) for all its entries; ``folder``: the run's activation folder
    (:func:`fedskip.train.activation_dir.activation_dir`), where entries past the budget go."""

    stack: LayerStack
    mode: str = "auto"
    budget_mb: int = 1024
    tokenization: tuple[Any, ...] = ()
    batch_size: int = 64
    folder: Path | None = None

    def prepare(
        self,
        model: nn.Module,
        features: Sequence[Any],
        collate: Collate,
        *,
        device: torch.device | str,
    ) -> tuple[Sequence[Any], Collate]:
        """``(features, collate)`` to train or predict with: cached ones when the prefix is
        frozen (the states are computed now if no entry matches), else the inputs unchanged."""
        if self.mode == "off" or not features:
            return features, collate
        j = cacheable_block(model, self.stack)
        if j is None:
            return features, collate
        key = cache_key(model, self.stack, j, features, self.tokenization)
        budget = memory_budget_bytes(self.budget_mb, available_memory_bytes())
        entry = STORE.get(key, budget, folder=self.folder)
        if entry is not None:
            STORE.hits += 1
        else:
            entry = self._fill(model, key, j, features, collate, budget, device)
            if entry is None:
                return features, collate
        install_replay(model, self.stack, j, entry.tuple_len)
        indexed = [{**f, INDEX_KEY: i} for i, f in enumerate(features)]
        return indexed, functools.partial(collate_with_prefix, base=collate, states=entry)

    def _fill(
        self,
        model: nn.Module,
        key: str,
        j: int,
        features: Sequence[Any],
        collate: Collate,
        budget: int,
        device: torch.device | str,
    ) -> PrefixStates | None:
        """Compute ``key``'s entry: in memory when its estimate fits ``budget`` bytes, else
        straight into its spill file (None, uncached, when the disk cannot hold it either)."""
        base = base_model_of(model)
        hidden = int(getattr(getattr(base, "config", None), "hidden_size", 0) or 0)
        itemsize = next((p.element_size() for p in base.parameters()), 4)
        estimate = entry_bytes(features, hidden, itemsize)
        into = None
        if estimate > budget:
            into = STORE.spill_path(key, folder=self.folder)
            free = disk_free_bytes(into.parent)
            if estimate > free:
                log.warning(
                    "activation cache: block %d inputs of %d examples need %.1f MB, more than "
                    "the in-memory budget (%.1f MB) and the free disk in %s (%.1f MB); running "
                    "uncached",
                    *(j, len(features), estimate / 10**6, budget / 10**6, into.parent),
                    free / 10**6,
                )
                return None
            log.warning(
                "activation cache: block %d inputs of %d examples (%d tokens x hidden %d x %d "
                "bytes) = %.1f MB, over the in-memory budget of %.1f MB: written to %s.npy",
                *(j, len(features), estimate // max(1, hidden * itemsize), hidden, itemsize),
                estimate / 10**6,
                budget / 10**6,
                into,
            )
        entry = compute_prefix(
            model,
            self.stack,
            j,
            features,
            collate,
            batch_size=self.batch_size,
            device=device,
            into=into,
        )
        STORE.fills += 1
        entry = STORE.put(key, entry, budget, folder=self.folder)
        log.info(
            "activation cache: block %d inputs of %d examples, %.1f MB (process total in "
            "memory %.1f MB of %.1f MB)",
            j,
            len(features),
            entry.nbytes / 10**6,  # MB = 10^6 bytes, as fedskip prints everywhere
            STORE.memory_bytes / 10**6,
            budget / 10**6,
        )
        return entry

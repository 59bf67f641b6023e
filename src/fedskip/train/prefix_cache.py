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

Never stale: the key (:func:`cache_key`) covers the model class and name, ``j``, a hash of every
parameter and buffer the prefix depends on (anything outside blocks ``j..`` , the head and the
final norm), the tokenization settings and a fingerprint of the examples' tokens. Rotating
selection moving ``j``, an earlier round changing a lower block or another tokenizer all give a
new key, so the states are recomputed.

Privacy: the cached states are derived from the site's notes (patient data at rest, see
:mod:`fedskip.train.activation_dir`) and stay on the site: they live in this process's memory
(an LRU bounded by ``activation-cache-mb``, capped by the memory available: see
:mod:`fedskip.train.cache_budget` for the sizes at 1 B scale) and, past that budget, in the run
directory's owner-only ``activation-cache/`` folder (:data:`SPILL_DIR_ENV` when ``fedskip run`` shares it
between a node's processes, else a ``process-<pid>`` subfolder removed at exit). They are never
put in a message, a checkpoint or an exported model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fedskip.models.layers import LayerStack
from fedskip.train.activation_dir import private_file, private_folder, remove_at_exit
from fedskip.train.cache_budget import (
    available_memory_bytes,
    disk_free_bytes,
    entry_bytes,
    memory_budget_bytes,
)

log = logging.getLogger(__name__)

CACHE_MODES = ("auto", "off")
"""``activation-cache`` values: ``auto`` caches whenever the prefix below the lowest trained
block is frozen; ``off`` always runs the whole model."""

PREFIX_KEY = "prefix_hidden"
"""Batch key of the cached block inputs (float tensor ``[batch, tokens, hidden]``)."""

INDEX_KEY = "prefix_index"
"""Feature key: the example's row in its cache entry."""

SPILL_DIR_ENV = "FEDSKIP_ACTIVATION_DIR"
"""The node's shared folder for cache entries (set by ``fedskip run`` on the Simulation Engine to
``OUT/activation-cache``, removed when the run ends): every entry is written there, so the
node's other processes read it instead of recomputing it."""

Collate = Callable[[list[Any]], Mapping[str, Tensor]]


# --------------------------------------------------------------------------- which prefix
def base_model_of(model: nn.Module) -> nn.Module:
    """The Hugging Face model under Opacus (``_module``) and peft (``get_base_model``) wrappers;
    its parameter names are those of :class:`LayerStack` (LoRA adds ``lora_*`` leaves only)."""
    while True:
        inner = getattr(model, "_module", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        get_base = getattr(model, "get_base_model", None)
        if callable(get_base) and get_base() is not model:
            model = get_base()
            continue
        return model


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


def _suffix_names(stack: LayerStack, j: int) -> Callable[[str], bool]:
    """Whether a parameter or buffer name is outside the prefix (block >= j, head, final norm)."""

    def outside(name: str) -> bool:
        block = stack.block_of(name)
        if block is not None:
            return block >= j
        return stack.is_head(name) or stack.is_final_norm(name)

    return outside


# --------------------------------------------------------------------------- keys
_TENSOR_HASHES: dict[int, tuple[int, int, tuple[int, ...], str, bytes]] = {}


def _tensor_digest(tensor: Tensor) -> bytes:
    """blake2b of a tensor's bytes, memoised per tensor while its storage and version hold."""
    ident = (tensor.data_ptr(), tensor._version, tuple(tensor.shape), str(tensor.dtype))
    memo = _TENSOR_HASHES.get(id(tensor))
    if memo is not None and memo[:4] == ident:
        return memo[4]
    data = tensor.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:
        data = data.view(torch.int16)
    buffer = data.numpy().data.cast("B")  # no copy
    digest = hashlib.blake2b(buffer, digest_size=16).digest()
    if len(_TENSOR_HASHES) > 4096:
        _TENSOR_HASHES.clear()
    _TENSOR_HASHES[id(tensor)] = (*ident, digest)
    return digest


def prefix_digest(model: nn.Module, stack: LayerStack, j: int) -> str:
    """Hash of every parameter and buffer the hidden states entering block ``j`` depend on."""
    outside = _suffix_names(stack, j)
    base = base_model_of(model)
    h = hashlib.blake2b(digest_size=16)
    for kind, named in (("p", base.named_parameters()), ("b", base.named_buffers())):
        for name, tensor in named:
            if outside(name) or ".lora_" in name:
                continue
            h.update(f"{kind}:{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
            h.update(_tensor_digest(tensor))
    return h.hexdigest()


_FINGERPRINTS: OrderedDict[int, tuple[Sequence[Any], str]] = OrderedDict()


def examples_fingerprint(features: Sequence[Mapping[str, Any]]) -> str:
    """Hash of the examples' ``input_ids`` and ``attention_mask`` (memoised per list object)."""
    memo = _FINGERPRINTS.get(id(features))
    if memo is not None and memo[0] is features:
        return memo[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(str(len(features)).encode())
    for f in features:
        ids = np.asarray(f["input_ids"], dtype=np.int64)
        h.update(np.int64(len(ids)).tobytes())
        h.update(ids.tobytes())
        h.update(np.asarray(f["attention_mask"], dtype=np.int8).tobytes())
    value = h.hexdigest()
    _FINGERPRINTS[id(features)] = (features, value)
    if len(_FINGERPRINTS) > 32:
        _FINGERPRINTS.popitem(last=False)
    return value


def cache_key(
    model: nn.Module,
    stack: LayerStack,
    j: int,
    features: Sequence[Mapping[str, Any]],
    tokenization: Sequence[Any] = (),
) -> str:
    """The cache entry's key (see the module docstring for what it covers)."""
    base = base_model_of(model)
    name = getattr(getattr(base, "config", None), "_name_or_path", "")
    parts = [
        type(base).__name__,
        str(name),
        str(j),
        prefix_digest(model, stack, j),
        repr(tuple(tokenization)),
        examples_fingerprint(features),
    ]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()


# --------------------------------------------------------------------------- one entry
@dataclass
class PrefixStates:
    """The hidden states entering block ``j`` of every example, unpadded and concatenated.

    ``flat``: ``[total tokens, hidden]`` (CPU; a read-only memory map when spilled);
    ``offsets[i]``: first row of example ``i``; ``lengths[i]``: its tokens;
    ``tuple_len``: 0 when a block returns a tensor, else the length of the tuple it returns."""

    j: int
    flat: Tensor | np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    tuple_len: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return int(self.flat.shape[0] * self.flat.shape[1] * _itemsize(self.dtype))

    def rows(self, index: int) -> Tensor:
        start, n = int(self.offsets[index]), int(self.lengths[index])
        part = self.flat[start : start + n]
        if isinstance(part, np.ndarray):
            out = torch.from_numpy(np.array(part))
            return out.view(self.dtype) if self.dtype == torch.bfloat16 else out
        return part


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return torch.empty((), dtype=dtype).numpy().dtype


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
    rows = _Rows(int(lengths.sum()), into)

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
    if into is None:
        return entry
    rows.close()
    _write_meta(into, entry)
    return _read_spilled(into)


class _Rows:
    """Where :func:`compute_prefix` writes the rows: a tensor, or a memory-mapped ``.npy``
    created (owner-only) once the first batch gives the width and dtype."""

    def __init__(self, total: int, into: Path | None) -> None:
        self.total, self.into = total, into
        self.dtype = torch.float32
        self._tensor: Tensor | None = None
        self._map: np.memmap | None = None
        self._tmp: Path | None = None

    def target(self, hidden: Tensor) -> Tensor:
        if self._tensor is not None:
            return self._tensor
        self.dtype, width = hidden.dtype, int(hidden.shape[-1])
        if self.into is None:
            self._tensor = torch.empty((self.total, width), dtype=self.dtype)
            return self._tensor
        self._tmp = self.into.with_name(f"{self.into.name}.{os.getpid()}.tmp.npy")
        private_file(self._tmp).close()  # 0600; open_memmap keeps the mode
        raw = np.dtype(np.int16) if self.dtype == torch.bfloat16 else _numpy_dtype(self.dtype)
        shape = (self.total, width)
        self._map = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=raw, shape=shape)
        tensor = torch.from_numpy(self._map)
        self._tensor = tensor.view(torch.bfloat16) if self.dtype == torch.bfloat16 else tensor
        return self._tensor

    def flat(self) -> Tensor | np.ndarray:
        if self._tensor is None:
            return torch.empty((0, 0))
        return self._map if self._map is not None else self._tensor

    def close(self) -> None:
        """Flush the memory map and move it to ``into.npy`` (before the metadata marks it done)."""
        assert self.into is not None and self._map is not None and self._tmp is not None
        self._map.flush()
        self._tensor = self._map = None
        os.replace(self._tmp, self.into.with_suffix(".npy"))


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


# --------------------------------------------------------------------------- the store
class ActivationStore:
    """Cache entries of this process: an LRU in memory bounded by ``budget_bytes``; entries past
    it are written to the spill folder and read back as memory maps."""

    def __init__(self) -> None:
        self.memory: OrderedDict[str, PrefixStates] = OrderedDict()
        self.spilled: dict[str, Path] = {}
        self.folder: Path | None = None
        """The run's activation folder (``OUT/activation-cache``; see :meth:`put`)."""
        self._private_dir: Path | None = None
        self.fills = 0
        self.hits = 0

    @property
    def memory_bytes(self) -> int:
        return sum(e.nbytes for e in self.memory.values())

    def get(
        self, key: str, budget_bytes: int, *, folder: Path | None = None
    ) -> PrefixStates | None:
        """The entry of ``key``: from memory, else from disk (this process's spill folder or the
        node's shared one), read into memory when it fits the budget (``folder``: as in
        :meth:`put`)."""
        if folder is not None:
            self.folder = folder
        entry = self.memory.get(key)
        if entry is not None:
            self.memory.move_to_end(key)
            return entry
        path = self.spilled.get(key) or self._shared_path(key)
        if path is None or not path.with_suffix(".npz").exists():
            return None
        entry = _read_spilled(path)
        if entry.nbytes > budget_bytes:
            return entry  # served from the memory map
        flat = torch.from_numpy(np.array(entry.flat))
        entry.flat = flat.view(entry.dtype) if entry.dtype == torch.bfloat16 else flat
        return self.put(key, entry, budget_bytes)

    def put(
        self, key: str, entry: PrefixStates, budget_bytes: int, *, folder: Path | None = None
    ) -> PrefixStates:
        """Keep ``entry`` in memory within the budget (evicting the least recently used entries
        to disk); an entry larger than the whole budget goes to disk directly. With a shared
        spill folder (:data:`SPILL_DIR_ENV`) every entry is also written there, so the other
        processes of the node (simulation workers serving the same client) read it instead of
        recomputing it. ``folder``: the run's activation folder (``OUT/activation-cache``),
        where this process spills without a shared folder."""
        if folder is not None:
            self.folder = folder
        if entry.nbytes > budget_bytes:
            return self._spill(key, entry)
        shared = self._shared_path(key)
        if shared is not None and not shared.with_suffix(".npz").exists():
            _write_spilled(shared, entry)
        self.memory[key] = entry
        while self.memory_bytes > budget_bytes and len(self.memory) > 1:
            old_key, old = self.memory.popitem(last=False)
            self._spill(old_key, old)
        return entry

    def clear(self) -> None:
        """Drop every entry (memory and spilled files) and reset the counters."""
        self.fills = self.hits = 0
        self.memory.clear()
        for path in self.spilled.values():
            for suffix in (".npy", ".npz"):
                path.with_suffix(suffix).unlink(missing_ok=True)
        self.spilled.clear()

    # ------------------------------------------------------------------ disk
    def spill_path(self, key: str, *, folder: Path | None = None) -> Path:
        """Where ``key``'s entry goes on disk (no suffix): :func:`compute_prefix` writes an
        entry past the budget there directly, and :meth:`put` then only records it."""
        if folder is not None:
            self.folder = folder
        return self._dir() / key

    def _dir(self) -> Path:
        """Where this process spills: the node's shared folder, else its own owner-only
        ``process-<pid>`` subfolder of the run's activation folder, removed at exit (never the
        system's temporary folder)."""
        shared = os.environ.get(SPILL_DIR_ENV)
        if shared:
            return private_folder(Path(shared))
        if self.folder is None:
            raise RuntimeError("activation cache: no spill folder (pass the run's folder)")
        private = self.folder / f"process-{os.getpid()}"
        if self._private_dir != private:
            private_folder(self.folder)
            self._private_dir = private_folder(private)
            remove_at_exit(private)
        return private

    def _shared_path(self, key: str) -> Path | None:
        shared = os.environ.get(SPILL_DIR_ENV)
        if not shared:
            return None
        return private_folder(Path(shared)) / key

    def _spill(self, key: str, entry: PrefixStates) -> PrefixStates:
        path = self._dir() / key
        if not path.with_suffix(".npz").exists():
            _write_spilled(path, entry)
        self.spilled[key] = path
        log.info(
            "activation cache: %s spilled to %s (%.1f MB)", key[:8], path, entry.nbytes / 10**6
        )
        return _read_spilled(path)


def _write_spilled(path: Path, entry: PrefixStates) -> None:
    flat = (
        entry.flat if isinstance(entry.flat, Tensor) else torch.from_numpy(np.asarray(entry.flat))
    )
    raw = flat.view(torch.int16) if entry.dtype == torch.bfloat16 else flat
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with private_file(tmp.with_suffix(".npy")) as fh:
        np.save(fh, raw.numpy())
    os.replace(tmp.with_suffix(".npy"), path.with_suffix(".npy"))
    _write_meta(path, entry)


def _write_meta(path: Path, entry: PrefixStates) -> None:
    """``path.npz``: the entry's offsets, lengths and dtype, written last (marks it complete)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    meta: dict[str, Any] = {
        "j": entry.j,
        "offsets": entry.offsets,
        "lengths": entry.lengths,
        "tuple_len": entry.tuple_len,
        "dtype": str(entry.dtype).removeprefix("torch."),
    }
    with private_file(tmp.with_suffix(".npz")) as fh:
        np.savez(fh, **meta)
    os.replace(tmp.with_suffix(".npz"), path.with_suffix(".npz"))  # written last: marks complete


def _read_spilled(path: Path) -> PrefixStates:
    meta = np.load(path.with_suffix(".npz"))
    dtype = getattr(torch, str(meta["dtype"]))
    flat = np.load(path.with_suffix(".npy"), mmap_mode="r")
    return PrefixStates(
        int(meta["j"]), flat, meta["offsets"], meta["lengths"], int(meta["tuple_len"]), dtype
    )


STORE = ActivationStore()
"""The process's store (a simulation worker serving several clients keeps all their entries
within one budget)."""


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

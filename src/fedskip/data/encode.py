"""Tokenization for the two tasks: subword-aligned BIO labels (NER) and note labels (classification).

NER works per sentence. A sentence is tokenized with ``is_split_into_words=True`` (a fast
tokenizer's ``word_ids()`` maps subwords back to words); the first subword of a word carries the
word's label, the other subwords ``-100`` (ignored by the loss). A sentence longer than
``max_length`` tokens (special tokens included) becomes several sliding windows over its subwords
that overlap by ``stride`` tokens; each word is labeled in exactly one window — the one where its
first subword has the most context on both sides, i.e. overlaps are split at their middle — and
is context-only (``-100``) elsewhere, so no word counts twice in the loss and decoding is
unambiguous. Special tokens are whatever the tokenizer adds around one sequence: ``[CLS] … [SEP]``
for BERT, a lone BOS for LLaMA, nothing for some tokenizers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fedskip.data.types import ClsDocument, NerDocument
from fedskip.errors import ConfigError, DataError

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
"""Label of positions the loss ignores (``torch.nn.CrossEntropyLoss`` default)."""

_CHUNK = 512  # sentences / documents per tokenizer call (bounds memory, keeps batching fast)


@dataclass
class EncodedNer:
    """Model inputs for NER plus what is needed to map predictions back to words."""

    features: list[dict[str, list[int]]]
    """Per example: ``input_ids``, ``attention_mask``, ``labels`` (``-100`` on special tokens,
    non-first subwords and context-only positions of a window)."""
    word_ids: list[list[int | None]]
    """Per example and position: the word's index in its sentence (None for special tokens)."""
    sentence_ids: list[int]
    """Per example: index of its source sentence in ``gold``."""
    gold: list[list[str]]
    """Gold word-level BIO tags per sentence (every sentence of every document, in order)."""
    label_list: list[str]
    truncated_entities: int
    """Gold entities that no single window holds whole (0 unless an entity is longer than a window)."""
    windows: int
    """Extra examples created because sentences exceeded ``max_length`` (windows beyond the first)."""
    dropped_words: int = 0
    """Words the tokenizer turned into no token at all; they cannot be labeled and decode as ``O``."""
    sentence_docs: list[int] = field(default_factory=list)
    """Per sentence of ``gold``: index of its document in the encoded ``docs`` (so an example's
    document is ``sentence_docs[sentence_ids[i]]``; DP-SGD groups examples by note/patient)."""

    def example_documents(self) -> list[int]:
        """Per example: index of its source document in the encoded ``docs``."""
        return [self.sentence_docs[sid] for sid in self.sentence_ids]


@dataclass
class EncodedCls:
    """Model inputs for note classification."""

    features: list[dict[str, Any]]
    """Per document: ``input_ids``, ``attention_mask``, ``labels`` (class id, or a multi-hot
    ``list[float]`` over ``label_names`` when ``multi_label``)."""
    label_names: list[str]
    multi_label: bool
    truncated: int
    """Documents longer than ``max_length`` tokens; their head was kept."""

    def example_documents(self) -> list[int]:
        """Per example: index of its source document (one example per document)."""
        return list(range(len(self.features)))


# --------------------------------------------------------------------------- shared helpers
def _content_budget(tokenizer: Any, max_length: int) -> int:
    """Tokens left for text in one example once the tokenizer's special tokens are added."""
    specials = int(tokenizer.num_special_tokens_to_add(pair=False))
    budget = max_length - specials
    if budget < 1:
        raise ConfigError(
            f"config key 'max-length': {max_length} leaves no room for text next to the "
            f"tokenizer's {specials} special tokens; use at least {specials + 1}"
        )
    return budget


def _split_specials(
    ids: list[int], words: list[int | None]
) -> tuple[list[int], list[int], list[int | None], list[int]]:
    """Split one encoded sequence into (leading specials, content ids, content word ids, trailing specials)."""
    lo = 0
    while lo < len(ids) and words[lo] is None:
        lo += 1
    hi = len(ids)
    while hi > lo and words[hi - 1] is None:
        hi -= 1
    return ids[:lo], ids[lo:hi], words[lo:hi], ids[hi:]


def _tokenize(
    tokenizer: Any, inputs: list[Any], *, split_words: bool
) -> list[tuple[list[int], list[int | None]]]:
    """Token ids and word ids of each input, with special tokens and without truncation."""
    out: list[tuple[list[int], list[int | None]]] = []
    for start in range(0, len(inputs), _CHUNK):
        chunk = inputs[start : start + _CHUNK]
        enc = tokenizer(
            chunk,
            is_split_into_words=split_words,
            add_special_tokens=True,
            truncation=False,
            verbose=False,
        )
        if not hasattr(enc, "word_ids") or getattr(enc, "encodings", None) is None:
            raise ConfigError(
                "the model's tokenizer is not a fast (Rust) tokenizer; word alignment needs one"
            )
        out.extend((list(enc["input_ids"][i]), list(enc.word_ids(i))) for i in range(len(chunk)))
    return out


def _pad_id(tokenizer: Any) -> int:
    """Padding id: the tokenizer's pad token, else EOS (LLaMA has no pad token), else 0.

    Padded positions are masked out by ``attention_mask``, so the choice never changes outputs.
    """
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if isinstance(candidate, int):
            return candidate
    return 0


# --------------------------------------------------------------------------- NER
def repair_bio(tags: Sequence[str]) -> list[str]:
    """Turn an ``I-X`` that does not continue an ``X`` entity (after ``O``, at the start, or
    after another type) into ``B-X``, so seqeval's strict IOB2 mode scores it as an entity."""
    out: list[str] = []
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def entity_spans(tags: Sequence[str]) -> list[tuple[int, int]]:
    """Word spans ``(first, last)`` (inclusive) of the entities in repaired BIO tags."""
    spans: list[tuple[int, int]] = []
    for i, tag in enumerate(tags):
        if tag.startswith("B-"):
            spans.append((i, i))
        elif tag.startswith("I-") and spans:
            spans[-1] = (spans[-1][0], i)
    return spans


def _collect_sentences(
    docs: Sequence[NerDocument], label_index: dict[str, int]
) -> tuple[list[list[str]], list[list[str]], list[int]]:
    """Words and repaired gold tags of every sentence, and each sentence's document index; an
    unknown tag is a :class:`DataError`."""
    words: list[list[str]] = []
    gold: list[list[str]] = []
    owners: list[int] = []
    for di, doc in enumerate(docs):
        for si, (sent, tags) in enumerate(zip(doc.sentences, doc.bio_tags())):
            tags = repair_bio(tags)
            for tok, tag in zip(sent, tags):
                if tag not in label_index:
                    raise DataError(
                        f"document '{doc.doc_id}', sentence {si + 1}, word {tok.text!r}: label "
                        f"'{tag}' is not in the model's labels ({', '.join(label_index)})"
                    )
            words.append([tok.text for tok in sent])
            gold.append(tags)
            owners.append(di)
    return words, gold, owners


def _window_starts(content_words: list[int | None], budget: int, stride: int) -> list[int]:
    """Start positions of windows of ``budget`` subwords overlapping by at least ``stride``.

    A start is moved back to the first subword of its word when that still advances, so windows
    rarely open in the middle of a word; the last window ends at the last subword.
    """
    length = len(content_words)
    starts = [0]
    while starts[-1] + budget < length:
        nxt = min(starts[-1] + max(budget - stride, 1), length - budget)
        snapped = nxt
        while (
            snapped > 0
            and content_words[snapped] is not None
            and content_words[snapped - 1] == content_words[snapped]
        ):
            snapped -= 1
        starts.append(snapped if snapped > starts[-1] else nxt)
    return starts


def _owner(pos: int, starts: list[int], budget: int) -> int:
    """Window in which ``pos`` has the most context on its poorer side (earliest on ties)."""
    best, best_room = 0, -1
    for k, s in enumerate(starts):
        if s <= pos < s + budget:
            room = min(pos - s, s + budget - 1 - pos)
            if room > best_room:
                best, best_room = k, room
    return best


def _count_cut_entities(
    tags: list[str], content_words: list[int | None], starts: list[int], budget: int
) -> int:
    """Entities whose subwords no single window holds (or that have no subword at all)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for pos, w in enumerate(content_words):
        if w is not None:
            first.setdefault(w, pos)
            last[w] = pos
    cut = 0
    for a, b in entity_spans(tags):
        positions = [p for w in range(a, b + 1) if w in first for p in (first[w], last[w])]
        if not positions or not any(
            s <= min(positions) and max(positions) < s + budget for s in starts
        ):
            cut += 1
    return cut


def _encode_sentence(
    out: EncodedNer,
    sid: int,
    ids: list[int],
    words: list[int | None],
    label_ids: list[int],
    stride: int,
    max_length: int,
) -> None:
    """Append the example(s) of sentence ``sid`` to ``out``."""
    prefix, content, content_words, suffix = _split_specials(ids, words)
    budget = max_length - len(prefix) - len(suffix)
    starts = _window_starts(content_words, budget, stride)
    owner_of: dict[int, int] = {}  # first-subword position -> window
    seen: set[int] = set()
    for pos, w in enumerate(content_words):
        if w is not None and w not in seen:
            seen.add(w)
            owner_of[pos] = _owner(pos, starts, budget)
    out.dropped_words += len(label_ids) - len(seen)
    out.truncated_entities += _count_cut_entities(out.gold[sid], content_words, starts, budget)
    out.windows += len(starts) - 1
    for k, s in enumerate(starts):
        e = min(s + budget, len(content))
        labels = [IGNORE_INDEX] * len(prefix)
        for pos in range(s, e):
            w = content_words[pos]
            labels.append(
                label_ids[w] if w is not None and owner_of.get(pos) == k else IGNORE_INDEX
            )
        labels += [IGNORE_INDEX] * len(suffix)
        input_ids = prefix + content[s:e] + suffix
        out.features.append(
            {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}
        )
        out.word_ids.append([None] * len(prefix) + content_words[s:e] + [None] * len(suffix))
        out.sentence_ids.append(sid)


def encode_ner(
    docs: Sequence[NerDocument],
    tokenizer: Any,
    label_list: Sequence[str],
    *,
    max_length: int,
    stride: int,
) -> EncodedNer:
    """Encode every sentence of ``docs`` into examples of at most ``max_length`` tokens.

    ``label_list`` is the model's label order (``NerDataset.bio_labels()``). Empty sentences get
    no example but keep their (empty) place in ``gold``. Entities no window holds whole are
    counted in ``truncated_entities`` and logged; raise ``max-length`` to avoid them.
    """
    if stride < 0:
        raise ConfigError(f"config key 'stride': {stride} must be >= 0")
    label_index = {lab: i for i, lab in enumerate(label_list)}
    budget = _content_budget(tokenizer, max_length)
    if stride >= budget:
        raise ConfigError(
            f"config key 'stride': {stride} must be smaller than max-length minus special tokens ({budget})"
        )
    words, gold, owners = _collect_sentences(docs, label_index)
    out = EncodedNer([], [], [], gold, list(label_list), truncated_entities=0, windows=0)
    out.sentence_docs = owners
    nonempty = [i for i, w in enumerate(words) if w]
    encoded = _tokenize(tokenizer, [words[i] for i in nonempty], split_words=True)
    for sid, (ids, word_ids) in zip(nonempty, encoded):
        if all(w is None for w in word_ids):
            out.dropped_words += len(words[sid])
            out.truncated_entities += len(entity_spans(gold[sid]))
            continue
        label_ids = [label_index[t] for t in gold[sid]]
        _encode_sentence(out, sid, ids, word_ids, label_ids, stride, max_length)
    if out.truncated_entities:
        log.warning(
            "%d gold entities do not fit whole in any window of max-length=%d tokens",
            out.truncated_entities,
            max_length,
        )
    if out.dropped_words:
        log.warning("%d words produced no token and are scored as 'O'", out.dropped_words)
    return out


def decode_ner(encoded: EncodedNer, predictions: Sequence[Sequence[int]]) -> list[list[str]]:
    """Word-level BIO tags per sentence from per-position predicted label ids.

    ``predictions[i]`` holds one label id per position of example ``i`` (e.g. the argmax of the
    logits of a padded batch; extra positions are ignored). A word takes the prediction at its
    labeled position; never-labeled words get ``O``; the result is repaired with :func:`repair_bio`.
    """
    if len(predictions) != len(encoded.features):
        raise ValueError(f"{len(predictions)} prediction rows for {len(encoded.features)} examples")
    tags = [["O"] * len(g) for g in encoded.gold]
    for feat, words, sid, row in zip(
        encoded.features, encoded.word_ids, encoded.sentence_ids, predictions
    ):
        pred = row.tolist() if hasattr(row, "tolist") else row  # tensors / arrays: one conversion
        labels = feat["labels"]
        if len(pred) < len(labels):
            raise ValueError(
                f"a prediction row has {len(pred)} positions, its example {len(labels)}"
            )
        for pos, (lab, w) in enumerate(zip(labels, words)):
            if lab != IGNORE_INDEX and w is not None:
                tags[sid][w] = encoded.label_list[int(pred[pos])]
    return [repair_bio(t) for t in tags]


def _pad(features: Sequence[dict[str, Any]], keys: dict[str, int]) -> dict[str, torch.Tensor]:
    """Right-pad each ``key`` of ``features`` with its value into a LongTensor [batch, longest]."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {k: torch.full((len(features), width), v, dtype=torch.long) for k, v in keys.items()}
    for row, f in enumerate(features):
        for k in keys:
            batch[k][row, : len(f[k])] = torch.tensor(f[k], dtype=torch.long)
    return batch


def collate(features: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad NER examples: ``input_ids`` with ``pad_token_id``, ``attention_mask`` with 0,
    ``labels`` with -100. Returns LongTensors of shape [batch, longest example]."""
    return _pad(features, {"input_ids": pad_token_id, "attention_mask": 0, "labels": IGNORE_INDEX})


def ner_collator(tokenizer: Any) -> Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]]:
    """A picklable ``collate_fn`` for NER examples encoded with ``tokenizer``."""
    return functools.partial(collate, pad_token_id=_pad_id(tokenizer))


# --------------------------------------------------------------------------- classification
def _cls_target(doc: ClsDocument, index: dict[str, int], multi_label: bool) -> int | list[float]:
    """Class id (single-label) or multi-hot vector over ``index`` (multi-label)."""
    for lab in doc.labels:
        if lab not in index:
            raise DataError(
                f"document '{doc.doc_id}': label '{lab}' is not one of the model's labels ({', '.join(index)})"
            )
    if multi_label:
        hot = [0.0] * len(index)
        for lab in doc.labels:
            hot[index[lab]] = 1.0
        return hot
    if len(doc.labels) != 1:
        raise DataError(
            f"document '{doc.doc_id}': single-label classification needs exactly one label, "
            f"got {len(doc.labels)} ({', '.join(doc.labels) or 'none'})"
        )
    return index[doc.labels[0]]


TRUNCATIONS = ("head", "tail", "head-tail")
"""What :func:`encode_cls` keeps of a document longer than ``max-length``."""


def encode_cls(
    docs: Sequence[ClsDocument],
    tokenizer: Any,
    label_names: Sequence[str],
    *,
    max_length: int,
    multi_label: bool,
    truncation: str = "head",
) -> EncodedCls:
    """Encode each document's text into one example of at most ``max_length`` tokens.

    Longer documents keep, per ``truncation`` (:data:`TRUNCATIONS`), their first tokens
    (``head``), their last (``tail``: where a discharge summary lists its diagnoses) or a
    quarter of the budget from the head and the rest from the tail (``head-tail``, as Sun et
    al. 2019 found best for long texts), with the special tokens re-attached; they are counted
    in ``truncated`` and logged.
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation {truncation!r}: expected one of {', '.join(TRUNCATIONS)}")
    index = {lab: i for i, lab in enumerate(label_names)}
    targets = [_cls_target(doc, index, multi_label) for doc in docs]
    _content_budget(tokenizer, max_length)
    out = EncodedCls([], list(label_names), multi_label, truncated=0)
    for target, (ids, words) in zip(
        targets, _tokenize(tokenizer, [d.text for d in docs], split_words=False)
    ):
        prefix, content, _, suffix = _split_specials(ids, words)
        budget = max_length - len(prefix) - len(suffix)
        if len(content) > budget:
            out.truncated += 1
            content = _keep(content, budget, truncation)
        input_ids = prefix + content + suffix
        out.features.append(
            {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": target}
        )
    if out.truncated:
        log.warning(
            "%d of %d documents exceed max-length=%d tokens; kept: %s (truncation=%s)",
            out.truncated,
            len(docs),
            max_length,
            {"head": "their head", "tail": "their tail", "head-tail": "head and tail"}[truncation],
            truncation,
        )
    return out


def _keep(content: list[int], budget: int, truncation: str) -> list[int]:
    """``budget`` of the ``content`` token ids, per ``truncation``."""
    if truncation == "head":
        return content[:budget]
    if truncation == "tail":
        return content[len(content) - budget :]
    head = budget // 4
    return content[:head] + content[len(content) - (budget - head) :]


def collate_cls(features: Sequence[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad classification examples; ``labels`` becomes a LongTensor [batch] of class ids or
    a FloatTensor [batch, num_labels] of multi-hot rows."""
    batch = _pad(features, {"input_ids": pad_token_id, "attention_mask": 0})
    labels = [f["labels"] for f in features]
    dtype = torch.float32 if isinstance(labels[0], list) else torch.long
    batch["labels"] = torch.tensor(labels, dtype=dtype)
    return batch


def cls_collator(tokenizer: Any) -> Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]]:
    """A picklable ``collate_fn`` for classification examples encoded with ``tokenizer``."""
    return functools.partial(collate_cls, pad_token_id=_pad_id(tokenizer))

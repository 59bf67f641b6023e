"""Audit canaries: synthetic notes of unique random phrases with random labels.

A privacy audit (config key ``audit-canaries`` = m) makes m canaries and flips a fair coin for
each: heads, the canary is added to one client's training data; tails, it is kept out. Nothing
else about a canary differs, so how much better the final model fits the included ones than the
left-out ones measures what training leaks about one unit (see :mod:`fedskip.privacy.audit`).

Each canary is one note of its own patient (``patient_id`` unique per canary), so every privacy
unit (``dp-unit`` patient, note or — one sentence per canary — example) treats it as exactly one
unit. Its words are random letter strings, so neither the real notes nor the other canaries tell
the model its labels: only training on it does. Canaries never enter a test set.

Who knows the coin flips: the auditor. In simulation every process prepares the data from the
run's config (the sites' processes must, to train on the included canaries), so the flips follow
from ``seed``; they are never put in a Flower message, and the server's auditor writes them to
its run directory only after scoring. The membership guesses are made from the model alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedskip.data.types import ClsDocument, Entity, NerDocument, Token

CANARY_WORDS = 6
"""Random words per canary phrase (one sentence)."""
CANARY_SALT = 0xCA7A
"""Mixed into ``seed`` so the canaries' draws are independent of every other use of the seed."""
CANARY_PREFIX = "audit-canary-"
"""Start of a canary's ``doc_id``; its patient id is ``audit-patient-<i>``."""
_LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


@dataclass(frozen=True)
class Canary:
    """One canary: its document, the client whose data it joins if included, the coin flip."""

    index: int
    client: int
    included: bool
    document: NerDocument | ClsDocument


def _phrase(rng: np.random.Generator, taken: set[str]) -> list[str]:
    while True:
        words = [
            "".join(rng.choice(_LETTERS, size=int(rng.integers(5, 10))))
            for _ in range(CANARY_WORDS)
        ]
        if " ".join(words) not in taken:
            taken.add(" ".join(words))
            return words


def _ner_canary(
    rng: np.random.Generator, words: list[str], types: Sequence[str], doc_id: str
) -> NerDocument:
    """The whole phrase is one entity of a random type (the NER form of a random label)."""
    tokens, pos = [], 0
    for word in words:
        tokens.append(Token(word, pos, pos + len(word)))
        pos += len(word) + 1
    text = " ".join(words)
    kind = str(types[int(rng.integers(0, len(types)))])
    return NerDocument(doc_id, text, [tokens], [Entity(kind, ((0, len(text)),), text)])


def make_canaries(
    count: int,
    *,
    task: str,
    label_list: Sequence[str],
    client_names: Sequence[str],
    seed: int,
) -> list[Canary]:
    """``count`` canaries, spread round-robin over the clients, each included with
    probability ½ (independently). Deterministic given ``seed``. ``label_list``: the model's
    labels (NER: BIO tags; their entity types are used); a classification canary has one random
    label, multi-label or not."""
    rng = np.random.default_rng([seed, CANARY_SALT])
    types = sorted({lab[2:] for lab in label_list if lab.startswith("B-")})
    taken: set[str] = set()
    out: list[Canary] = []
    for i in range(count):
        words = _phrase(rng, taken)
        doc_id = f"{CANARY_PREFIX}{i:04d}"
        doc: NerDocument | ClsDocument
        if task == "ner":
            doc = _ner_canary(rng, words, types, doc_id)
        else:
            label = str(label_list[int(rng.integers(0, len(label_list)))])
            doc = ClsDocument(doc_id, " ".join(words), [label])
        client = i % len(client_names)
        doc.site = str(client_names[client])
        doc.patient_id = f"audit-patient-{i:04d}"
        doc.meta["source"] = "audit canary"
        out.append(Canary(i, client, bool(rng.integers(0, 2)), doc))
    return out


def insert_canaries(
    client_train: list[list[NerDocument | ClsDocument]], canaries: Sequence[Canary]
) -> None:
    """Add the included canaries to their clients' training documents (in place)."""
    for canary in canaries:
        if canary.included:
            client_train[canary.client].append(canary.document)


def is_canary(doc: NerDocument | ClsDocument) -> bool:
    """Whether ``doc`` is an audit canary (by its id)."""
    return doc.doc_id.startswith(CANARY_PREFIX)

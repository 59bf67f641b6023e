"""The in-memory form every reader produces: one for NER, one for classification.

Offsets are character offsets into ``Document.text`` (0-based, end exclusive), whatever the
on-disk format counted in (i2b2 counts whitespace tokens per line; brat counts characters).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

Span = tuple[int, int]


@dataclass(frozen=True)
class Token:
    """A word-level token: its text and character span in the document."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Entity:
    """A typed mention. ``spans`` has more than one fragment for discontinuous brat entities."""

    type: str
    spans: tuple[Span, ...]
    text: str

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]


@dataclass
class NerDocument:
    """A note with sentences of tokens and non-overlapping entities (readers resolve overlaps)."""

    doc_id: str
    text: str
    sentences: list[list[Token]]
    entities: list[Entity]
    site: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    patient_id: str | None = None
    """The patient the note is about (the DP-SGD privacy unit ``dp-unit=patient``); None when
    the data does not say."""

    def bio_tags(self) -> list[list[str]]:
        """Word-level BIO tags per sentence.

        A token belongs to an entity when its span overlaps one of the entity's fragments; the
        entity's first such token (in document order) is ``B-``, the others ``I-``.
        """
        tags = [["O"] * len(sent) for sent in self.sentences]
        flat = [
            (si, ti, tok) for si, sent in enumerate(self.sentences) for ti, tok in enumerate(sent)
        ]
        starts = [tok.start for _, _, tok in flat]
        import bisect

        for ent in sorted(self.entities, key=lambda e: e.start):
            first = True
            for s, e in ent.spans:
                i = max(bisect.bisect_right(starts, s) - 1, 0)
                while i < len(flat) and flat[i][2].start < e:
                    si, ti, tok = flat[i]
                    if tok.end > s:
                        tags[si][ti] = ("B-" if first else "I-") + ent.type
                        first = False
                    i += 1
        return tags


@dataclass
class ClsDocument:
    """A note with one label (multi-class) or a set of labels (multi-label)."""

    doc_id: str
    text: str
    labels: list[str]
    site: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    patient_id: str | None = None
    """The patient the note is about (see :attr:`NerDocument.patient_id`)."""


@dataclass
class NerDataset:
    """NER documents from one source (one site, or one dataset)."""

    documents: list[NerDocument]
    entity_types: list[str]
    source: str = ""
    dropped_overlaps: int = 0
    warnings: list[str] = field(default_factory=list)

    task = "ner"

    def entity_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.type for d in self.documents for e in d.entities).items()))

    def bio_labels(self) -> list[str]:
        """``O`` then ``B-``/``I-`` per entity type, in sorted type order (the model's label list)."""
        return ["O"] + [f"{p}-{t}" for t in sorted(self.entity_types) for p in ("B", "I")]


@dataclass
class ClsDataset:
    """Classification documents; ``multi_label`` for ICD-9 coding."""

    documents: list[ClsDocument]
    label_names: list[str]
    multi_label: bool = False
    source: str = ""
    warnings: list[str] = field(default_factory=list)

    task = "classification"

    def label_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(lab for d in self.documents for lab in d.labels).items()))


Dataset = NerDataset | ClsDataset

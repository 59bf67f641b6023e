"""Audit canaries: deterministic, unique, one privacy unit each, random labels of the schema."""

from __future__ import annotations

from fedskip.data.canaries import CANARY_WORDS, insert_canaries, is_canary, make_canaries
from fedskip.data.types import ClsDocument, NerDocument

BIO = ["O", "B-problem", "I-problem", "B-test", "I-test"]


def _make(count: int = 12, *, seed: int = 1, task: str = "ner") -> list:  # type: ignore[type-arg]
    labels = BIO if task == "ner" else ["a", "b", "c"]
    return make_canaries(
        count, task=task, label_list=labels, client_names=["x", "y", "z"], seed=seed
    )


def test_deterministic_given_the_seed_and_different_across_seeds() -> None:
    first, again, other = _make(), _make(), _make(seed=2)
    assert [c.document.text for c in first] == [c.document.text for c in again]
    assert [c.included for c in first] == [c.included for c in again]
    assert [c.document.text for c in first] != [c.document.text for c in other]


def test_each_canary_is_its_own_patient_note_and_sentence() -> None:
    canaries = _make(40)
    assert len({c.document.text for c in canaries}) == 40
    assert len({c.document.patient_id for c in canaries}) == 40
    assert [c.client for c in canaries[:4]] == [0, 1, 2, 0]
    assert [c.document.site for c in canaries[:4]] == ["x", "y", "z", "x"]
    for canary in canaries:
        doc = canary.document
        assert isinstance(doc, NerDocument) and is_canary(doc)
        assert len(doc.sentences) == 1 and len(doc.sentences[0]) == CANARY_WORDS
        (entity,) = doc.entities  # the whole phrase, one entity of a random type
        assert entity.type in {"problem", "test"} and entity.text == doc.text
        tags = doc.bio_tags()[0]
        assert tags[0].startswith("B-") and all(t.startswith("I-") for t in tags[1:])
    included = sum(c.included for c in canaries)
    assert 0 < included < 40  # coin flips, not all one way


def test_classification_canaries_have_one_label_of_the_schema() -> None:
    for canary in _make(20, task="classification"):
        assert isinstance(canary.document, ClsDocument)
        assert len(canary.document.labels) == 1 and canary.document.labels[0] in {"a", "b", "c"}


def test_insert_adds_only_the_included_ones() -> None:
    canaries = _make(9)
    train: list[list] = [[], [], []]  # type: ignore[type-arg]
    insert_canaries(train, canaries)
    added = [d.doc_id for part in train for d in part]
    assert sorted(added) == sorted(c.document.doc_id for c in canaries if c.included)
    assert all(d.site == ["x", "y", "z"][i] for i, part in enumerate(train) for d in part)

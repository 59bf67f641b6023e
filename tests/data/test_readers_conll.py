"""CoNLL/BIO reader: last-column tags, documents, I- without B-, bad lines."""

from __future__ import annotations

import pytest

from fedskip.data.conll import read_conll
from fedskip.data.types import Entity
from fedskip.errors import DataError

CONLL = (
    "-DOCSTART- -X- O O\n"
    "\n"
    "Patient NN O\n"
    "denies VB O\n"
    "chest NN B-problem\n"
    "pain NN I-problem\n"
    "\n"
    "Aspirin NN I-treatment\n"
    "daily RB O\n"
    "-DOCSTART- -X- O O\n"
    "CT NN B-test\n"
    "scan NN I-test\n"
    "MRI NN B-test\n"
)


def test_documents_text_entities_and_i_without_b(write_tree):
    ds = read_conll(write_tree({"notes.conll": CONLL}) / "notes.conll")
    first, second = ds.documents
    assert (first.doc_id, second.doc_id) == ("notes-1", "notes-2")
    assert first.text == "Patient denies chest pain\nAspirin daily"
    assert first.entities == [
        Entity("problem", ((15, 25),), "chest pain"),
        Entity("treatment", ((26, 33),), "Aspirin"),
    ]
    assert first.bio_tags() == [["O", "O", "B-problem", "I-problem"], ["B-treatment", "O"]]
    assert second.text == "CT scan MRI"
    assert second.entities == [
        Entity("test", ((0, 7),), "CT scan"),
        Entity("test", ((8, 11),), "MRI"),
    ]
    assert ds.entity_types == ["problem", "test", "treatment"]


def test_folder_of_files_single_document_named_after_file(write_tree):
    root = write_tree({"a.bio": "x\tB-T\n", "b.txt": "y O\n\nz I-U\n", "skip.md": "not data\n"})
    ds = read_conll(root)
    assert [d.doc_id for d in ds.documents] == ["a", "b"]
    assert ds.documents[1].text == "y\nz"
    assert ds.documents[1].entities == [Entity("U", ((2, 3),), "z")]


def test_i_tag_of_another_type_starts_a_new_entity(write_tree):
    ds = read_conll(write_tree({"x.conll": "a B-A\nb I-B\nc I-B\n"}))
    assert ds.documents[0].entities == [Entity("A", ((0, 1),), "a"), Entity("B", ((2, 5),), "b c")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a O\nlonely\n",
            r"x\.conll:2: expected 'TOKEN TAG' \(tag in the last column\), got 'lonely'",
        ),
        ("a O\n\nb X-foo\n", r"x\.conll:3: bad tag 'X-foo'; expected O, B-TYPE or I-TYPE"),
        ("a B-\n", r"x\.conll:1: bad tag 'B-'"),
    ],
    ids=["one-column", "bad-prefix", "empty-type"],
)
def test_malformed_lines(write_tree, text, message):
    with pytest.raises(DataError, match=message):
        read_conll(write_tree({"x.conll": text}))


def test_folder_without_conll_files(write_tree):
    with pytest.raises(DataError, match=r"no \.conll/\.bio/\.txt files found"):
        read_conll(write_tree({"a.md": "x"}))

"""i2b2 2010 concept reader: line/token offsets, blank lines, multi-line concepts, overlaps."""

from __future__ import annotations

import pytest

from fedskip.cli import main
from fedskip.data.i2b2 import read_i2b2
from fedskip.data.types import Entity
from fedskip.errors import DataError

# line 1 "Admission Date :" (0-16), line 2 blank (17), line 3 (18-39), line 4 (40-61), final ""
NOTE = "Admission Date :\n\nHe has chest pain and\nshortness of breath .\n"


def _read(write_tree, con: str, text: str = NOTE):
    return read_i2b2(write_tree({"txt/r1.txt": text, "concept/r1.con": con}))


def test_blank_lines_count_and_case_insensitive_text(write_tree):
    ds = _read(
        write_tree, 'c="admission date" 1:0 1:1||t="test"\nc="chest pain" 3:2 3:3||t="problem"\n'
    )
    doc = ds.documents[0]
    assert doc.doc_id == "r1"
    assert doc.entities == [
        Entity("test", ((0, 14),), "Admission Date"),
        Entity("problem", ((25, 35),), "chest pain"),
    ]
    assert [[t.text for t in s] for s in doc.sentences] == [
        ["Admission", "Date", ":"],
        ["He", "has", "chest", "pain", "and"],
        ["shortness", "of", "breath", "."],
    ]
    assert (doc.sentences[1][2].start, doc.sentences[1][2].end) == (25, 30)
    assert doc.bio_tags()[1] == ["O", "O", "B-problem", "I-problem", "O"]
    assert ds.entity_types == ["problem", "test"]
    assert ds.dropped_overlaps == 0 and ds.warnings == []


def test_files_side_by_side_and_ast_rel_ignored(write_tree):
    root = write_tree(
        {
            "r1.txt": NOTE,
            "r1.con": 'c="breath" 4:2 4:2||t="problem"\n',
            "r1.ast": 'c="breath" 4:2 4:2||t="problem"||a="present"\n',
            "r1.rel": "garbage that would not parse\n",
        }
    )
    ds = read_i2b2(root)
    assert ds.documents[0].entities == [Entity("problem", ((53, 59),), "breath")]


def test_concept_spanning_lines_keeps_one_fragment_per_line_and_one_sentence(write_tree):
    ds = _read(write_tree, 'c="pain and shortness of breath" 3:3 4:2||t="problem"\n')
    doc = ds.documents[0]
    assert doc.entities == [Entity("problem", ((31, 39), (40, 59)), "pain and shortness of breath")]
    assert len(doc.sentences) == 2  # lines 3 and 4 joined
    assert doc.bio_tags()[1] == [
        "O",
        "O",
        "O",
        "B-problem",
        "I-problem",
        "I-problem",
        "I-problem",
        "I-problem",
        "O",
    ]


def test_overlaps_keep_longer_then_earlier_and_are_counted(write_tree):
    text = "pain in left arm\n"  # pain 0-4, in 5-7, left 8-12, arm 13-16
    con = (
        'c="pain in" 1:0 1:1||t="problem"\n'
        'c="in left" 1:1 1:2||t="test"\n'
        'c="left arm" 1:2 1:3||t="problem"\n'
        'c="arm" 1:3 1:3||t="treatment"\n'
    )
    ds = _read(write_tree, con, text)
    assert ds.documents[0].entities == [
        Entity("problem", ((0, 7),), "pain in"),
        Entity("problem", ((8, 16),), "left arm"),
    ]
    assert ds.dropped_overlaps == 2
    assert len(ds.warnings) == 1 and "dropped 2 overlapping concepts" in ds.warnings[0]


def test_quotes_inside_concept_text_and_crlf_text(write_tree):
    ds = _read(write_tree, 'c=""fine"" 1:2 1:2||t="problem"\n', 'He said "fine" .\r\nok\r\n')
    doc = ds.documents[0]
    assert doc.text == 'He said "fine" .\nok\n'
    assert doc.entities == [Entity("problem", ((8, 14),), '"fine"')]


def test_txt_without_con_is_a_document_without_entities(write_tree):
    root = write_tree({"txt/a.txt": "one\n", "txt/b.txt": "two\n", "concept/a.con": ""})
    ds = read_i2b2(root)
    assert [d.doc_id for d in ds.documents] == ["a", "b"]
    assert ds.documents[1].entities == []
    assert ds.warnings == [
        f"{root / 'txt' / 'b.txt'}: no b.con; read as a document without entities"
    ]


def test_con_without_txt_is_an_error(write_tree):
    root = write_tree({"txt/a.txt": "one\n", "concept/a.con": "", "concept/b.con": ""})
    with pytest.raises(DataError, match=r"b\.con: no matching b\.txt"):
        read_i2b2(root)


@pytest.mark.parametrize(
    ("con", "message"),
    [
        (
            'c="chest pains" 3:2 3:3||t="problem"',
            r"r1\.con:1: concept text 'chest pains' does not match the tokens 'chest pain'",
        ),
        ('c="x" 3:9 3:9||t="problem"', r"r1\.con:1: token 3:9 is beyond line 3 \(5 tokens\)"),
        ('c="x" 9:0 9:0||t="problem"', r"r1\.con:1: line 9 is beyond the text \(5 lines\)"),
        ('c="x" 3:3 3:2||t="problem"', r"r1\.con:1: concept ends \(3:2\) before it starts \(3:3\)"),
        (
            'c="chest pain" 3:2 3:3||t="problem"\nc="x" 3:2||t="problem"',
            r"r1\.con:2: malformed concept line",
        ),
    ],
    ids=["text-mismatch", "token-beyond-line", "line-beyond-text", "reversed", "malformed"],
)
def test_bad_concept_lines(write_tree, con, message):
    with pytest.raises(DataError, match=message):
        _read(write_tree, con)


def test_concept_type_outside_problem_test_treatment_is_an_error(write_tree, capsys):
    root = write_tree(
        {"txt/r1.txt": NOTE, "concept/r1.con": 'c="chest pain" 3:2 3:3||t="problme"\n'}
    )
    assert main(["data", "inspect", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {root / 'concept' / 'r1.con'}:1: concept type 'problme' is not one "
        "of problem, test, treatment\n"
    )


def test_lone_cr_inside_a_line_separates_tokens_and_keeps_line_numbers(write_tree):
    text = "Admission Date :\n\nHe has\rchest pain and\nshortness of breath .\n"
    ds = _read(
        write_tree, 'c="chest pain" 3:2 3:3||t="problem"\nc="breath" 4:2 4:2||t="test"\n', text
    )
    doc = ds.documents[0]
    assert doc.text == NOTE  # the lone \r became a space: offsets unchanged
    assert doc.entities == [
        Entity("problem", ((25, 35),), "chest pain"),
        Entity("test", ((53, 59),), "breath"),
    ]
    assert [len(s) for s in doc.sentences] == [3, 5, 4]

"""brat standoff reader (n2c2 2018): character spans, discontinuous fragments, overlaps."""

from __future__ import annotations

import pytest

from fedskip.cli import main
from fedskip.data.brat import read_brat, sentence_starts, tokenize_words
from fedskip.data.types import Entity
from fedskip.errors import DataError

# Aspirin 0-7, 81 8-10, mg 11-13, po 14-16, daily 17-22, "." 22-23 | Hold 24-28, if 29-31,
# INR 32-35, > 36-37, 3 38-39, "." 39-40 | Resume 41-47, after 48-53, "." 53-54
TEXT = "Aspirin 81 mg po daily.\nHold if INR > 3. Resume after.\n"


def _read(write_tree, ann: str, text: str = TEXT):
    return read_brat(write_tree({"100.txt": text, "100.ann": ann}))


def test_text_bound_entities_with_other_lines_ignored(write_tree):
    ann = (
        "T1\tDrug 0 7\tAspirin\n"
        "T2\tStrength 8 13\t81 mg\n"
        "R1\tStrength-Drug Arg1:T2 Arg2:T1\n"
        "A1\tNegated T1\n"
        "E1\tDrug:T1\n"
        "#1\tAnnotatorNotes T1\tlow dose\n"
        "N1\tReference T1 RxNorm:1191\tAspirin\n"
        "\n"
        "T3\tFrequency 17 22\tdaily\n"
    )
    ds = _read(write_tree, ann)
    doc = ds.documents[0]
    assert doc.doc_id == "100"
    assert doc.entities == [
        Entity("Drug", ((0, 7),), "Aspirin"),
        Entity("Strength", ((8, 13),), "81 mg"),
        Entity("Frequency", ((17, 22),), "daily"),
    ]
    assert [[t.text for t in s] for s in doc.sentences] == [
        ["Aspirin", "81", "mg", "po", "daily", "."],
        ["Hold", "if", "INR", ">", "3", "."],
        ["Resume", "after", "."],
    ]
    assert doc.bio_tags()[0] == ["B-Drug", "B-Strength", "I-Strength", "O", "B-Frequency", "O"]
    assert ds.entity_types == ["Drug", "Frequency", "Strength"]
    assert ds.dropped_overlaps == 0 and ds.warnings == []


def test_discontinuous_entity_is_joined_by_a_space(write_tree):
    ds = _read(write_tree, "T1\tReason 24 28;36 39\tHold > 3\n")
    doc = ds.documents[0]
    assert doc.entities == [Entity("Reason", ((24, 28), (36, 39)), "Hold > 3")]
    assert doc.bio_tags()[1] == ["B-Reason", "O", "O", "I-Reason", "I-Reason", "O"]


def test_entity_across_a_line_break_keeps_its_sentence_whole(write_tree):
    ds = _read(write_tree, "T1\tReason 17 28\tdaily. Hold\n")
    doc = ds.documents[0]
    assert doc.entities == [Entity("Reason", ((17, 28),), "daily.\nHold")]
    assert [len(s) for s in doc.sentences] == [12, 3]


def test_overlaps_keep_longer_then_earlier_and_duplicates_are_removed(write_tree):
    ann = (
        "T1\tDrug 0 7\tAspirin\n"
        "T2\tStrength 8 13\t81 mg\n"
        "T3\tDosage 8 10\t81\n"
        "T4\tForm 11 16\tmg po\n"
        "T5\tDrug 0 7\tAspirin\n"
    )
    ds = _read(write_tree, ann)
    assert ds.documents[0].entities == [
        Entity("Drug", ((0, 7),), "Aspirin"),
        Entity("Strength", ((8, 13),), "81 mg"),
    ]
    assert ds.dropped_overlaps == 2
    assert [w.split(": ", 1)[1] for w in ds.warnings] == [
        "dropped 2 overlapping entities in 1 document(s) (kept the longer; ties → the earlier)",
        "removed 1 duplicate entities",
    ]


def test_entities_sharing_one_word_conflict(write_tree):
    ds = _read(write_tree, "T1\tStrength 0 2\t80\nT2\tForm 2 4\tmg\n", "80mg daily\n")
    assert ds.documents[0].entities == [Entity("Strength", ((0, 2),), "80")]
    assert ds.dropped_overlaps == 1


def test_crlf_offsets_are_rebased(write_tree):
    ds = _read(write_tree, "T1\tFrequency 20 25\tdaily\n", "Take aspirin 80 mg\r\ndaily.\r\n")
    doc = ds.documents[0]
    assert doc.text == "Take aspirin 80 mg\ndaily.\n"
    assert doc.entities == [Entity("Frequency", ((19, 24),), "daily")]


def test_txt_without_ann_warns_and_ann_without_txt_fails(write_tree):
    root = write_tree({"1.txt": "Aspirin.\n", "1.ann": "", "2.txt": "Rest.\n"})
    ds = read_brat(root)
    assert [d.doc_id for d in ds.documents] == ["1", "2"]
    assert ds.warnings == [f"{root / '2.txt'}: no 2.ann; read as a document without entities"]
    (root / "3.ann").write_text("")
    with pytest.raises(DataError, match=r"3\.ann: no matching 3\.txt"):
        read_brat(root)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "T1\tDrug 0 99\tAspirin",
            r"100\.ann:2: offset 99 is beyond the end of 100\.txt \(55 characters\)",
        ),
        (
            "T1\tDrug 0 7\tAspirun",
            r"100\.ann:2: annotation text 'Aspirun' does not match 100\.txt at 0 7: 'Aspirin'",
        ),
        ("T1 Drug 0 7 Aspirin", r"100\.ann:2: malformed brat line"),
        ("T1\tDrug 0 x\tAspirin", r"100\.ann:2: malformed offsets '0 x'"),
        ("T1\tDrug 7 7\t", r"100\.ann:2: empty or reversed span 7 7"),
    ],
    ids=[
        "offset-beyond-text",
        "text-mismatch",
        "malformed-line",
        "malformed-offsets",
        "empty-span",
    ],
)
def test_bad_ann_lines(write_tree, line, message):
    with pytest.raises(DataError, match=message):
        _read(write_tree, "#1\tAnnotatorNotes T1\tnote\n" + line + "\n")


def test_tokenizer_and_sentence_rule():
    text = "BP 120/80, e.g. stable. Next day!"
    tokens = tokenize_words(text)
    assert [t.text for t in tokens] == [
        "BP",
        "120",
        "/",
        "80",
        ",",
        "e",
        ".",
        "g",
        ".",
        "stable",
        ".",
        "Next",
        "day",
        "!",
    ]
    assert sentence_starts(text, tokens) == [11]


def test_non_ascii_digit_offset_is_a_malformed_line(write_tree, capsys):
    root = write_tree({"100.txt": TEXT, "100.ann": "T1\tDrug 0 ²\tAspirin\n"})
    assert main(["data", "inspect", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {root / '100.ann'}:1: malformed offsets '0 ²'; expected 'START END' "
        "or 'S1 E1;S2 E2'\n"
    )


def test_entity_inside_a_word_tags_the_word_and_is_named_in_a_warning(write_tree):
    ann = (
        "T1\tDrug 1 5\tspir\n"  # inside "Aspirin"
        "T2\tStrength 8 13\t81 mg\n"
        "#1\tAnnotatorNotes T1\tx\n"
        "T3\tFrequency 17 20\tdai\n"  # the start of "daily"
        "T4\tDosage 32 35;36 37\tINR >\n"
    )
    ds = _read(write_tree, ann)
    assert ds.documents[0].bio_tags()[0] == [
        "B-Drug",
        "B-Strength",
        "I-Strength",
        "O",
        "B-Frequency",
        "O",
    ]
    ann_path = ds.documents[0].meta["file"].replace(".txt", ".ann")
    assert ds.warnings == [
        f"{ds.source}: 2 entities start or end inside a word and are tagged as the whole word: "
        f"{ann_path}:1, {ann_path}:4"
    ]

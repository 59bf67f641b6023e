"""`fedskip data inspect` / `fedskip data synth`: statistics, and one clear line (exit 2) per bad input."""

from __future__ import annotations

import json
import pathlib

import pytest

from fedskip.cli import main

BRAT_TEXT = "Aspirin 81 mg po daily.\nHold if INR > 3. Resume after.\n"
BRAT_ANN = (
    "T1\tDrug 0 7\tAspirin\nT2\tStrength 8 13\t81 mg\nT3\tDosage 8 10\t81\nR1\tX Arg1:T1 Arg2:T2\n"
)
I2B2_TEXT = "Admission Date :\n\nHe has chest pain\n"
NOTES = (
    "ROW_ID,SUBJECT_ID,HADM_ID,CHARTDATE,CHARTTIME,STORETIME,CATEGORY,DESCRIPTION,CGID,ISERROR,TEXT\n"
    '1,10,100,,,,Discharge summary,Report,,,"Sepsis.\nGiven fluids."\n'
    "2,10,100,,,,Radiology,CXR,,,Clear.\n"
    "3,11,101,,,,Discharge summary,Report,,,Pneumonia.\n"
    "4,11,101,,,,Discharge summary,Report,,1,Error.\n"
)
DIAGNOSES = "ROW_ID,SUBJECT_ID,HADM_ID,SEQ_NUM,ICD9_CODE\n1,10,100,1,0389\n2,11,101,1,486\n3,11,101,2,0389\n"


def _inspect_json(capsys, *args: str) -> dict:
    assert main(["data", "inspect", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_json_brat(write_tree, capsys):
    root = write_tree({"100.txt": BRAT_TEXT, "100.ann": BRAT_ANN})
    stats = _inspect_json(capsys, str(root))
    assert {
        k: stats[k] for k in ("task", "documents", "sentences", "tokens", "max_tokens", "entities")
    } == {
        "task": "ner",
        "documents": 1,
        "sentences": 3,
        "tokens": 15,
        "max_tokens": 15,
        "entities": {"Drug": 1, "Strength": 1},
    }
    assert stats["dropped_overlaps"] == 1 and len(stats["warnings"]) == 1
    assert "sites" not in stats


def test_inspect_json_mimic_icd9(write_tree, capsys):
    root = write_tree({"NOTEEVENTS.csv": NOTES, "DIAGNOSES_ICD.csv": DIAGNOSES})
    stats = _inspect_json(capsys, str(root), "--label", "icd9", "--top-k", "2")
    assert (stats["documents"], stats["sentences"], stats["tokens"]) == (2, 3, 7)
    assert stats["labels"] == {"0389": 2, "486": 1}
    assert stats["multi_label"] is True
    category = _inspect_json(capsys, str(root / "NOTEEVENTS.csv"), "--format", "mimic")
    assert category["labels"] == {"Discharge summary": 2, "Radiology": 1}


def test_inspect_sites_breakdown_and_table(write_tree, capsys):
    root = write_tree(
        {
            "site-1/txt/a.txt": I2B2_TEXT,
            "site-1/concept/a.con": 'c="chest pain" 3:2 3:3||t="problem"\n',
            "site-2/b.txt": I2B2_TEXT,
            "site-2/b.con": 'c="admission date" 1:0 1:1||t="test"\nc="chest" 3:2 3:2||t="problem"\n',
        },
        root="hospitals",
    )
    stats = _inspect_json(capsys, str(root), "--format", "i2b2")
    assert (stats["documents"], stats["sentences"], stats["tokens"]) == (2, 4, 14)
    assert stats["entities"] == {"problem": 2, "test": 1}
    assert list(stats["sites"]) == ["site-1", "site-2"]
    assert stats["sites"]["site-2"]["entities"] == {"problem": 1, "test": 1}
    assert (stats["patients"], stats["without_patient"]) == (2, 0)  # one record = one patient
    assert stats["sites"]["site-1"]["patients"] == 1
    assert main(["data", "inspect", str(root)]) == 0
    table = capsys.readouterr().out
    for text in ("site-1", "site-2", "total", "documents", "patients", "entity problem"):
        assert text in table


def _bad_inputs(tmp: pathlib.Path) -> dict[str, tuple[list[str], str]]:
    """Case id → (inspect arguments, expected stderr line fragment) over files written to ``tmp``."""

    def put(rel: str, content: str | bytes) -> pathlib.Path:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    put("i2b2/txt/r.txt", I2B2_TEXT)
    put("i2b2/concept/r.con", 'c="chest" 3:7 3:7||t="problem"\n')
    put("mismatch/r.txt", I2B2_TEXT)
    put("mismatch/r.con", 'c="chest wall" 3:2 3:3||t="problem"\n')
    put("badcon/r.txt", I2B2_TEXT)
    put("badcon/r.con", 'c="chest" 3:2||t="problem"\n')
    put("brat/1.txt", BRAT_TEXT)
    put("brat/1.ann", "T1\tDrug 50 70\tx\n")
    put("badann/1.txt", BRAT_TEXT)
    put("badann/1.ann", "T1 Drug 0 7 Aspirin\n")
    put("bad.conll", "a O\nlonely\n")
    put("cols/NOTEEVENTS.csv", "ROW_ID,TEXT\n1,x\n")
    put("empty.jsonl", "\n")
    put("sites/site-1/d.jsonl", '{"text": "a", "label": "x"}\n')
    (tmp / "sites" / "site-2").mkdir(parents=True)
    put("latin1.jsonl", b'{"text": "caf\xe9", "label": "x"}\n')
    put("locked.jsonl", '{"text": "a", "label": "x"}\n')
    return {
        "missing-path": ([str(tmp / "nope")], "nope: no such file or folder"),
        "unreadable-path": (
            [str(tmp / "locked.jsonl")],
            "locked.jsonl: cannot read (Permission denied)",
        ),
        "unknown-format": (
            [str(tmp / "bad.conll"), "--format", "xml"],
            "unknown data format 'xml'; allowed: auto, i2b2",
        ),
        "unknown-label": (
            [str(tmp / "cols"), "--label", "ward"],
            "unknown label 'ward'; allowed: category, icd9",
        ),
        "offset-beyond-line": (
            [str(tmp / "i2b2")],
            "r.con:1: token 3:7 is beyond line 3 (4 tokens)",
        ),
        "offset-beyond-text": (
            [str(tmp / "brat")],
            "1.ann:1: offset 70 is beyond the end of 1.txt (55 characters)",
        ),
        "con-text-mismatch": (
            [str(tmp / "mismatch")],
            "r.con:1: concept text 'chest wall' does not match the tokens 'chest pain'",
        ),
        "malformed-con": ([str(tmp / "badcon")], "r.con:1: malformed concept line"),
        "malformed-ann": ([str(tmp / "badann")], "1.ann:1: malformed brat line"),
        "malformed-conll": ([str(tmp / "bad.conll")], "bad.conll:2: expected 'TOKEN TAG'"),
        "missing-columns": (
            [str(tmp / "cols")],
            "NOTEEVENTS.csv: missing required column(s) HADM_ID, CATEGORY, ISERROR",
        ),
        "empty-dataset": (
            [str(tmp / "empty.jsonl")],
            "empty.jsonl: empty dataset (no documents, format jsonl)",
        ),
        "empty-site": ([str(tmp / "sites")], "site-2: empty site folder (no dataset files)"),
        "not-utf8": (
            [str(tmp / "latin1.jsonl")],
            "latin1.jsonl: not valid UTF-8 at byte 13 (line 1, byte 0xe9)",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing-path",
        "unreadable-path",
        "unknown-format",
        "unknown-label",
        "offset-beyond-line",
        "offset-beyond-text",
        "con-text-mismatch",
        "malformed-con",
        "malformed-ann",
        "malformed-conll",
        "missing-columns",
        "empty-dataset",
        "empty-site",
        "not-utf8",
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, case):
    args, expected = _bad_inputs(tmp_path)[case]
    real_read_bytes = pathlib.Path.read_bytes

    def read_bytes(
        self: pathlib.Path,
    ) -> bytes:  # root can read a chmod-000 file; refuse like the OS would
        if self.name == "locked.jsonl":
            raise PermissionError(13, "Permission denied")
        return real_read_bytes(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    assert main(["data", "inspect", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("fedskip: error: ")
    assert expected in captured.err


def test_synth_arguments_are_validated(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--sites", "0"]) == 2
    assert "config key 'synth-sites': 0 must be >= 1" in capsys.readouterr().err
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--label-noise", "0.9"]) == 2
    assert "config key 'label-noise': 0.9 must be <= 0.5" in capsys.readouterr().err


def test_synth_writes_a_corpus_that_inspect_reads(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert (
        main(["data", "synth", "--out", str(out), "--sites", "2", "--docs", "2", "--seed", "3"])
        == 0
    )
    printed = capsys.readouterr().out
    assert f"inspect with: fedskip data inspect {out / 'ner'}" in printed
    ner = _inspect_json(capsys, str(out / "ner"))
    assert list(ner["sites"]) == ["site-1", "site-2"]
    assert ner["documents"] == sum(s["documents"] for s in ner["sites"].values()) > 0
    assert set(ner["entities"]) == {"problem", "test", "treatment"}
    cls = _inspect_json(capsys, str(out / "classification"))
    assert list(cls["sites"]) == ["site-1", "site-2"] and cls["multi_label"] is False
    assert sum(cls["labels"].values()) == cls["documents"] > 0


def test_closed_output_pipe_is_one_line_exit_2(write_tree):
    import os
    import subprocess
    import sys

    root = write_tree({"NOTEEVENTS.csv": NOTES})
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before fedskip writes (`| head -c1` that has exited)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "fedskip.cli", "data", "inspect", str(root), "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            env={**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[2] / "src")},
        )
    finally:
        os.close(write_end)
    assert done.returncode == 2
    assert done.stderr == (
        "fedskip: error: the output pipe was closed before all output was written\n"
    )


BIG = "x" * 1_000_001  # one character above fedskip.data.io.MAX_NOTE_CHARS, on one line


@pytest.mark.parametrize(
    ("files", "where", "message"),
    [
        (
            {"a.txt": BIG, "a.ann": ""},
            "a.txt",
            "a note of 1,000,001 characters; fedskip reads notes of up to 1,000,000 (split it "
            "into several notes)",
        ),
        (
            {"txt/a.txt": BIG, "concept/a.con": ""},
            "txt/a.txt",
            "a note of 1,000,001 characters; fedskip reads notes of up to 1,000,000 (split it "
            "into several notes)",
        ),
        (
            {"d.jsonl": '{"text": "' + BIG + '", "label": "x"}\n'},
            "d.jsonl:1",
            "a note of 1,000,027 characters; fedskip reads notes of up to 1,000,000 (split it "
            "into several notes)",
        ),
        (
            {"NOTEEVENTS.csv": NOTES + f"5,12,102,,,,Radiology,CXR,,,{BIG}\n"},
            "NOTEEVENTS.csv:7",
            "a field of more than 1,000,000 characters; fedskip reads notes of up to that many "
            "(split it into several notes)",
        ),
    ],
    ids=["brat", "i2b2", "jsonl", "mimic"],
)
def test_a_note_above_the_size_limit_is_refused_before_tokenizing(
    write_tree, capsys, files, where, message
):
    root = write_tree(files)
    assert main(["data", "inspect", str(root)]) == 2
    assert capsys.readouterr().err == f"fedskip: error: {root / where}: {message}\n"


def test_one_flag_names_the_data_format_everywhere(write_tree, capsys):
    """``--data-format`` (the config key's name) in ``data inspect`` and ``evaluate``, and in the
    error that asks for it; ``--format`` stays an alias."""
    from fedskip.cli import build_parser

    root = write_tree({"notes.txt": "a O\n"})
    assert main(["data", "inspect", str(root)]) == 2
    assert capsys.readouterr().err == (
        f"fedskip: error: {root}: cannot detect the dataset format in this folder; pass "
        "--data-format (config key data-format): one of i2b2, brat, mimic, conll, jsonl, hf\n"
    )
    assert _inspect_json(capsys, str(root), "--data-format", "conll")["documents"] == 1
    parser = build_parser()
    for flag in ("--data-format", "--format"):
        args = parser.parse_args(["evaluate", "--model", "m", "--data", "d", flag, "conll"])
        assert args.data_format == "conll"
        assert parser.parse_args(["data", "inspect", "p", flag, "brat"]).fmt == "brat"


def test_synth_prints_real_site_sizes_and_its_readme_regenerates_it(tmp_path, capsys, monkeypatch):
    """The per-site counts printed are the files written, and the README's regeneration
    command, pasted into a shell in another folder, writes the same bytes."""
    import shlex

    first = tmp_path / "first"
    shape = ["--notes-per-patient", "1", "--note-lines", "2"]
    argv = ["data", "synth", "--out", str(first), "--sites", "2", "--docs", "4", *shape]
    assert main([*argv, "--seed", "3"]) == 0
    assert "(2 sites: 5, 3 documents per task; seed 3)" in capsys.readouterr().out
    for site, n in (("site-1", 5), ("site-2", 3)):
        assert len(list((first / "ner" / site / "txt").glob("*.txt"))) == n
    readme = (first / "README.txt").read_text()
    assert "notes_per_patient=1 note_lines=2" in readme  # the {shape} of the parameters line
    lines = readme.splitlines()
    command = lines[lines.index("Regenerate (in this folder; or give another --out):") + 1]
    assert command == (
        "  fedskip data synth --out . --sites 2 --docs 4 --seed 3 --label-noise 0.02 "
        "--notes-per-patient 1 --note-lines 2"
    )
    words = shlex.split(command)
    assert words[0] == "fedskip"
    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.chdir(again)
    assert main(words[1:]) == 0
    written = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / p).read_bytes() == (again / p).read_bytes() for p in written)

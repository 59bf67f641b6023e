"""A Hugging Face ``datasets`` corpus (save_to_disk folders, one per site) trained on for one
federated round through the real ServerApp/ClientApp over the in-process grid (#34 item 6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value
from datasets.utils.logging import disable_progress_bar

from fedskip.config import Config
from fedskip.pipeline import prepare
from fedskip.privacy.units import resolve_unit
from tests.fl.conftest import SENTENCES

NAMES = ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment", "I-treatment"]
FEATURES = Features(
    {
        "tokens": Sequence(Value("string")),
        "ner_tags": Sequence(ClassLabel(names=NAMES)),
        "patient": Value("string"),
    }
)


def hf_sites(root: Path) -> Path:
    """Two sites of 6 one-sentence notes, 3 patients each (two notes per patient)."""
    disable_progress_bar()
    for s in range(2):
        rows = [SENTENCES[(i + s) % len(SENTENCES)] for i in range(6)]
        Dataset.from_dict(
            {
                "tokens": [tokens for tokens, _ in rows],
                "ner_tags": [[NAMES.index(t) for t in tags] for _, tags in rows],
                "patient": [f"s{s}-p{i // 2}" for i in range(6)],
            },
            features=FEATURES,
        ).save_to_disk(str(root / f"site-{s + 1}"))
    return root


def test_hf_sites_are_split_by_patient(tmp_path: Path) -> None:
    cfg = Config(data=str(hf_sites(tmp_path / "hf")), data_format="hf", test_fraction=0.3)
    prepared = prepare(cfg)
    assert prepared.client_names == ["site-1", "site-2"]
    assert prepared.label_list == ["O", *NAMES[1:]]
    for train, test in zip(prepared.client_train, prepared.client_test):
        assert len(train) == 4 and len(test) == 2
        assert not {d.patient_id for d in train} & {d.patient_id for d in test}
    assert resolve_unit("auto", prepared.train_docs) == "patient"


@pytest.mark.slow
def test_one_federated_round_on_hf_sites(
    tmp_path: Path,
    make_cfg: Callable[..., Config],
    run_local: Callable[..., tuple[dict[str, Any], Any]],
) -> None:
    cfg = make_cfg(data=str(hf_sites(tmp_path / "hf")), rounds=1, test_fraction=0.3)
    summary, grid = run_local(cfg)
    row = json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[0])
    assert (row["round"], row["status"], row["replies_ok"]) == (1, "ok", 2)
    assert summary["failed_rounds"] == []
    assert len(grid.node_ids) == 2
    assert (Path(cfg.out) / "model" / "config.json").is_file()

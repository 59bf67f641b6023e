"""The Python API (``fedskip.run`` / ``Config`` / ``evaluate`` / ``predict``): the README's example
runs as written, and ``import fedskip`` stays light."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fedskip
from fedskip.api import as_config
from fedskip.errors import ConfigError, DataError
from tests.test_centralized_cli import i2b2_files

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first Python block of the README's "Python API" section."""
    section = README.read_text("utf-8").split("## Python API", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_import_fedskip_loads_no_heavy_library() -> None:
    code = (
        "import sys, fedskip; fedskip.__version__; fedskip.Config(rounds=2); fedskip.run; "
        "print(sorted(m for m in ('torch', 'transformers', 'flwr') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "[]\n"


def test_readme_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.set_num_threads(2)
    for rel, text in {**i2b2_files("site-a", 6), **i2b2_files("site-b", 6)}.items():
        (tmp_path / "my-notes" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "my-notes" / rel).write_text(text)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    summary = namespace["summary"]
    assert isinstance(summary, fedskip.RunSummary)
    written = json.loads((tmp_path / "runs" / "notebook" / "summary.json").read_text())
    assert summary.final_metric == written["final"]["f1"]
    assert (written["method"], written["data"]["sites"]) == ("centralized", ["site-a", "site-b"])
    assert (tmp_path / "runs" / "notebook" / "report.md").is_file()  # as fedskip run leaves
    scores, found = namespace["scores"], namespace["found"]
    assert isinstance(scores, dict) and isinstance(found, dict)
    assert (scores["task"], scores["data"], found["task"]) == ("ner", "my-notes", "ner")
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2] == f"f1 {summary.final_metric}"
    assert lines[-1] == f"{scores['f1']} {found['entities']}"


def test_as_config_takes_a_config_a_mapping_or_a_file(tmp_path: Path) -> None:
    toml = tmp_path / "job.toml"
    toml.write_text('rounds = 3\nlayer-strategy = "bottom"\n')
    assert as_config(toml, rounds=5).to_run_config() == {
        **fedskip.Config().to_run_config(),
        "rounds": 5,
        "layer-strategy": "bottom",
    }
    assert as_config({"layer-strategy": "bottom", "lr": "1e-3"}) == fedskip.Config(
        layer_strategy="bottom", lr=1e-3
    )
    assert as_config(fedskip.Config(rounds=2), local_epochs=3) == fedskip.Config(
        rounds=2, local_epochs=3
    )
    assert as_config() == fedskip.Config()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"roundz": 3}, "unknown config key 'roundz'; did you mean rounds, min-rounds?"),
        ({"dp": "always"}, "config key 'dp': 'always' is not one of none, sample, client"),
    ],
    ids=["unknown-key", "bad-value"],
)
def test_run_refuses_a_bad_config_before_training(config: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        fedskip.run(config)
    assert str(error.value) == message


def test_predict_refuses_an_empty_text(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="predict: the input text is empty"):
        fedskip.predict(tmp_path, "  \n")

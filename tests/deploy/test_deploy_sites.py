"""data=sites: the coordinator holds only the label schema; each SuperNode reads its own site
(node config) — plus how a local trial lays out its sites; one case per bad input."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fedskip.config import Config
from fedskip.deploy.drive import RunDriver
from fedskip.deploy.local import LocalDeployment, Options, Site
from fedskip.deploy.processes import DeploymentError
from fedskip.deploy.sites import (
    coordinator_run_config,
    label_schema,
    local_sites,
    site_folders,
)
from fedskip.errors import ConfigError, DataError
from fedskip.federation.client import client_data_from_node_config, site_config
from fedskip.pipeline import prepare

NER_LABELS = ["O", "B-problem", "I-problem", "B-test", "I-test", "B-treatment", "I-treatment"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEDSKIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _runtime(**changes: object) -> SimpleNamespace:
    cfg = Config(data="sites", labels="problem,test,treatment", clients=2).replace(**changes)
    return SimpleNamespace(cfg=cfg, prepared=prepare(cfg))


# ---------------------------------------------------------------------------- coordinator
def test_coordinator_prepares_without_reading_data() -> None:
    prepared = prepare(Config(data="sites", labels="test,problem,treatment", clients=3))
    assert prepared.label_list == NER_LABELS
    assert prepared.multi_label is False
    assert prepared.client_names == ["client-0", "client-1", "client-2"]
    assert prepared.train_docs == [] and prepared.global_test == [] and prepared.sites == {}


def test_coordinator_classification_schema() -> None:
    cls = prepare(Config(data="sites", task="classification", labels="b,a", clients=1))
    assert (cls.label_list, cls.multi_label) == (["a", "b"], False)
    icd = prepare(Config(data="sites", task="classification", label="icd9", labels="4280,25000"))
    assert (icd.label_list, icd.multi_label) == (["25000", "4280"], True)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ("", "'labels' is required with data=sites"),
        (" , ", "'labels' is required"),
        ("a,b,a", "names a label twice"),
    ],
)
def test_coordinator_schema_errors(labels: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(Config(data="sites", labels=labels))


# ---------------------------------------------------------------------------- site hook
def test_site_reads_its_own_folder(cache: Path) -> None:
    folders = site_folders(Config(synth_docs=6), 2)
    node = {"data-path": str(folders[1]), "client-id": 1, "site-name": "st-mary"}
    data = client_data_from_node_config(_runtime(), node)
    assert (data.client_id, data.name) == (1, "st-mary")
    docs = data.train_docs + data.test_docs
    assert {d.site for d in docs} == {"site-2"}
    assert len(docs) == len(prepare(Config(data=str(folders[1]))).train_docs) + len(
        prepare(Config(data=str(folders[1]))).global_test
    )
    again = client_data_from_node_config(_runtime(), node)
    assert [d.doc_id for d in again.train_docs] == [d.doc_id for d in data.train_docs]


def test_site_labels_outside_the_schema(cache: Path) -> None:
    folder = site_folders(Config(synth_docs=6), 1)[0]
    with pytest.raises(DataError, match=r"site-1: label\(s\) treatment are not in .*'labels'"):
        client_data_from_node_config(_runtime(labels="problem,test"), {"data-path": str(folder)})


def test_icd9_codes_outside_the_schema_are_dropped(cache: Path) -> None:
    folder = site_folders(Config(task="classification", synth_docs=6), 1)[0]
    runtime = _runtime(task="classification", label="icd9", labels="42731,25000")
    node = {"data-path": str(folder), "label": "icd9"}
    data = client_data_from_node_config(runtime, node)
    docs = data.train_docs + data.test_docs
    assert docs and all(set(d.labels) <= {"42731", "25000"} and d.labels for d in docs)


def test_category_outside_the_schema(cache: Path) -> None:
    folder = site_folders(Config(task="classification", synth_docs=6), 1)[0]
    runtime = _runtime(task="classification", labels="Radiology")
    with pytest.raises(DataError, match="not in the run's config key 'labels'"):
        client_data_from_node_config(runtime, {"data-path": str(folder)})


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"data-path": "/x", "data-format": "xml"}, "node-config 'data-format': 'xml'"),
        ({"data-path": "/x", "label": "drg"}, "node-config 'label': 'drg'"),
        ({"data-path": "/x", "client-id": "one"}, "node-config 'client-id': 'one'"),
        ({"partition-id": 0}, "start the SuperNode with --node-config"),
    ],
)
def test_site_node_config_errors(node: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        client_data_from_node_config(_runtime(), node)


def test_data_path_needs_data_sites(cache: Path) -> None:
    cfg = Config(data="synth", synth_docs=6, synth_sites=2)
    runtime = SimpleNamespace(cfg=cfg, prepared=prepare(cfg))
    with pytest.raises(ConfigError, match="needs the run's data=sites"):
        client_data_from_node_config(runtime, {"data-path": "/x"})


def test_missing_site_folder() -> None:
    with pytest.raises(DataError, match="nowhere"):
        client_data_from_node_config(_runtime(), {"data-path": "/nowhere/site"})


def test_model_path_replaces_the_model() -> None:
    assert site_config(Config(), {"model-path": "/models/minilm"}).model == "/models/minilm"
    assert site_config(Config(), {}).model == "minilm"


# ---------------------------------------------------------------------------- local trial
def test_local_sites_from_the_synthetic_corpus(cache: Path) -> None:
    cfg = Config(synth_docs=6)
    folders = site_folders(cfg, 2)
    assert [f.name for f in folders] == ["site-1", "site-2"]
    assert all(f.parent.name == "ner" and f.is_absolute() for f in folders)
    assert label_schema(cfg, folders) == "problem,test,treatment"
    assert label_schema(cfg.replace(labels="x,y"), folders) == "x,y"
    sites = local_sites(cfg, folders, model_path="/m")
    assert sites[1] == Site(
        name="site-2",
        node_config={
            "data-path": str(folders[1]),
            "data-format": "auto",
            "label": "category",
            "client-id": 1,
            "site-name": "site-2",
            "model-path": "/m",
        },
    )
    assert "model-path" not in local_sites(cfg, folders)[0].node_config
    assert coordinator_run_config(cfg, sites=2, labels="a,b") == {
        "data": "sites",
        "labels": "a,b",
        "clients": 2,
        "partition": "natural",
    }


def test_local_sites_from_a_folder(tmp_path: Path) -> None:
    for name in ("b", "a", ".hidden"):
        (tmp_path / "corpus" / name).mkdir(parents=True)
    (tmp_path / "corpus" / "notes.txt").write_text("x")
    folders = site_folders(Config(data=str(tmp_path / "corpus")), 2)
    assert [f.name for f in folders] == ["a", "b"]


@pytest.mark.parametrize(
    ("data", "count", "error", "message"),
    [
        ("sites", 2, ConfigError, "data=sites means the data is already at the sites"),
        ("{tmp}/missing", 2, DataError, "one subfolder per site"),
        ("{tmp}/corpus", 3, DataError, r"2 site subfolder\(s\), but --sites 3"),
    ],
)
def test_site_folder_errors(
    tmp_path: Path, data: str, count: int, error: type, message: str
) -> None:
    for name in ("a", "b"):
        (tmp_path / "corpus" / name).mkdir(parents=True)
    with pytest.raises(error, match=message):
        site_folders(Config(data=data.format(tmp=tmp_path)), count)


# ---------------------------------------------------------------------------- deployment object
def _deployment(
    tmp_path: Path, lines: list[str] | None = None, **options: object
) -> LocalDeployment:
    echo = (lines if lines is not None else []).append
    opts = Options(echo=echo, **options)  # type: ignore[arg-type]
    return LocalDeployment(Config(), [Site("a", {})], tmp_path / "out", opts, version="0")


def test_deployment_needs_sites_and_tls_for_auth(tmp_path: Path) -> None:
    with pytest.raises(DeploymentError, match="at least one site"):
        LocalDeployment(Config(), [], tmp_path, Options(), version="0")
    with pytest.raises(DeploymentError, match="authentication needs TLS"):
        _deployment(tmp_path, tls=False, auth=True)


def test_events_are_logged_and_echoed(tmp_path: Path) -> None:
    lines: list[str] = []
    dep = _deployment(tmp_path, lines)
    dep.event("site-exited", site="a", exit_code=-9)
    row = json.loads((dep.logs / "events.jsonl").read_text())
    assert {k: v for k, v in row.items() if k != "time"} == {
        "event": "site-exited",
        "site": "a",
        "exit_code": -9,
    }
    assert lines == ["[deploy] site-exited site=a exit_code=-9"]
    assert dep.coordinator_overrides() == {"out": str((tmp_path / "out").resolve())}


def test_a_run_whose_every_round_failed_is_a_failure(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    dep.out.mkdir(parents=True)
    rows = [{"round": 1, "status": "failed"}, {"round": 2, "status": "failed"}]
    (dep.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DeploymentError, match="every round failed"):
        RunDriver(dep).check_rounds()
    assert dep.status == "failed"
    assert dep.events[-1]["event"] == "rounds-failed" and dep.events[-1]["rounds"] == [1, 2]
    rows[1]["status"] = "ok"
    (dep.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    RunDriver(dep).check_rounds()  # one good round: the run counts

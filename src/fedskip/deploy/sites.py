"""Sites of a loopback trial: one data folder per SuperNode, the label schema, the run config.

In a real deployment each hospital points its own SuperNode at its own data; the coordinator
only states the label schema (``labels``) and never names a site's data. A local trial plays
every role on one machine, so here the sites' folders come from the synthetic corpus
(``data=synth``: ``<corpus>/<task>/site-*``) or from a folder of site subfolders (``data=DIR``).
"""

from __future__ import annotations

from pathlib import Path

from fedskip.config import Config, Scalar
from fedskip.deploy.local import Site
from fedskip.errors import ConfigError, DataError


def site_folders(cfg: Config, count: int) -> list[Path]:
    """``count`` site folders: generated synthetic sites, or the first subfolders of ``data``."""
    if cfg.data == "synth":
        from fedskip.data.synth import ensure_synth

        sub = "ner" if cfg.task == "ner" else "classification"
        root = Path(ensure_synth(cfg.replace(synth_sites=count))) / sub
    elif cfg.data == "sites":
        raise ConfigError(
            "deploy local: data=sites means the data is already at the sites; set data=synth or "
            "data=DIR (a folder with one subfolder per site)"
        )
    else:
        root = Path(cfg.data).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: deploy local needs a folder with one subfolder per site")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(folders) < count:
        raise DataError(f"{root}: {len(folders)} site subfolder(s), but --sites {count}")
    return [p.resolve() for p in folders[:count]]


def label_schema(cfg: Config, folders: list[Path]) -> str:
    """The ``labels`` value: ``cfg.labels`` if set, else what a simulation over the same folders
    would use (NER entity types / class names; ICD-9: the top-k codes over all sites).

    Deriving it reads every site's data, which only a local trial can do; a real coordinator
    states the schema in its config.
    """
    if cfg.labels.strip():
        return cfg.labels
    from fedskip.pipeline import prepare

    root = folders[0].parent
    prepared = prepare(cfg.replace(data=str(root), partition="natural", labels=""))
    if prepared.task == "ner":
        return ",".join(label[2:] for label in prepared.label_list if label.startswith("B-"))
    return ",".join(prepared.label_list)


def local_sites(cfg: Config, folders: list[Path], *, model_path: str | None = None) -> list[Site]:
    """One :class:`Site` per folder; its node config names its data (and base model copy)."""
    sites = []
    for index, folder in enumerate(folders):
        node: dict[str, Scalar] = {
            "data-path": str(folder),
            "data-format": cfg.data_format,
            "label": cfg.label,
            "client-id": index,
            "site-name": folder.name,
        }
        if model_path:
            node["model-path"] = model_path
        sites.append(Site(name=folder.name, node_config=node))
    return sites


def coordinator_run_config(cfg: Config, *, sites: int, labels: str) -> dict[str, Scalar]:
    """What the coordinator's run config says differently from ``cfg``: no data path
    (``data=sites``), the label schema, one client per site."""
    return {"data": "sites", "labels": labels, "clients": sites, "partition": "natural"}

"""Run directory: what a run leaves behind, in files a person (or ``fedskip report``) can read.

```
OUT/
  config.json     the fully resolved config (kebab-case keys, = Flower run_config)
  metrics.jsonl   one JSON object per epoch (centralized/local) or per round (federated)
  summary.json    final metrics, timings, parameter and traffic counts
  tensorboard/    event files of each row's scalars (config key tracking=tensorboard)
  mlflow.db       MLflow's SQLite store, one run (tracking=mlflow; see fedskip.tracking)
  model/          save_pretrained output: weights, tokenizer, label map (config.json), and
                  fedskip.json — task, labels, selected layers and the training config
```

``model/`` loads with plain transformers (``AutoModelForTokenClassification.from_pretrained``),
no fedskip needed; :func:`load_export` is the fedskip side used by ``evaluate`` and ``predict``.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedskip.errors import ModelError

MANIFEST = "fedskip.json"
MANIFEST_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy/torch scalars → numbers, arrays → lists, Path → str,
    non-finite floats → None (``NaN`` is not JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())  # numpy arrays/scalars, torch tensors
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: Any) -> None:
    """Write atomically (temp file + rename), so a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n", "utf-8")
    os.replace(tmp, path)


class RunDir:
    """The run directory ``out`` (created with its parents)."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out)
        self.tracker: Any = None  # fedskip.tracking.Trackers, from write_config
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from fedskip.errors import ConfigError

            raise ConfigError(
                f"config key 'out': cannot create {self.path} ({exc.strerror})"
            ) from None

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    def write_config(self, cfg: Any, *, resume: bool = False) -> Path:
        """Write ``config.json`` and start a run: unless ``resume``, the metrics and summary of a
        previous run in the same folder are removed so the records never mix two runs. Opens
        the trackers of config key ``tracking`` (closed by :meth:`close`)."""
        from fedskip.tracking import open_trackers

        if not resume:
            self.metrics_path.unlink(missing_ok=True)
            self.summary_path.unlink(missing_ok=True)
        _write_json(self.config_path, cfg.to_run_config())
        self.close()
        self.tracker = open_trackers(cfg, self.path)
        return self.config_path

    def append_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one JSON object as a line of ``metrics.jsonl`` and flush it to disk; the
        trackers (if any) log its scalars."""
        plain = to_jsonable(row)
        line = json.dumps(plain, sort_keys=False)
        with self.metrics_path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.tracker is not None:
            self.tracker.log_round(plain)

    def close(self, *, ok: bool = True) -> None:
        """End the trackers' runs (``ok=False``: the run failed); idempotent."""
        if self.tracker is not None:
            tracker, self.tracker = self.tracker, None
            tracker.close(ok=ok)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.jsonl`` (empty when none were written)."""
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text("utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def write_summary(self, summary: Mapping[str, Any]) -> Path:
        _write_json(self.summary_path, summary)
        return self.summary_path

    def save_model(
        self,
        model: Any,
        tokenizer: Any,
        *,
        cfg: Any = None,
        selected_layers: Sequence[int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Export to ``model/``: weights + tokenizer + label map via ``save_pretrained`` and
        ``fedskip.json`` (task, labels, multi-label, selected blocks, training config).

        An Opacus wrapper is removed and LoRA adapters are merged into a copy, so the export is
        a plain transformers model.
        """
        plain = export_ready(model)
        target = self.model_dir
        target.mkdir(parents=True, exist_ok=True)
        from fedskip.models.loading import _quiet_transformers

        with _quiet_transformers():  # no "Writing model shards" progress bar
            plain.save_pretrained(target)
            tokenizer.save_pretrained(target)
        manifest = {
            "format": MANIFEST_VERSION,
            **describe_model(plain, cfg),
            "selected_layers": list(selected_layers) if selected_layers is not None else None,
            "config": cfg.to_run_config() if cfg is not None else None,
            **(extra or {}),
        }
        _write_json(target / MANIFEST, manifest)
        return target


def export_ready(model: Any) -> Any:
    """The plain Hugging Face model to save: unwrapped from Opacus, LoRA merged (on a copy)."""
    from fedskip.train.engine import unwrap_model

    model = unwrap_model(model)
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return model


def describe_model(model: Any, cfg: Any = None) -> dict[str, Any]:
    """Task, label list (in id order) and multi-label flag of a task model."""
    config = model.config
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    return {
        "task": cfg.task if cfg is not None else _task_of(config),
        "labels": labels,
        "multi_label": config.problem_type == "multi_label_classification",
    }


def _task_of(config: Any) -> str:
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForTokenClassification") for a in architectures):
        return "ner"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "classification"
    raise ModelError(
        f"model architectures {architectures or 'unknown'}: not a token or sequence classifier"
    )


@dataclass
class Exported:
    """An exported model loaded for inference."""

    model: Any
    tokenizer: Any
    task: str
    label_list: list[str]
    multi_label: bool
    manifest: dict[str, Any] = field(default_factory=dict)

    def setting(self, key: str, default: Any) -> Any:
        """A training config value (kebab-case key) recorded in the export, else ``default``."""
        config = self.manifest.get("config") or {}
        return config.get(key, default)


def _has_weights(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))


def load_export(path: str | Path, *, device: str = "cpu") -> Exported:
    """Load ``model/`` written by :meth:`RunDir.save_model` (or any saved token/sequence
    classifier with a fast tokenizer) in eval mode on ``device``."""
    folder = Path(path)
    if (folder / "model" / "config.json").is_file() and not _has_weights(folder):
        folder = folder / "model"  # a run directory was given
    if not (folder / "config.json").is_file():
        raise ModelError(f"{folder}: not an exported model (no config.json); pass OUT/model")
    manifest: dict[str, Any] = {}
    if (folder / MANIFEST).is_file():
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from fedskip.models.loading import _quiet_transformers, resolve_device

    try:
        with _quiet_transformers():  # no load report or progress bar on stderr
            config = AutoConfig.from_pretrained(folder)
            task = manifest.get("task") or _task_of(config)
            ner = task == "ner"
            auto = AutoModelForTokenClassification if ner else AutoModelForSequenceClassification
            model = auto.from_pretrained(folder)
            tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{folder}: cannot load the exported model ({first})") from None
    model.to(resolve_device(device)).eval()
    info = describe_model(model)
    return Exported(model, tokenizer, task, info["labels"], info["multi_label"], manifest)

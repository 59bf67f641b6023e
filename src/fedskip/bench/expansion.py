"""A suite's configurations: :func:`expand` turns a :class:`~fedskip.bench.spec.Suite` into
named :class:`~fedskip.bench.spec.BenchConfig` entries, one run directory each. A configuration
that appears on several axes (the default layer-skipping run is also "k = 2" of the layer
ablation, "natural" of the non-IID axis and "no DP" of the ε sweep) is trained once and tagged
with every group it serves.

Seeds (``Sweep.seeds``): every config of the ``Sweep.seed_groups`` is also run with each other
seed, as ``<name>-s<seed>`` (label ``variant`` = the name it replicates); reports show mean ±
std over a variant's seeds. The replicas come after every first-seed config in run order.

Candidates (``Sweep.candidates``): every config of a listed method is also trained with each
other :class:`~fedskip.bench.spec.Candidate` setting, as ``<name>-<suffix>`` (labels ``candidate``,
``candidate_for``); reports keep, per configuration and seed, the run with the best validation
score (:mod:`fedskip.bench.choice`). The paper suites train each centralized reference with
both learning-rate schedules (:data:`fedskip.bench.suites.CENTRALIZED_SCHEDULES`).
"""

from __future__ import annotations

from collections.abc import Sequence

from fedskip.bench.spec import NATURAL, BenchConfig, Suite, Sweep
from fedskip.config import Config, Scalar
from fedskip.errors import ConfigError
from fedskip.methods import LORA, METHODS


def expand(suite: Suite, base: Config, num_blocks: int) -> list[BenchConfig]:
    """Every configuration of ``suite`` (de-duplicated by name, groups merged), in run order:
    methods first, so that a suite run in pieces has its references early."""
    sweep = suite.sweep
    entries: list[BenchConfig] = []
    for task in sweep.tasks:
        methods = sweep.methods
        if task != sweep.ablation_task and sweep.other_task_methods is not None:
            methods = sweep.other_task_methods
        for method in methods:
            entries.append(_method_entry(task, method, base, num_blocks))
    if sweep.ablation_task in sweep.tasks:
        entries += _layer_entries(sweep, base, num_blocks)
        entries += _strategy_entries(sweep, base)
        entries += _noniid_entries(sweep)
        entries += _privacy_entries(sweep)
    if sweep.same_blocks:
        entries += _same_block_entries(sweep, base, num_blocks)
    for group, builder in suite.extra_groups.items():
        for entry in builder(suite, base, num_blocks):
            entry.groups = entry.groups or [group]
            entries.append(entry)
    merged = _merge([_with_defaults(sweep, e, base, num_blocks) for e in entries], base)
    merged = _with_candidates(sweep, merged)
    return merged + _seed_replicas(sweep, merged, base)


def _with_candidates(sweep: Sweep, entries: Sequence[BenchConfig]) -> list[BenchConfig]:
    """Each config of a method with ``candidates``: with the first candidate's settings under its
    own name, then once per other candidate as ``<name>-<suffix>`` (labels ``candidate`` and
    ``candidate_for``: the run it is an alternative to)."""
    out = []
    for entry in entries:
        options = sweep.candidates.get(str(entry.settings.get("method", "")), ())
        if not options:
            out.append(entry)
            continue
        for i, option in enumerate(options):
            labels: dict[str, Scalar] = {**entry.labels, "candidate": option.label}
            name = entry.name
            if i:
                name = f"{entry.name}-{option.suffix}"
                labels["candidate_for"] = entry.name
            settings = {**entry.settings, **option.settings}
            out.append(BenchConfig(name, settings, list(entry.groups), labels))
    return out


def _with_defaults(sweep: Sweep, entry: BenchConfig, base: Config, num_blocks: int) -> BenchConfig:
    """``entry`` with its task's, method's and (when it trains only some blocks) the partial
    suite settings under its own settings."""
    task = str(entry.settings.get("task", sweep.ablation_task))
    method = str(entry.settings.get("method", ""))
    layers = int(entry.settings.get("layers", base.layers))
    partial = method in ("layerskip", "centralized") and layers < num_blocks
    settings = {
        **sweep.task_settings.get(task, {}),
        **sweep.method_settings.get(method, {}),
        **(partial_settings(sweep, layers) if partial else {}),
        **entry.settings,
    }
    return BenchConfig(entry.name, settings, entry.groups, entry.labels)


def partial_settings(sweep: Sweep, k: int) -> dict[str, Scalar]:
    """The ``partial_settings`` of a run that trains ``k`` (< all) blocks, its ``lr`` scaled
    down for k > ``partial_lr_blocks`` (see :class:`Sweep`)."""
    settings = dict(sweep.partial_settings)
    lr = settings.get("lr")
    if sweep.partial_lr_blocks and k > sweep.partial_lr_blocks and isinstance(lr, float):
        settings["lr"] = float(f"{lr * sweep.partial_lr_blocks / k:.3g}")
    return settings


def _method_entry(task: str, method: str, base: Config, num_blocks: int) -> BenchConfig:
    settings: dict[str, Scalar] = {"task": task, "method": method}
    kind = METHODS[method]
    if kind.full_model_baseline:
        settings["layers"] = num_blocks
    if not kind.federated:
        settings["epochs"] = base.rounds * base.local_epochs  # same passes as a federated client
    settings["lora-rank"] = (base.lora_rank or 8) if kind.trains == LORA else 0
    labels: dict[str, Scalar] = {"partition": NATURAL.label}
    return BenchConfig(f"{task}-{method}", settings, ["methods"], labels)


def _layer_entries(sweep: Sweep, base: Config, num_blocks: int) -> list[BenchConfig]:
    task = sweep.ablation_task
    counts = sweep.layer_counts or tuple(range(1, num_blocks + 1))
    out = []
    settings: dict[str, Scalar]
    for k in counts:
        if not 1 <= k <= num_blocks:
            raise ConfigError(f"layer ablation: k={k} outside 1..{num_blocks} blocks")
        if k == base.layers:
            name, settings = f"{task}-layerskip", {"task": task, "method": "layerskip"}
        elif k == num_blocks:  # every block trained = full fine-tuning, i.e. the FedAvg run
            name, settings = f"{task}-fedavg", {"task": task, "method": "fedavg"}
        else:
            name = f"{task}-layerskip-k{k}"
            settings = {"task": task, "method": "layerskip", "layers": k}
        out.append(BenchConfig(name, {**settings, "lora-rank": 0}, ["layers"], {"k": k}))
    return out


def _strategy_entries(sweep: Sweep, base: Config) -> list[BenchConfig]:
    task = sweep.ablation_task
    out = []
    for strategy in sweep.strategies:
        same = strategy == base.layer_strategy
        name = f"{task}-layerskip" if same else f"{task}-layerskip-{strategy}"
        settings: dict[str, Scalar] = {"task": task, "method": "layerskip", "lora-rank": 0}
        if not same:
            settings["layer-strategy"] = strategy
        out.append(BenchConfig(name, settings, ["strategies"], {"strategy": strategy}))
    return out


def _noniid_entries(sweep: Sweep) -> list[BenchConfig]:
    task = sweep.ablation_task
    out = []
    for method in sweep.noniid_methods:
        for part in sweep.partitions:
            name = f"{task}-{method}" + ("" if part == NATURAL else f"-{part.label}")
            settings: dict[str, Scalar] = {"task": task, "method": method, **part.settings}
            if method != "lora":
                settings["lora-rank"] = 0
            out.append(BenchConfig(name, settings, ["noniid"], {"partition": part.label}))
    return out


def _privacy_entries(sweep: Sweep) -> list[BenchConfig]:
    """No DP (the plain run) and DP-SGD at each target ε: the privacy package's sweep settings
    (:func:`fedskip.privacy.sweep.sweep_settings`; σ is planned from the run's rounds, local
    epochs and data size to spend at most ε at the config's δ)."""
    from fedskip.privacy.sweep import sweep_settings

    task = sweep.ablation_task
    own = "-dp" if sweep.privacy_settings else ""  # its own corpus: not the methods' configs
    out = []
    for variant in sweep.privacy_methods:
        keys = sweep.privacy_variants.get(variant, {"method": variant})
        for eps in (None, *sweep.epsilons):
            base: dict[str, Scalar] = {"task": task, "method": variant, "lora-rank": 0, **keys}
            settings: dict[str, Scalar] = {
                **base,
                **sweep.privacy_settings,
                **sweep_settings(eps),
            }
            name = f"{task}-{variant}{own}" + ("" if eps is None else f"-eps{eps:g}")
            labels: dict[str, Scalar] = {"target_epsilon": eps or 0, "privacy_variant": variant}
            groups = ["privacy"]
            if eps in sweep.privacy_seed_epsilons:
                groups.append("privacy-seeds")
            out.append(BenchConfig(name, settings, groups, labels))
    return out + _client_dp_entries(sweep)


def _client_dp_entries(sweep: Sweep) -> list[BenchConfig]:
    """Client-level DP-FedAvg (a hospital's whole contribution protected) over
    ``client_dp_clients`` simulated clients, at each ε and without DP."""
    from fedskip.privacy.sweep import sweep_settings

    if sweep.client_dp_clients <= 0:
        return []
    task, out = sweep.ablation_task, []
    own = sweep.privacy_settings if sweep.client_dp_settings is None else sweep.client_dp_settings
    for method in sweep.client_dp_methods or sweep.privacy_methods:
        for eps in (None, *(sweep.client_dp_epsilons or sweep.epsilons)):
            settings: dict[str, Scalar] = {
                "task": task,
                "method": method,
                "lora-rank": 0,
                **own,
                "partition": "iid",
                "clients": sweep.client_dp_clients,
                **sweep_settings(eps, dp="client"),
            }
            name = f"{task}-{method}-cdp" + ("" if eps is None else f"-eps{eps:g}")
            labels: dict[str, Scalar] = {"target_epsilon": eps or 0, "partition": "iid"}
            out.append(BenchConfig(name, settings, ["client-dp"], labels))
    return out


def _same_block_entries(sweep: Sweep, base: Config, num_blocks: int) -> list[BenchConfig]:
    """Centralized training of the blocks each layer-skipping k trains (same layer strategy):
    every k of the layer axis on the ablation task, the default k on the other tasks, and the
    default k of each other static strategy (:func:`_same_strategy_entries`). k = all blocks is
    the centralized full fine-tuning run of the methods group."""
    counts = {task: {base.layers} for task in sweep.tasks}
    if sweep.ablation_task in counts:
        counts[sweep.ablation_task] |= set(sweep.layer_counts or range(1, num_blocks + 1))
    out = []
    for task in sweep.tasks:
        methods = sweep.methods
        if task != sweep.ablation_task and sweep.other_task_methods is not None:
            methods = sweep.other_task_methods
        if "layerskip" not in methods and task != sweep.ablation_task:
            continue
        for k in sorted(counts[task]):
            name = f"{task}-centralized" if k == num_blocks else f"{task}-centralized-k{k}"
            out.append(_same_blocks_entry(name, task, k, base))
    return out + _same_strategy_entries(sweep, base)


def _same_blocks_entry(
    name: str, task: str, k: int, base: Config, strategy: str | None = None
) -> BenchConfig:
    """A ``gaps`` run: centralized training of ``k`` blocks (chosen by ``strategy``, else the
    suite's), as many epochs as a federated client's local epochs over all rounds."""
    settings: dict[str, Scalar] = {
        "task": task,
        "method": "centralized",
        "layers": k,
        **({"layer-strategy": strategy} if strategy else {}),
        "epochs": base.rounds * base.local_epochs,
        "lora-rank": 0,
    }
    labels: dict[str, Scalar] = {"partition": NATURAL.label, "k": k}
    return BenchConfig(name, settings, ["gaps"], labels)


def _same_strategy_entries(sweep: Sweep, base: Config) -> list[BenchConfig]:
    """Centralized training of the blocks each other static layer strategy of the ablation
    task trains (``<task>-centralized-<strategy>``: bottom, interleaved; the default k). The
    strategies that choose per round or from scores (rotating, importance) have no fixed
    blocks to train centrally."""
    from fedskip.selection import get_selector

    task = sweep.ablation_task
    if task not in sweep.tasks:
        return []
    out = []
    for strategy in sweep.strategies:
        selector = get_selector(strategy)
        if strategy == base.layer_strategy or selector.dynamic or selector.needs_scores:
            continue
        name = f"{task}-centralized-{strategy}"
        out.append(_same_blocks_entry(name, task, base.layers, base, strategy))
    return out


SEED_SUFFIX = "-s{seed}"
"""A seed replica's name: ``<name>-s<seed>``."""


def _seed_replicas(sweep: Sweep, entries: Sequence[BenchConfig], base: Config) -> list[BenchConfig]:
    """Each ``seed_groups`` config again with every seed of ``sweep.seeds`` but the suite's."""
    out = []
    for seed in sweep.seeds:
        if seed == base.seed:
            continue
        for entry in entries:
            groups = [g for g in entry.groups if g in sweep.seed_groups]
            if not groups:
                continue
            suffix = SEED_SUFFIX.format(seed=seed)
            name = entry.name + suffix
            labels = {**entry.labels, "variant": entry.name}
            if "candidate_for" in labels:  # the alternative to the same seed's run
                labels["candidate_for"] = f"{labels['candidate_for']}{suffix}"
            out.append(BenchConfig(name, {**entry.settings, "seed": seed}, groups, labels))
    return out


def _merge(entries: Sequence[BenchConfig], base: Config) -> list[BenchConfig]:
    """One entry per name, groups and labels merged. Two entries under one name must resolve to
    the same config (over ``base``); anything else is a bug in a builder."""
    merged: dict[str, BenchConfig] = {}
    resolved: dict[str, dict[str, Scalar]] = {}
    for entry in entries:
        run_config = resolve(base, entry.settings).to_run_config()
        seen = merged.get(entry.name)
        if seen is None:
            merged[entry.name] = BenchConfig(
                entry.name, dict(entry.settings), list(entry.groups), dict(entry.labels)
            )
            resolved[entry.name] = run_config
            continue
        if resolved[entry.name] != run_config:
            diff = sorted(k for k in run_config if run_config[k] != resolved[entry.name].get(k))
            raise ValueError(f"bench config {entry.name!r} defined twice, differing in {diff}")
        seen.groups += [g for g in entry.groups if g not in seen.groups]
        seen.labels.update(entry.labels)
    return list(merged.values())


def resolve(base: Config, settings: dict[str, Scalar]) -> Config:
    """``base`` with a config's own settings applied (validated)."""
    return Config.from_mapping(settings, base=base)

"""What a benchmark suite is: the types the catalogue of suites (:mod:`fedskip.bench.suites`)
is written in.

A suite is one set of shared settings (model, data size, rounds, seed, ...) plus a
:class:`Sweep` — the axes the paper varies — and, for some suites, extra groups built by a
:data:`GroupBuilder` (:mod:`fedskip.bench.groups`). :func:`fedskip.bench.expansion.expand`
turns them into named :class:`BenchConfig` entries, one run directory each.

Groups (the ``groups`` of a config; the report plots and claims read them):

``methods``     centralized, local-only, FedAvg, FedProx, LoRA and layer skipping, per task
                (centralized, local-only and FedProx fine-tune every block, like FedAvg; LoRA puts
                adapters of rank ``lora-rank`` on every block)
``layers``      layer skipping with k = 1 .. all blocks (k = all is full fine-tuning = FedAvg)
``strategies``  top / bottom / interleaved / importance / rotating at the default k
``noniid``      IID, Dirichlet α and natural by-site partitions, for layer skipping and FedAvg
``privacy``     no DP and sample-level DP-SGD at target ε, for layer skipping and FedAvg
``client-dp``   (``Sweep.client_dp_clients`` > 0) client-level DP-FedAvg over that many simulated
                clients (IID partition of the privacy corpus) at each target ε, and no DP
``gaps``        (``Sweep.same_blocks``) centralized training of the same blocks as each
                layer-skipping k (``<task>-centralized-k<k>``) and each other static strategy
                (``<task>-centralized-<strategy>``): the federation gap apart from the
                capacity gap
``frontier``    (``frontier`` suite) k x LoRA rank x compression points next to the references
                (:func:`fedskip.bench.groups.frontier_configs`); (``paper`` suite) variations
                of its own runs (:func:`fedskip.bench.groups.paper_frontier_configs`)
``personalization``  (``paper`` suite) personalize none vs head and local-only on
                natural and Dirichlet α = 0.1 partitions
                (:func:`fedskip.bench.groups.personalization_configs`)

Every name is a run-directory name: ``<task>-<method>[-<variant>]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fedskip.config import Config, Scalar

METHOD_ORDER = ("centralized", "local", "fedavg", "fedprox", "lora", "layerskip")
GROUPS = (
    "methods",
    "layers",
    "strategies",
    "noniid",
    "privacy",
    "client-dp",
    "gaps",
    "frontier",
    "personalization",
)


@dataclass(frozen=True)
class Partition:
    """One point of the non-IID axis: a label for tables/plots and the config keys it sets."""

    label: str
    settings: dict[str, Scalar]


IID = Partition("iid", {"partition": "iid"})
NATURAL = Partition("natural", {"partition": "natural"})


def dirichlet(alpha: float) -> Partition:
    return Partition(f"dir{alpha:g}", {"partition": "dirichlet", "alpha": alpha})


@dataclass(frozen=True)
class Candidate:
    """One setting a run kind is tried with, chosen on validation (:mod:`fedskip.bench.choice`):
    ``label`` names it in tables, ``suffix`` in run names (``<name>-<suffix>``; the first
    candidate of a kind keeps the plain name), ``settings`` are the config keys it sets."""

    label: str
    suffix: str
    settings: dict[str, Scalar]


@dataclass(frozen=True)
class Sweep:
    """The axes of a suite. Empty tuples switch an axis off; ``layer_counts=None`` means
    every k from 1 to the model's number of blocks."""

    tasks: tuple[str, ...] = ("ner", "classification")
    methods: tuple[str, ...] = METHOD_ORDER
    layer_counts: tuple[int, ...] | None = None
    strategies: tuple[str, ...] = ("top", "bottom", "interleaved", "importance", "rotating")
    partitions: tuple[Partition, ...] = (
        IID,
        dirichlet(1.0),
        dirichlet(0.3),
        dirichlet(0.1),
        NATURAL,
    )
    noniid_methods: tuple[str, ...] = ("layerskip", "fedavg")
    epsilons: tuple[float, ...] = (8.0, 4.0, 2.0, 1.0)
    privacy_methods: tuple[str, ...] = ("layerskip", "fedavg")
    """The ``privacy`` group's variants: a method name, or a key of ``privacy_variants``."""
    privacy_variants: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys of named privacy variants (e.g. ``"lora-fa"``: LoRA with frozen A, or
    ``"layerskip-k4"``: four blocks); a variant not listed is its method with the defaults."""
    privacy_seed_epsilons: tuple[float | None, ...] = ()
    """Target ε of the ``privacy`` runs that also get the ``privacy-seeds`` group (None: the
    run without DP), so that ``seed_groups`` can replicate only those over the seeds."""
    ablation_task: str = "ner"
    """The task the layer, strategy, non-IID and privacy axes run on."""
    other_task_methods: tuple[str, ...] | None = None
    """Methods run on the tasks other than ``ablation_task`` (None: all of ``methods``)."""
    task_settings: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys per task on top of the suite's settings (data size, window length)."""
    method_settings: dict[str, dict[str, Scalar]] = field(default_factory=dict)
    """Config keys per method, e.g. LoRA's larger learning rate (adapters start at zero)."""
    partial_settings: dict[str, Scalar] = field(default_factory=dict)
    """Config keys of the runs that train only some blocks — layer skipping with k < all and
    the centralized runs of the same blocks — e.g. the larger learning rate a few blocks take.
    Federated and centralized runs of the same blocks get the same keys, so the federation gap
    compares like with like. A config's own keys (``privacy_settings`` among them) override."""
    partial_lr_blocks: int = 0
    """When > 0, a run of some blocks that trains k > this many blocks takes the partial ``lr``
    scaled by ``partial_lr_blocks / k`` (3 significant digits): the step falls with the number
    of trained blocks, toward full fine-tuning's. 0: one ``lr`` for every k."""
    privacy_settings: dict[str, Scalar] = field(default_factory=dict)
    """Config keys of every ``privacy`` / ``client-dp`` run, DP or not (a larger corpus, DP
    batch sizes); when set, those runs are named ``<task>-<method>-dp…`` (they are not the
    methods group's configs)."""
    client_dp_clients: int = 0
    """``client-dp`` group: simulated clients of client-level DP (0 = no such group)."""
    client_dp_methods: tuple[str, ...] = ()
    """Methods of the ``client-dp`` group (empty: ``privacy_methods``)."""
    client_dp_epsilons: tuple[float, ...] = ()
    """Target ε of the ``client-dp`` group (empty: ``epsilons``)."""
    client_dp_settings: dict[str, Scalar] | None = None
    """Config keys of the ``client-dp`` runs in place of ``privacy_settings`` (None: the same
    keys): client-level DP needs many clients, not many privacy units per client, so it can run
    on a smaller corpus than DP-SGD."""
    same_blocks: bool = False
    """``gaps`` group: a centralized run training the same blocks as each layer-skipping k."""
    seeds: tuple[int, ...] = ()
    """Seeds of the ``seed_groups`` configs (empty: the suite's ``seed`` only)."""
    seed_groups: tuple[str, ...] = ("methods", "layers", "gaps")
    candidates: dict[str, tuple[Candidate, ...]] = field(default_factory=dict)
    """Per method, the settings each of its configs is trained with (every seed); reports keep,
    per configuration and seed, the candidate with the best validation score
    (:func:`fedskip.bench.choice.choose_on_validation`) and list the others."""


@dataclass
class BenchConfig:
    """One training run of a suite: its run-directory name, the config keys it sets on top of
    the suite's settings, and the groups it belongs to."""

    name: str
    settings: dict[str, Scalar]
    groups: list[str] = field(default_factory=list)
    labels: dict[str, Scalar] = field(default_factory=dict)
    """Axis values for tables and plots (e.g. ``{"partition": "dir0.3"}``, ``{"target_epsilon": 8}``)."""


GroupBuilder = Callable[["Suite", Config, int], list[BenchConfig]]
"""``builder(suite, base_config, num_blocks) -> configs`` for a group beyond the sweep's axes
(e.g. the k x LoRA-rank x compression frontier). Names must follow
``<task>-<method>-<variant>``; a config without groups gets the group's name."""


@dataclass(frozen=True)
class Suite:
    """A named suite: shared settings (kebab-case config keys), the sweep, and what it is for."""

    name: str
    description: str
    settings: dict[str, Scalar]
    sweep: Sweep
    extra_groups: dict[str, GroupBuilder] = field(default_factory=dict)
    """Groups beyond the sweep's axes, by name, expanded after them in this order."""


def describe(configs: Sequence[BenchConfig]) -> list[dict[str, Any]]:
    """JSON-ready list of configs (for ``suite.json`` and ``--list``)."""
    return [
        {"name": c.name, "groups": c.groups, "settings": c.settings, "labels": c.labels}
        for c in configs
    ]

"""The RadImageNet paper as data: its protocol settings, its 24 scenarios, its eight tasks and their reported gains.

Mei et al. (Radiology: AI 2022) compared RadImageNet and ImageNet weights over 4 backbones × 3 strategies × 2
learning rates per task. Everything here is data and pure functions; the machinery that runs the comparison
(``protocol.run_grid``) and tabulates it (``report``) asks this module, as BiT's trainers ask its hyperrule.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from dataclasses import dataclass

from ..models.backbones import get_backbone
from ..training.config import TrainConfig
from ..utils.choices import did_you_mean

BACKBONE_ORDER = ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2")
STRATEGY_RATES = (("unfreeze_all", (1e-3, 1e-4)), ("freeze_all", (1e-2, 1e-3)), ("unfreeze_top10", (1e-2, 1e-3)))
PAPER_TASKS = ("thyroid", "breast", "acl", "meniscus", "pneumonia", "covid19", "sars_cov_2", "haemorrhage")


@dataclass(frozen=True)
class ProtocolConfig:
    """Settings of a grid run. ``RADIMAGENET`` holds the reference values; copy it with changes:
    ``RADIMAGENET.replace(epochs=10, batch_size=32)``.

    Attributes:
        image_size: input height and width (256).
        batch_size: 256 in the reference.
        epochs: 30 in the reference.
        optimizer, loss: "adam" and "auto" (binary cross-entropy on the two-column softmax).
        augment: "radimagenet" (or "radimagenet_ct" for CT tasks, which dropped rotation and flip).
        dropout: 0.5.
        seed: 726.
        val, test: the 75/10/15 split by patient; with folds, ``val`` is the share of each fold's
            training patients kept for validation.
        folds: None for the split, or k for k-fold cross-validation (small datasets used 5).
        early_stopping, reduce_lr: None in the reference.
        cache: "auto" (memory when the fold's resized images fit half the available memory, else a file
            per split under $RADTRANSFER_CACHE_DIR, else none), True (memory), False, or a file path prefix
            (on disk; each split of each fold gets its own file, named by its content); each fold's images
            are decoded and resized once.
        run_eagerly: train without graph tracing (only for tiny smoke-test grids).
        bootstrap: resamples for each run's AUC confidence interval.
    """

    image_size: int = 256
    batch_size: int = 256
    epochs: int = 30
    optimizer: str = "adam"
    loss: str = "auto"
    augment: str | None = "radimagenet"
    dropout: float = 0.5
    seed: int = 726
    val: float = 0.10
    test: float = 0.15
    folds: int | None = None
    early_stopping: int | None = None
    reduce_lr: int | None = None
    cache: bool | str = "auto"
    run_eagerly: bool = False
    bootstrap: int = 1000

    def replace(self, **changes) -> "ProtocolConfig":
        """A copy with some values changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            names = [f.name for f in dataclasses.fields(self)]
            first = sorted(unknown)[0]
            raise ValueError(f"Unknown protocol setting(s) {sorted(unknown)}.{did_you_mean(first, names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def train_config(self, scenario: "Scenario", seed: int, bn: str) -> TrainConfig:
        """One run's fine_tune settings: the scenario's strategy and learning rate with this protocol's
        epochs, optimizer, loss, stopping rules, batch size and augmentation. The grid reads its datasets
        with this object too, so what a run records is what it ran."""
        return TrainConfig(
            strategy=scenario.strategy,
            learning_rate=scenario.learning_rate,
            epochs=self.epochs,
            bn=bn,
            optimizer=self.optimizer,
            loss=self.loss,
            early_stopping=self.early_stopping,
            reduce_lr=self.reduce_lr,
            seed=seed,
            batch_size=self.batch_size,
            augment=self.augment,
            run_eagerly=self.run_eagerly,
        )


RADIMAGENET = ProtocolConfig()


@dataclass(frozen=True)
class Scenario:
    """One cell of the grid: a backbone, a strategy, a learning rate and, optionally, an image size.

    ``image_size`` None (the default) runs at the grid's ``ProtocolConfig.image_size``, and the scenario's ``id`` and
    ``to_dict`` are those of a scenario without one (as every grid written before sizes); a size of its own (a
    resolution grid, ``with_image_sizes``) adds ``__px<size>`` to the id and ``image_size`` to the dict.
    """

    backbone: str
    strategy: str
    learning_rate: float
    image_size: int | None = None

    def __post_init__(self):
        size = self.image_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1):
            raise ValueError(f"Expected image_size to be None or an integer ≥ 1. Received: image_size={size!r}")
        if size is not None:
            object.__setattr__(self, "image_size", int(size))

    @property
    def id(self) -> str:
        base = f"{self.backbone}__{self.strategy}__lr{self.learning_rate:g}"
        return base if self.image_size is None else f"{base}__px{self.image_size}"

    @property
    def base(self) -> "Scenario":
        """The scenario at the grid's image size: what runs of one cell at several sizes share (their seed)."""
        return Scenario(self.backbone, self.strategy, self.learning_rate)

    def to_dict(self) -> dict:
        values = {"backbone": self.backbone, "strategy": self.strategy, "learning_rate": self.learning_rate}
        return values if self.image_size is None else {**values, "image_size": self.image_size}


def with_image_sizes(scenarios, sizes) -> list[Scenario]:
    """Every scenario at every image size (a resolution grid): each scenario's runs at the sizes, in the order given.
    Runs of one scenario, source, fold and repeat at two sizes share the split and the seed (``plan.run_seed``), so
    their AUC difference is paired (``grid.resolution``).

    Args:
        scenarios: the grid's scenarios (``radimagenet_scenarios()``, or others).
        sizes: image sizes (integers ≥ 1), each once.

    Returns:
        The scenarios with ``image_size`` set, scenario by scenario.
    """
    sizes = check_image_sizes(sizes)
    return [dataclasses.replace(s, image_size=size) for s in scenarios for size in sizes]


def check_image_sizes(sizes) -> tuple:
    """``sizes`` as a tuple of integers ≥ 1, at least one, each once; else a one-line ValueError naming them."""
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ValueError(f"Expected image_sizes to be a list of integers (e.g. [128, 256]). Received: {sizes!r}")
    sizes = tuple(Scenario("", "", 0.0, size).image_size for size in sizes)  # each refused as Scenario's
    if not sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"Expected image_sizes to name at least one size, each once. Received: {list(sizes)!r}")
    return sizes


def radimagenet_scenarios(backbones=BACKBONE_ORDER) -> list[Scenario]:
    """The paper's 24 scenarios: 4 backbones × {unfreeze_all @ 1e-3, 1e-4; freeze_all @ 1e-2, 1e-3;
    unfreeze_top10 @ 1e-2, 1e-3}."""
    names = [get_backbone(b).name for b in backbones]
    return [Scenario(b, strategy, rate) for b in names for strategy, rates in STRATEGY_RATES for rate in rates]


# Mei et al., Radiology: AI 2022: RadImageNet's AUC gain over ImageNet per task (percentage points).
PAPER_IMPROVEMENTS = {
    "thyroid": 9.4,
    "breast": 4.0,
    "acl": 4.8,
    "meniscus": 4.5,
    "pneumonia": 1.9,
    "covid19": 6.1,
    "sars_cov_2": 1.7,
    "haemorrhage": 0.9,
}
_TASK_ALIASES = {
    "thyroid": "thyroid",
    "breast": "breast",
    "acl": "acl",
    "meniscus": "meniscus",
    "pneumonia": "pneumonia",
    "covid": "covid19",
    "covid19": "covid19",
    "covid_19": "covid19",
    "sars": "sars_cov_2",
    "sarscov2": "sars_cov_2",
    "sars_cov_2": "sars_cov_2",
    "hemorrhage": "haemorrhage",
    "haemorrhage": "haemorrhage",
    "ich": "haemorrhage",
}


def paper_task(task: str | None) -> str | None:
    """The paper's task a name refers to, matched word by word (e.g. "ACL-MRI" → "acl",
    "covid19_xray" → "covid19"); None when no word, or more than one task, matches
    ("lung_nodule_zurich" → None)."""
    if not task:
        return None
    words = [w for w in re.split(r"[^a-z0-9]+", str(task).lower()) if w]
    found = set()
    for alias, name in _TASK_ALIASES.items():
        parts = alias.split("_")
        for i in range(len(words) - len(parts) + 1):
            if words[i : i + len(parts)] == parts:
                found.add(name)
    return found.pop() if len(found) == 1 else None

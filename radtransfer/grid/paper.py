"""The RadImageNet paper as data: its protocol settings, its 24 scenarios, its eight tasks and their reported gains.

Mei et al. (Radiology: AI 2022) compared RadImageNet and ImageNet weights over 4 backbones × 3 strategies × 2
learning rates per task. Everything here is data and pure functions; the machinery that runs the comparison
(``protocol.run_grid``) and tabulates it (``report``) asks this module, as BiT's trainers ask its hyperrule.
"""

from __future__ import annotations

import dataclasses
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
    """One cell of the grid: a backbone, a strategy and a learning rate."""

    backbone: str
    strategy: str
    learning_rate: float

    @property
    def id(self) -> str:
        return f"{self.backbone}__{self.strategy}__lr{self.learning_rate:g}"

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "strategy": self.strategy, "learning_rate": self.learning_rate}


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

"""A grid's options, checked once: ``GridOptions`` (``run_grid``) and ``CurveOptions`` (``learning_curve``).

Each field's metadata is its command-line flag (``radtransfer grid`` and ``curve``): the flag, its help, its type,
choices and the command's default where it differs, so the commands' options are generated from these fields,
as ``train``'s are from ``TrainConfig``'s.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

from ..models.backbones import get_backbone, list_backbones
from ..utils.choices import check_choice, did_you_mean
from .arms import arm_name
from .curve import DEFAULT_FRACTIONS, check_fractions
from .paper import PAPER_TASKS, STRATEGY_RATES, check_image_sizes
from .plan import check_repeats, resolve_shard

EXECUTORS = ("sequential", "ray")  # the executors' names (grid.executors imports them from here)
RAY_OPTIONS = ("address", "gpus_per_run", "cpus_per_run")  # the RayExecutor's, for executor="ray"


def _flag(flag: str, help: str, type=str, choices=None, cli_default=dataclasses.MISSING, **argparse_keywords) -> dict:
    """A field's command-line flag, as metadata (read by radtransfer.cli to build ``grid``'s and ``curve``'s
    options); ``argparse_keywords`` (nargs, metavar, action) go to ``add_argument`` as they are."""
    return {
        "flag": flag,
        "help": help,
        "type": type,
        "choices": choices,
        "cli_default": cli_default,
        **argparse_keywords,
    }


def _check_count(name: str, value, smallest: int, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < smallest:
        raise ValueError(
            f"{name}= must be {'None or ' if allow_none else ''}an integer ≥ {smallest}. Received: {name}={value!r}"
        )
    return int(value)


def _check_number(name: str, value, allow_zero: bool = False):
    """None, or a finite number > 0 (≥ 0 with ``allow_zero``); else a one-line ValueError naming it."""
    if value is None:
        return None
    bound = "≥ 0" if allow_zero else "> 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise ValueError(f"{name}= must be None or a number {bound}. Received: {name}={value!r}")
    return value


@dataclass(frozen=True)
class _SharedOptions:
    """The options every grid shares (see ``GridOptions``)."""

    sources: tuple = field(
        default=("radimagenet", "imagenet"),
        metadata=_flag(
            "--sources",
            "the weight sources to compare; SOURCE@faithful or SOURCE@corrected feeds that source the reference's or "
            "its own preprocessing, as an arm of its own",
            cli_default=["radimagenet", "imagenet"],
            nargs="+",
        ),
    )
    folds: int | None = field(
        default=None,
        metadata=_flag("--folds", "k-fold cross-validation instead of the 75/10/15 split", type=int),
    )
    repeats: int = field(
        default=1,
        metadata=_flag(
            "--repeats",
            "runs per source, scenario and fold (default 1), each with its own seed on the fold's split; the "
            "sources share each repeat's seed, so they stay paired. Rerun with a larger R to add repeats",
            type=int,
            metavar="R",
        ),
    )
    shard: str | None = field(
        default=None,
        metadata=_flag(
            "--shard",
            "k/n: run a disjoint share of the runs; auto: this SLURM array task's or "
            "Kubernetes Indexed Job pod's share",
        ),
    )
    shard_count: int | None = field(
        default=None,
        metadata=_flag("--shard-count", "with --shard auto on Kubernetes: the Job's completions", type=int),
    )
    executor: object = field(
        default="sequential",
        metadata=_flag(
            "--executor",
            "sequential (default): one run after another here; ray: each run a Ray task, one per GPU "
            "(needs radtransfer[ray])",
            choices=EXECUTORS,
        ),
    )
    address: str | None = field(
        default=None,
        metadata=_flag(
            "--address",
            "with --executor ray: the cluster (auto, head:6379 or ray://head:10001); "
            "default $RAY_ADDRESS, else Ray started on this machine",
        ),
    )
    gpus_per_run: float | None = field(
        default=None,
        metadata=_flag("--gpus-per-run", "with --executor ray (default 1 where there are GPUs)", type=float),
    )
    cpus_per_run: float | None = field(
        default=None,
        metadata=_flag("--cpus-per-run", "with --executor ray (default: CPUs per GPU, or a whole node)", type=float),
    )
    faithful: bool = field(
        default=False,
        metadata=_flag(
            "--faithful", "reproduce the reference's preprocessing, resizing, BatchNorm", action="store_true"
        ),
    )
    weights_dir: object = field(
        default=None, metadata=_flag("--weights-dir", "a folder searched first for weight files")
    )
    task: str | None = field(
        default=None,
        metadata=_flag("--task", "task name stored with the records, for the report (default: the out folder's name)"),
    )
    on_bad: str = "raise"  # the command's --on-bad, one of DATA's options
    audit: str = "warn"  # the command's --strict (strict) and --no-audit (off)
    verbose: int = 1
    log: object = field(default=None, compare=False)

    def __post_init__(self):
        if isinstance(self.sources, str) or not hasattr(self.sources, "__iter__"):
            raise ValueError(f"sources= must be a list of weight sources. Received: sources={self.sources!r}")
        object.__setattr__(self, "sources", tuple(dict.fromkeys(arm_name(s) for s in self.sources)))
        if not self.sources:
            raise ValueError("sources= must name at least one weight source. Received: sources=()")
        object.__setattr__(self, "folds", _check_count("folds", self.folds, 0, allow_none=True))
        object.__setattr__(self, "repeats", check_repeats(self.repeats))
        resolve_shard(self.shard, self.shard_count)
        if self.executor is None:
            object.__setattr__(self, "executor", "sequential")
        if not (hasattr(self.executor, "run") and hasattr(self.executor, "parallelism")):  # else a name
            check_choice("executor", self.executor, EXECUTORS, what="or a RayExecutor")
        if self.executor != "ray" and any(getattr(self, name) is not None for name in RAY_OPTIONS):
            raise ValueError("address=, gpus_per_run= and cpus_per_run= need executor='ray'.")
        _check_number("gpus_per_run", self.gpus_per_run, allow_zero=True)
        _check_number("cpus_per_run", self.cpus_per_run, allow_zero=True)
        if not isinstance(self.faithful, bool):
            raise ValueError(f"faithful= must be True or False. Received: faithful={self.faithful!r}")
        if self.task is not None and not isinstance(self.task, str):
            raise ValueError(f"task= must be a name or None. Received: task={self.task!r}")
        check_choice("on_bad", self.on_bad, ("raise", "skip"))
        check_choice("audit", self.audit, ("warn", "strict", "off"))
        if not isinstance(self.verbose, bool):  # verbose=True and False are 1 and 0
            _check_count("verbose", self.verbose, 0)

    @classmethod
    def build(cls, options=None, keywords=None, where: str = "run_grid"):
        """The options of a call: ``options`` (an instance, or None for the defaults) with ``keywords`` over it;
        a keyword that is not a field is refused in one line naming it."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(keywords or ()) - set(names))
        if unknown:
            raise TypeError(
                f"{where}() got an unexpected keyword argument {unknown[0]!r}.{did_you_mean(unknown[0], names)}"
            )
        if options is None:
            return cls(**(keywords or {}))
        if not isinstance(options, cls):
            raise TypeError(f"{where}() expects options to be a {cls.__name__}. Received: {type(options).__name__}")
        return dataclasses.replace(options, **keywords) if keywords else options

    def shared(self) -> dict:
        """The options every grid shares, by name (a curve's grids take them)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(_SharedOptions)}


@dataclass(frozen=True)
class GridOptions(_SharedOptions):
    """The options of ``run_grid``, checked once, each refused in one line. See ``run_grid`` for their meaning.

    ``run_grid(image_set, out_dir, GridOptions(folds=5, repeats=3))`` and ``run_grid(image_set, out_dir, folds=5,
    repeats=3)`` are the same call.
    """

    paper_task: str | None = field(
        default="auto",
        metadata=_flag(
            "--paper-task",
            "the paper's task to compare with (thyroid, breast, acl, meniscus, pneumonia, covid19, "
            "sars_cov_2, haemorrhage), 'none', or 'auto' (a word of the task name; default)",
        ),
    )
    train_fraction: float = 1.0
    image_sizes: tuple | None = field(
        default=None,
        metadata=_flag(
            "--image-sizes",
            "run every scenario at each of these input sizes (e.g. 128 256), paired within each source: same "
            "split and seed at every size (default: --image-size only)",
            type=int,
            nargs="+",
            metavar="PX",
        ),
    )

    def __post_init__(self):
        super().__post_init__()
        if self.image_sizes is not None:
            object.__setattr__(self, "image_sizes", check_image_sizes(self.image_sizes))
        if self.paper_task == "none":
            object.__setattr__(self, "paper_task", None)
        check_choice("paper_task", self.paper_task, (*PAPER_TASKS, None, "auto"))
        fraction = self.train_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ValueError(f"Expected 0 < train_fraction ≤ 1. Received: train_fraction={fraction!r}")


@dataclass(frozen=True)
class CurveOptions(_SharedOptions):
    """The options of ``learning_curve``, checked once. See ``learning_curve`` for their meaning."""

    sources: tuple = field(
        default=("radimagenet", "imagenet", None),
        metadata=_flag(
            "--sources",
            "weight sources; none: random initialisation (full training)",
            cli_default=["radimagenet", "imagenet", "none"],
            nargs="+",
        ),
    )
    fractions: tuple = field(
        default=DEFAULT_FRACTIONS,
        metadata=_flag(
            "--fractions",
            "shares of the training patients, increasing, each in (0, 1]; val and test stay whole",
            type=float,
            nargs="+",
        ),
    )
    backbone: str = field(
        default="resnet50", metadata=_flag("--backbone", f"the network ({', '.join(list_backbones())})")
    )
    strategy: str = field(
        default="unfreeze_all",
        metadata=_flag(
            "--strategy",
            "the pretrained sources' strategy (random initialisation always trains every layer)",
            choices=("unfreeze_all", "unfreeze_top10", "freeze_all"),
        ),
    )
    learning_rate: float | None = field(
        default=None, metadata=_flag("--learning-rate", "default: the paper's first rate for the strategy", type=float)
    )

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "fractions", check_fractions(self.fractions))
        get_backbone(self.backbone)
        check_choice("strategy", self.strategy, tuple(dict(STRATEGY_RATES)))
        _check_number("learning_rate", self.learning_rate)

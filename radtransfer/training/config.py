"""TrainConfig: the settings of one fine-tuning run, validated once, with a fingerprint of those that
define what the run computes (so a run folder can tell a resume from a different run)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

from ..backend import check_distribute
from ..data.adapters import IMAGE_SET_AUGMENT, IMAGE_SET_BATCH_SIZE, UNKNOWN
from ..data.augment import PRESETS, get_augment
from ..utils.choices import check_choice, did_you_mean
from .runtime import PRECISIONS, resolve_precision
from .strategies import BN_MODES, canonical_strategy

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "nadam": "Nadam"}

# Settings that change what a run computes. Execution details (XLA, eager mode, distribution,
# determinism, verbosity) do not change the run's definition and may differ between a run and its resume.
DEFINING = (
    "strategy",
    "bn",
    "learning_rate",
    "epochs",
    "optimizer",
    "loss",
    "early_stopping",
    "reduce_lr",
    "class_weight",
    "precision",
    "seed",
    "batch_size",
    "augment",
    "bn_momentum",
)


def _check_learning_rate(learning_rate) -> float:
    if (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, (int, float))
        or not math.isfinite(learning_rate)
        or learning_rate <= 0
    ):
        raise ValueError(f"Expected a learning rate > 0 (e.g. 1e-3). Received: learning_rate={learning_rate!r}")
    return float(learning_rate)


def _check_patience(name, value):
    if value is None or value is False:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected {name}=None or a patience of at least 1 epoch. Received: {name}={value!r}")
    return value


def _flag(flag: str, help: str, type=str, choices=None, cli_default=dataclasses.MISSING) -> dict:
    """A field's command-line flag, as metadata (read by radtransfer.cli to build ``train``'s options)."""
    return {"flag": flag, "help": help, "type": type, "choices": choices, "cli_default": cli_default}


def _is_optimizer(value) -> bool:
    import keras

    return isinstance(value, keras.optimizers.Optimizer)


def _name_of(value):
    if isinstance(value, str) or value is None:
        return value
    return getattr(value, "name", None) or type(value).__name__


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a ``fine_tune`` call, validated. See ``fine_tune`` for their meaning.

    ``batch_size`` and ``augment`` say how ImageSets (and arrays) are read: None and "auto" mean 32 images and
    the "radimagenet" augmentation. A dataset from ``make_dataset`` brings its own; ``fine_tune`` records the
    values that ran (``resolve_data``) and refuses given values that contradict the dataset.
    """

    # Each field's metadata is its command-line flag (``radtransfer train``): the flag, its help, its choices, and,
    # for the fields the library leaves to the caller, the command's own default (the paper's seed, and a strategy
    # and learning rate that fine-tune the whole network).
    strategy: str = field(
        metadata=_flag(
            "--strategy",
            "freeze_all, unfreeze_top10, unfreeze_top:N, unfreeze_all, unfreeze_blocks:K, llrd:D (every layer, "
            "block k from the top at lr × D^k), linear_probe (the head on cached, unaugmented features) or lp_ft "
            "(linear probe, then every layer)",
            cli_default="unfreeze_all",
        )
    )
    learning_rate: float = field(metadata=_flag("--lr", "the optimizer's learning rate", type=float, cli_default=1e-4))
    epochs: int = field(default=30, metadata=_flag("--epochs", "epochs to train", type=int))
    bn: str = field(
        default="protocol",
        metadata=_flag(
            "--bn", "BatchNorm: protocol (follows the strategy's flags, as the reference) or frozen", choices=BN_MODES
        ),
    )
    optimizer: object = field(default="adam", metadata=_flag("--optimizer", "the optimizer", choices=tuple(OPTIMIZERS)))
    loss: object = "auto"
    early_stopping: int | None = field(
        default=None, metadata=_flag("--early-stopping", "patience in epochs on val_loss", type=int)
    )
    reduce_lr: int | None = field(
        default=None, metadata=_flag("--reduce-lr", "patience in epochs before the learning rate is cut ×0.1", type=int)
    )
    class_weight: object = field(
        default=None,
        metadata=_flag("--class-weight", "none or balanced (inverse class frequencies)", choices=(None, "balanced")),
    )
    jit_compile: object = field(
        default="auto", metadata=_flag("--jit-compile", "XLA: auto (on GPU), on or off", choices=("auto", True, False))
    )
    precision: str = field(
        default="auto", metadata=_flag("--precision", "auto: mixed precision on capable GPUs", choices=PRECISIONS)
    )
    distribute: object = field(
        default=None,
        metadata=_flag(
            "--distribute", "none, mirrored (local GPUs) or multiworker", choices=(None, "mirrored", "multiworker")
        ),
    )
    seed: int | None = field(
        default=None,
        metadata=_flag("--seed", "the base seed of the split and of every random stream", type=int, cli_default=726),
    )
    deterministic: bool = field(
        default=False, metadata=_flag("--deterministic", "TensorFlow op determinism (turns XLA off)")
    )
    batch_size: int | None = field(
        default=None, metadata=_flag("--batch-size", "images per batch", type=int, cli_default=IMAGE_SET_BATCH_SIZE)
    )
    augment: object = field(
        default="auto",
        metadata=_flag("--augment", "training augmentation (auto: radimagenet)", choices=("auto", None, *PRESETS)),
    )
    bn_momentum: float | None = field(
        default=None,
        metadata=_flag("--bn-momentum", "momentum of every BatchNorm layer's moving statistics", type=float),
    )
    run_eagerly: bool = field(default=False, metadata=_flag("--run-eagerly", "no graph tracing (tiny smoke tests)"))

    def __post_init__(self):
        object.__setattr__(self, "strategy", canonical_strategy(self.strategy))
        object.__setattr__(self, "learning_rate", _check_learning_rate(self.learning_rate))
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"Expected epochs ≥ 1. Received: epochs={self.epochs!r}")
        check_choice("bn", self.bn, BN_MODES)
        if isinstance(self.optimizer, str) or not _is_optimizer(self.optimizer):  # names checked without Keras
            key = check_choice(
                "optimizer", str(self.optimizer).lower(), tuple(OPTIMIZERS), what="or a keras.optimizers.Optimizer"
            )
            object.__setattr__(self, "optimizer", key)
        object.__setattr__(self, "early_stopping", _check_patience("early_stopping", self.early_stopping))
        object.__setattr__(self, "reduce_lr", _check_patience("reduce_lr", self.reduce_lr))
        check_choice("jit_compile", self.jit_compile, ("auto", True, False))
        resolve_precision(self.precision, capability=(0, 0))  # validates the name only
        object.__setattr__(self, "precision", str(self.precision).lower())
        if self.distribute is not None:  # None needs no backend (and no Keras) to be valid
            check_distribute(self.distribute)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"Expected seed=None or an integer. Received: seed={self.seed!r}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1
        ):
            raise ValueError(f"Expected a positive integer batch_size. Received: batch_size={self.batch_size!r}")
        if self.augment not in ("auto", UNKNOWN):
            get_augment(self.augment)  # validates a name, dict or Augment
        if self.strategy == "linear_probe" and self.augment not in ("auto", None, UNKNOWN):
            raise ValueError(
                "strategy='linear_probe' trains the head on the backbone's features computed once, without "
                f"augmentation; leave augment out (or pass augment=None). Received: augment={self.augment!r}"
            )
        if self.bn_momentum is not None and not (
            isinstance(self.bn_momentum, (int, float)) and 0 < self.bn_momentum < 1
        ):
            raise ValueError(f"Expected 0 < bn_momentum < 1. Received: bn_momentum={self.bn_momentum!r}")
        if not (self.class_weight is None or self.class_weight == "balanced" or isinstance(self.class_weight, dict)):
            raise ValueError(
                "Expected class_weight=None, 'balanced' or a dict {class index: weight}. "
                f"Received: class_weight={self.class_weight!r}"
            )

    @classmethod
    def from_settings(cls, config: "TrainConfig | None" = None, **settings) -> "TrainConfig":
        """``config`` with ``settings`` changed, or a new config of ``settings`` (fine_tune's keywords)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(f"Unknown fine_tune setting(s) {unknown}.{did_you_mean(unknown[0], names)}")
        if config is not None:
            if not isinstance(config, cls):
                raise TypeError(f"Expected config=TrainConfig(...). Received: config of type {type(config).__name__}")
            return config.replace(**settings) if settings else config
        missing = [name for name in ("strategy", "learning_rate") if name not in settings]
        if missing:
            raise TypeError(f"fine_tune needs {' and '.join(f'{m}=' for m in missing)} (or config=TrainConfig(...)).")
        return cls(**settings)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def for_image_sets(self) -> "TrainConfig":
        """The settings with the ImageSet defaults filled in (the batch size and augmentation that will run)."""
        return self.replace(
            batch_size=self.batch_size or IMAGE_SET_BATCH_SIZE,
            augment=IMAGE_SET_AUGMENT if self.augment == "auto" else self.augment,
        )

    def resolve_data(self, batch_size, augment, kind: str) -> "TrainConfig":
        """The settings with the batch size and augmentation a training dataset really has.

        Args:
            batch_size: the dataset's batch size (None: cannot be read off the dataset).
            augment: its augmentation (None for none, an Augment, or ``UNKNOWN``).
            kind: what the dataset is, for the error message.

        Raises:
            ValueError: a batch size or augmentation was given that the dataset does not have.
        """
        if self.batch_size is not None and batch_size is not None and self.batch_size != batch_size:
            raise ValueError(
                f"batch_size={self.batch_size} was given, but the training {kind} has batches of "
                f"{batch_size} images. batch_size applies to ImageSets; leave it out with a dataset, "
                "or build the dataset with that batch size."
            )
        if self.augment not in ("auto", UNKNOWN) and augment != UNKNOWN and get_augment(self.augment) != augment:
            raise ValueError(
                f"augment={self.augment!r} was given, but the training {kind} augments with "
                f"{augment_name(augment)!r}. augment applies to ImageSets; leave it out with a dataset, "
                "or build the dataset with that augmentation."
            )
        if augment == UNKNOWN and self.augment not in ("auto", UNKNOWN):
            augment = self.augment
        return self.replace(
            batch_size=batch_size if batch_size is not None else self.batch_size, augment=augment_name(augment)
        )

    def make_optimizer(self, rate_factors: dict | None = None):
        """The run's optimizer at ``learning_rate``.

        Args:
            rate_factors: None, or {variable path: factor} on the learning rate ("llrd:D": ``strategies.rate_factors``);
                then the optimizer is ``models.layer_rates``'s variant of the same one (a given optimizer object is
                copied from its configuration).
        """
        import keras

        if rate_factors is not None:
            from ..models.layer_rates import with_layer_rates

            given = self.optimizer if _is_optimizer(self.optimizer) else OPTIMIZERS[self.optimizer]
            return with_layer_rates(given, self.learning_rate, rate_factors)
        if isinstance(self.optimizer, keras.optimizers.Optimizer):
            self.optimizer.learning_rate = self.learning_rate
            return self.optimizer
        return getattr(keras.optimizers, OPTIMIZERS[self.optimizer])(learning_rate=self.learning_rate)

    def make_loss(self, num_classes: int, multi_label: bool = False):
        """ "auto" = the reference: binary cross-entropy on the one-hot softmax for two classes; categorical
        cross-entropy for more; binary cross-entropy over the K sigmoids of a multi-label model."""
        import keras

        if self.loss != "auto":
            return self.loss
        if num_classes == 2 or multi_label:
            return keras.losses.BinaryCrossentropy(name="binary_crossentropy")
        return keras.losses.CategoricalCrossentropy(name="categorical_crossentropy")

    def defining(self) -> dict:
        """The settings that define the run, as JSON-ready values."""
        values = {}
        for name in DEFINING:
            value = getattr(self, name)
            if name in ("optimizer", "loss"):
                value = _name_of(value)
            elif name == "augment" and value is not None and not isinstance(value, str):
                value = repr(value)
            elif name == "class_weight" and isinstance(value, dict):
                value = {str(k): float(v) for k, v in sorted(value.items())}
            values[name] = value
        return values

    def to_dict(self) -> dict:
        values = self.defining()
        values.update(
            jit_compile=self.jit_compile,
            deterministic=self.deterministic,
            run_eagerly=self.run_eagerly,
            distribute=self.distribute
            if isinstance(self.distribute, (str, type(None)))
            else type(self.distribute).__name__,
        )
        return values


def augment_name(augment):
    """An augmentation as recorded: None, a preset's name, ``UNKNOWN``, or the Augment itself."""
    if augment is None or augment == UNKNOWN:
        return augment
    params = get_augment(augment)
    return next((name for name, preset in PRESETS.items() if preset == params), params)


def fingerprint(identity: dict) -> str:
    """The sha256 of a canonical JSON form of ``identity`` (first 16 hex digits)."""
    text = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def differences(old: dict, new: dict) -> list[str]:
    """ "name: old → new" for each setting that differs (nested dicts compared key by key)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += [f"{key}.{line}" for line in differences(a, b)]
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            lines.append(f"{key}: {a!r} → {b!r}")
    return lines

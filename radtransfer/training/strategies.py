"""Freezing strategies: which backbone layers train during fine-tuning."""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..models.backbones import BackboneSpec, get_backbone
from ..models.classifier import get_backbone_model
from ..utils.choices import check_choice, did_you_mean

if TYPE_CHECKING:
    import keras

STRATEGIES = (
    "freeze_all",
    "unfreeze_top10",
    "unfreeze_top:N",
    "unfreeze_all",
    "unfreeze_blocks:K",
    "llrd:D",
    "linear_probe",
    "lp_ft",
)
BN_MODES = ("protocol", "frozen")
NEAR_NO_OP_FRACTION = 0.001
# lp_ft's first phase (Kumar et al. 2022): the linear probe at this multiple of the run's learning rate, to
# convergence: early stopping on val_loss with this patience, up to the run's epochs.
PROBE_RATE_FACTOR = 10.0
PROBE_PATIENCE = 3
PROBE_FEATURES = "the backbone's pooled features, computed once, without augmentation"


@dataclass
class StrategySummary:
    """What a strategy left trainable.

    Attributes:
        strategy: the strategy as given, normalised ("unfreeze_top:10" for "unfreeze_top10").
        bn: "protocol" or "frozen".
        trainable_params: parameters the optimizer will update (head included).
        non_trainable_params: the rest (BatchNorm moving statistics included).
        total_params: all parameters.
        trainable_layers: names of backbone layers with trainable weights, bottom to top.
        warnings: notes on strategies that are nearly no-ops.
        lr_factors: "llrd:D" only: the learning-rate factor of each part, top down (the head, blocks 1, 2, … from
            the top, the stem), each with its first layer; absent from ``to_dict`` for the other strategies.
        phases: "linear_probe" and "lp_ft" only: what each phase trains (the probe: the head alone, on cached
            features; lp_ft's fine-tuning: every layer, the count above); absent from ``to_dict`` for the others.
    """

    strategy: str
    bn: str
    trainable_params: int
    non_trainable_params: int
    total_params: int
    trainable_layers: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    lr_factors: list | None = None
    phases: list | None = None

    def to_dict(self) -> dict:
        values = dict(self.__dict__)
        for key in ("lr_factors", "phases"):
            if values[key] is None:  # the records of the other strategies stay as they were
                del values[key]
        return values


def parse_strategy(strategy: str) -> tuple[str, int | float | None]:
    """Returns (kind, number) for a strategy name; kind is freeze_all, unfreeze_top, unfreeze_all,
    unfreeze_blocks, llrd (whose number is the decay, a float in (0, 1]), linear_probe or lp_ft."""
    text = str(strategy).strip().lower()
    match = re.fullmatch(r"llrd(?:[:_](.*))?", text)
    if match:
        return "llrd", _decay(match.group(1), strategy)
    if text in ("freeze_all", "unfreeze_all", "linear_probe", "lp_ft"):
        return text, None
    if text in ("linear-probe", "lp-ft"):
        return text.replace("-", "_"), None
    match = re.fullmatch(r"unfreeze_top(?::|_)?(\d+)", text)
    if match:
        return "unfreeze_top", int(match.group(1))
    match = re.fullmatch(r"unfreeze_blocks?(?::|_)(\d+)", text)
    if match:
        return "unfreeze_blocks", int(match.group(1))
    choices = ("freeze_all", "unfreeze_top10", "unfreeze_all", "unfreeze_top:N", "unfreeze_blocks:K", "llrd:D")
    choices += ("linear_probe", "lp_ft")
    raise ValueError(
        f"Unknown strategy {strategy!r}. Expected one of {', '.join(STRATEGIES)} (N layers, K blocks, D a decay)."
        f"{did_you_mean(strategy, choices)} Received: strategy={strategy!r}"
    )


def _decay(text, strategy) -> float:
    try:
        decay = float(text)
    except (TypeError, ValueError):
        decay = math.nan
    if not 0 < decay <= 1:  # NaN fails too
        raise ValueError(
            f"Expected 'llrd:D' with a decay 0 < D ≤ 1 (e.g. 'llrd:0.75'). Received: strategy={strategy!r}"
        )
    return decay


def canonical_strategy(strategy: str) -> str:
    """The strategy's recorded name: "unfreeze_top:10" for "unfreeze_top10", "llrd:0.75" for "LLRD_0.750"."""
    kind, number = parse_strategy(strategy)
    if kind == "llrd":
        short = f"{number:g}"
        return f"llrd:{short if float(short) == number else repr(number)}"
    return {"unfreeze_top": f"unfreeze_top:{number}", "unfreeze_blocks": f"unfreeze_blocks:{number}"}.get(kind, kind)


def block_starts(backbone_model: keras.Model, spec: BackboneSpec) -> list[int]:
    """Index in ``backbone_model.layers`` of the first layer of each stage, bottom to top."""
    import keras

    if not spec.block_ends:
        raise ValueError(
            f"{spec.display_name} has no stages radtransfer knows (its encoder is one layer of the backbone), so "
            "'unfreeze_blocks:K' and 'llrd:D' do not apply: use 'freeze_all', 'unfreeze_top:N' or 'unfreeze_all'."
        )
    names = [layer.name for layer in backbone_model.layers]
    try:
        ends = [names.index(n) for n in spec.block_ends]
        if spec.stem_end is not None:
            stem_end = names.index(spec.stem_end)
        else:
            stem_end = max(
                i
                for i, layer in enumerate(backbone_model.layers[: ends[0]])
                if isinstance(layer, keras.layers.MaxPooling2D)
            )
    except ValueError as exc:
        raise ValueError(
            f"The backbone does not have the {spec.display_name} layer names radtransfer expects "
            f"({exc}); was it built by radtransfer.build_model?"
        ) from None
    return [stem_end + 1] + [end + 1 for end in ends[:-1]]


def apply_strategy(model: keras.Model, strategy: str, bn: str = "protocol") -> StrategySummary:
    """Sets which layers of a build_model model train, as the RadImageNet reference did.

    Args:
        model: a model made by ``build_model``.
        strategy: "freeze_all" (head only); "unfreeze_top10", exactly the reference's
            ``for layer in base.layers[:-10]: layer.trainable = False`` on the pooled backbone (the 10
            include the weightless avg_pool layer); "unfreeze_top:N" for other N; "unfreeze_all";
            "unfreeze_blocks:K", the top K stages of the architecture (see ``radtransfer.backbones``);
            "llrd:D", every layer, at layer-wise decayed learning rates (``layer_factors``; ``fine_tune`` gives the
            optimizer the factors); "linear_probe", the head alone, as freeze_all (``fine_tune`` trains it on the
            backbone's features computed once); "lp_ft", every layer, as unfreeze_all: the count of its fine-tuning
            phase, after a linear probe of the head (the summary's ``phases`` say what each phase trains).
        bn: "protocol" leaves each BatchNormalization layer following its layer's flag, as the
            reference did; "frozen" makes every BatchNormalization layer non-trainable, which in
            Keras 3 also keeps it in inference mode during ``fit()``.

    Returns:
        A StrategySummary (trainable parameter count, trainable layers, warnings; for "llrd:D" the factors; for
        "linear_probe" and "lp_ft" the phases).
    """
    import keras

    kind, number = parse_strategy(strategy)
    bn = check_choice("bn", str(bn).lower(), BN_MODES)
    base = get_backbone_model(model)
    spec = _spec_of(model, base)
    layers = base.layers

    if kind in ("freeze_all", "linear_probe"):
        first_trainable = len(layers)
    elif kind in ("unfreeze_all", "llrd", "lp_ft"):
        first_trainable = 0
    elif kind == "unfreeze_top":
        if number < 0:
            raise ValueError(f"Expected N ≥ 0 in 'unfreeze_top:N'. Received: strategy={strategy!r}")
        first_trainable = max(len(layers) - number, 0)
    else:
        starts = block_starts(base, spec)
        if not 0 <= number <= len(starts):
            raise ValueError(
                f"{spec.display_name} has {len(starts)} stages ({spec.block_unit}); expected "
                f"0 ≤ K ≤ {len(starts)} in 'unfreeze_blocks:K'. Received: strategy={strategy!r}"
            )
        first_trainable = len(layers) if number == 0 else starts[len(starts) - number]

    base.trainable = True
    for index, layer in enumerate(layers):
        layer.trainable = index >= first_trainable
        if bn == "frozen" and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    for layer in model.layers:
        if layer is not base:
            layer.trainable = True

    summary = StrategySummary(
        strategy=canonical_strategy(strategy),
        bn=bn,
        trainable_params=_count(model.trainable_weights),
        non_trainable_params=_count(model.non_trainable_weights),
        total_params=_count(model.weights),
        trainable_layers=[layer.name for layer in layers if layer.trainable_weights],
        lr_factors=_factor_table(base, spec, number) if kind == "llrd" else None,
        phases=_phases(model, base, kind),
    )
    backbone_trainable = _count(base.trainable_weights)
    backbone_total = _count(base.weights)
    if (
        kind not in ("freeze_all", "linear_probe")
        and number != 0
        and backbone_trainable <= NEAR_NO_OP_FRACTION * backbone_total
    ):
        message = (
            f"Strategy '{strategy}' on {spec.display_name} leaves only {backbone_trainable:,} of "
            f"{backbone_total:,} backbone parameters trainable: it is nearly 'freeze_all'."
        )
        if kind == "unfreeze_top":
            message += " The top layers are mostly pooling, activation and concatenation; consider 'unfreeze_blocks:1'."
        summary.warnings.append(message)
        warnings.warn(message, stacklevel=2)
    return summary


def layer_factors(n_layers: int, starts: list[int], decay: float) -> list[float]:
    """The learning-rate factor of each backbone layer under "llrd:D", bottom to top.

    The unit of depth is the stage of "unfreeze_blocks:K" (``block_starts``): the layers of block k from the top
    (k = 1 for the top block, which runs to the backbone's last layer) get ``decay**k``; the stem (every layer below
    the first block's start) gets the deepest block's factor times ``decay`` once more, ``decay**(len(starts) + 1)``.
    The head (outside the backbone) keeps factor 1.

    Args:
        n_layers: the number of layers of the backbone model.
        starts: the index of each block's first layer, bottom to top.
        decay: D, in (0, 1].
    """
    factors = []
    for index in range(n_layers):
        above = sum(1 for start in starts if start <= index)  # the blocks starting at or below this layer
        depth = len(starts) - above + 1  # 1 for the top block, len(starts) + 1 for the stem
        factors.append(decay**depth)
    return factors


def rate_factors(model: keras.Model, strategy: str) -> dict[str, float] | None:
    """{variable path: factor} of the trainable backbone variables under "llrd:D" (None for another strategy), for
    ``radtransfer.models.layer_rates.with_layer_rates``. Call it after ``apply_strategy``: it names the variables
    that train (with bn="frozen" the BatchNorm layers' are not among them)."""
    kind, decay = parse_strategy(strategy)
    if kind != "llrd":
        return None
    base = get_backbone_model(model)
    factors = layer_factors(len(base.layers), block_starts(base, _spec_of(model, base)), decay)
    return {v.path: factor for layer, factor in zip(base.layers, factors) for v in layer.trainable_weights}


def _factor_table(base, spec: BackboneSpec, decay: float) -> list[dict]:
    """The factor of each part, top down, with its first layer (the summary's ``lr_factors``)."""
    starts = block_starts(base, spec)
    factors = layer_factors(len(base.layers), starts, decay)
    rows = [{"part": "head", "first_layer": "predictions", "factor": 1.0}]
    for k, start in enumerate(reversed(starts), start=1):
        rows.append({"part": f"block {k}", "first_layer": base.layers[start].name, "factor": factors[start]})
    rows.append({"part": "stem", "first_layer": base.layers[0].name, "factor": factors[0]})
    return rows


def _phases(model, base, kind: str) -> list[dict] | None:
    """What each phase of "linear_probe" and "lp_ft" trains (None for the other strategies)."""
    if kind not in ("linear_probe", "lp_ft"):
        return None
    head = _count(model.trainable_weights) - _count(base.trainable_weights)
    probe = {"phase": "probe", "trains": "the head only", "trainable_params": head, "features": PROBE_FEATURES}
    if kind == "linear_probe":
        return [probe]
    probe.update(learning_rate_factor=PROBE_RATE_FACTOR, early_stopping=PROBE_PATIENCE)
    whole = {"phase": "fine_tune", "trains": "every layer", "trainable_params": _count(model.trainable_weights)}
    return [probe, whole]


def _spec_of(model, base) -> BackboneSpec:
    info = getattr(model, "radtransfer_info", None)
    return get_backbone(info.backbone) if info is not None else _spec_from_layers(base)


def _count(weights) -> int:
    total = 0
    for w in weights:
        size = 1
        for d in w.shape:
            size *= int(d)
        total += size
    return total


def _spec_from_layers(base) -> BackboneSpec:
    names = {layer.name for layer in base.layers}
    for name in ("resnet50", "densenet121", "inception_v3", "inception_resnet_v2"):
        spec = get_backbone(name)
        if set(spec.block_ends) <= names:
            return spec
    raise ValueError("Could not tell which backbone this model uses; build it with radtransfer.build_model.")

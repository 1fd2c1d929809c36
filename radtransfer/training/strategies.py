"""Freezing strategies: which backbone layers train during fine-tuning."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..models.backbones import BackboneSpec, get_backbone
from ..models.classifier import get_backbone_model
from ..utils.choices import check_choice, did_you_mean

if TYPE_CHECKING:
    import keras

STRATEGIES = ("freeze_all", "unfreeze_top10", "unfreeze_top:N", "unfreeze_all", "unfreeze_blocks:K")
BN_MODES = ("protocol", "frozen")
NEAR_NO_OP_FRACTION = 0.001


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
    """

    strategy: str
    bn: str
    trainable_params: int
    non_trainable_params: int
    total_params: int
    trainable_layers: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """Returns (kind, number) for a strategy name; kind is freeze_all, unfreeze_top, unfreeze_all
    or unfreeze_blocks."""
    text = str(strategy).strip().lower()
    if text in ("freeze_all", "unfreeze_all"):
        return text, None
    match = re.fullmatch(r"unfreeze_top(?::|_)?(\d+)", text)
    if match:
        return "unfreeze_top", int(match.group(1))
    match = re.fullmatch(r"unfreeze_blocks?(?::|_)(\d+)", text)
    if match:
        return "unfreeze_blocks", int(match.group(1))
    choices = ("freeze_all", "unfreeze_top10", "unfreeze_all", "unfreeze_top:N", "unfreeze_blocks:K")
    raise ValueError(
        f"Unknown strategy {strategy!r}. Expected one of {', '.join(STRATEGIES)} (N layers, K blocks)."
        f"{did_you_mean(strategy, choices)} Received: strategy={strategy!r}"
    )


def block_starts(backbone_model: keras.Model, spec: BackboneSpec) -> list[int]:
    """Index in ``backbone_model.layers`` of the first layer of each stage, bottom to top."""
    import keras

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
            "unfreeze_blocks:K", the top K stages of the architecture (see ``radtransfer.backbones``).
        bn: "protocol" leaves each BatchNormalization layer following its layer's flag, as the
            reference did; "frozen" makes every BatchNormalization layer non-trainable, which in
            Keras 3 also keeps it in inference mode during ``fit()``.

    Returns:
        A StrategySummary (trainable parameter count, trainable layers, warnings).
    """
    import keras

    kind, number = parse_strategy(strategy)
    bn = check_choice("bn", str(bn).lower(), BN_MODES)
    base = get_backbone_model(model)
    info = getattr(model, "radtransfer_info", None)
    spec = get_backbone(info.backbone) if info is not None else _spec_from_layers(base)
    layers = base.layers

    if kind == "freeze_all":
        first_trainable = len(layers)
    elif kind == "unfreeze_all":
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

    canonical = {"unfreeze_top": f"unfreeze_top:{number}", "unfreeze_blocks": f"unfreeze_blocks:{number}"}
    summary = StrategySummary(
        strategy=canonical.get(kind, kind),
        bn=bn,
        trainable_params=_count(model.trainable_weights),
        non_trainable_params=_count(model.non_trainable_weights),
        total_params=_count(model.weights),
        trainable_layers=[layer.name for layer in layers if layer.trainable_weights],
    )
    backbone_trainable = _count(base.trainable_weights)
    backbone_total = _count(base.weights)
    if kind != "freeze_all" and number != 0 and backbone_trainable <= NEAR_NO_OP_FRACTION * backbone_total:
        message = (
            f"Strategy '{strategy}' on {spec.display_name} leaves only {backbone_trainable:,} of "
            f"{backbone_total:,} backbone parameters trainable: it is nearly 'freeze_all'."
        )
        if kind == "unfreeze_top":
            message += " The top layers are mostly pooling, activation and concatenation; consider 'unfreeze_blocks:1'."
        summary.warnings.append(message)
        warnings.warn(message, stacklevel=2)
    return summary


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

"""The arms of a grid: a weight source, optionally fed a preprocessing of its own.

An arm is named ``<source>`` or ``<source>@<preprocessing>``: ``imagenet@faithful`` is ImageNet weights fed the
reference scripts' input (``(BGR(x) − mean) / 255``, the "radimagenet" mode, for every source), and
``imagenet@corrected`` ImageNet weights fed their own normalization ("auto"). A bare source takes the grid's
(faithful grids: the reference's; others: corrected). Arms are what grids plan, train, pair and report by, so
one grid can hold the faithful and the corrected preprocessing of the same sources side by side: every arm of a
scenario, fold and repeat shares the run seed, so arms are paired exactly as sources are.

Random initialisation (full training) is the source ``RANDOM``; None and "none" name it too.

A foundation encoder is an arm too, named ``<encoder>:<preset>`` (``dinov2:dinov2_small``, ``dinov2:my_dinov2``): it
replaces the scenario's CNN by that encoder (``models.backbones.FOUNDATION_BACKBONES``) with the preset's weights (a
named preset, or a preset folder of that name in the weight folders), fed its own normalization. Its runs of a
scenario, fold and repeat share the split and the run seed with the CNN sources' runs, so they are paired as sources
are: on the same test images (docs/reproduce.md, "Foundation encoders in a grid").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.backbones import FOUNDATION_BACKBONES, get_backbone
from ..utils.choices import check_choice, did_you_mean

RANDOM = "random"
SEPARATOR = "@"
ENCODER_SEPARATOR = ":"
FAITHFUL, CORRECTED = "faithful", "corrected"
# An arm's preprocessing → the ``build_model(preprocessing=...)`` it means.
PREPROCESSING_MODES = {FAITHFUL: "radimagenet", CORRECTED: "auto"}


@dataclass(frozen=True)
class Arm:
    """One arm: a weight source and the preprocessing it is fed (None: the grid's)."""

    source: str
    preprocessing: str | None = None

    @property
    def name(self) -> str:
        return self.source if self.preprocessing is None else f"{self.source}{SEPARATOR}{self.preprocessing}"

    @property
    def is_random(self) -> bool:
        return self.source == RANDOM

    @property
    def encoder(self) -> str | None:
        """The foundation encoder that replaces the scenario's backbone ("dinov2"), or None for a CNN weight source."""
        encoder, separator, _ = self.source.partition(ENCODER_SEPARATOR)
        return encoder if separator else None

    @property
    def preset(self) -> str | None:
        """A foundation arm's preset: a named preset of its encoder or the name of a preset folder."""
        return self.source.partition(ENCODER_SEPARATOR)[2] if self.encoder else None

    def preprocessing_mode(self, faithful: bool) -> str:
        """The ``build_model`` preprocessing of this arm's runs in a grid that is (or is not) faithful: a foundation
        encoder is always fed its own normalization."""
        return PREPROCESSING_MODES[self.label(faithful)]

    def label(self, faithful: bool) -> str:
        """ "faithful" or "corrected": the preprocessing this arm's runs were fed."""
        if self.encoder:
            return CORRECTED
        return self.preprocessing or (FAITHFUL if faithful else CORRECTED)


def parse_arm(name) -> Arm:
    """An arm from its name (``"imagenet"``, ``"imagenet@faithful"``, None for random initialisation).

    Raises:
        ValueError: the part after "@" is not a known preprocessing.
    """
    if name is None:
        return Arm(RANDOM)
    text = str(name)
    source, separator, preprocessing = text.rpartition(SEPARATOR)
    if not separator:
        source, preprocessing = text, None
    elif preprocessing.lower() in PREPROCESSING_MODES:
        preprocessing = preprocessing.lower()
    else:
        raise ValueError(
            f"Unknown preprocessing {preprocessing!r} in the weight source {text!r}. Expected "
            f"'<source>@faithful' or '<source>@corrected'.{did_you_mean(preprocessing, tuple(PREPROCESSING_MODES))}"
        )
    if source.lower() in ("none", RANDOM):
        source = RANDOM
    if ENCODER_SEPARATOR in source:
        return _foundation_arm(text, source, preprocessing)
    return Arm(source, preprocessing)


def _foundation_arm(text: str, source: str, preprocessing) -> Arm:
    """The arm ``<encoder>:<preset>``, its encoder's name canonical, or a one-line ValueError naming ``text``."""
    encoder, _, preset = source.partition(ENCODER_SEPARATOR)
    usage = "Expected '<encoder>:<preset>' (e.g. 'dinov2:dinov2_small', or 'dinov2:my_dinov2' for a preset folder of "
    usage += "that name in weights_dir)"
    spec = None
    try:
        spec = get_backbone(encoder)
    except ValueError:
        pass
    if spec is None or not spec.foundation:
        found = f" ({', '.join(FOUNDATION_BACKBONES)}).{did_you_mean(encoder, tuple(FOUNDATION_BACKBONES))}"
        raise ValueError(f"{usage}; {encoder!r} in the weight source {text!r} is not a foundation encoder{found}")
    if not preset or any(c in preset for c in ("/", "\\", ENCODER_SEPARATOR)) or preset in (".", ".."):
        raise ValueError(
            f"{usage}; the preset {preset!r} in {text!r} is not a name. Put the preset folder in weights_dir and "
            "name it by its folder name."
        )
    if preprocessing is not None:
        raise ValueError(f"A foundation encoder is fed its own normalization: drop '@{preprocessing}' from {text!r}.")
    return Arm(f"{spec.name}{ENCODER_SEPARATOR}{preset}")


def check_arms(names, weight_sources) -> list[str]:
    """The names as arms (``arm_name``), each of a known weight source or a foundation encoder's preset, or a one-line
    ValueError naming the bad one: an unknown preprocessing after "@", a source that is not one of ``weight_sources``,
    "none", "random" or "<encoder>:<preset>", or an encoder that is not a foundation backbone."""
    arms = []
    for name in names:
        arm = parse_arm(name)
        if not arm.is_random and not arm.encoder:
            check_choice("sources", arm.source, (*weight_sources, "none", RANDOM))
        arms.append(arm.name)
    return arms


def arm_name(source) -> str:
    """A weight source or arm as grids name it: None and "none" are ``RANDOM``; a preprocessing suffix in lower
    case; the rest unchanged."""
    return parse_arm(source).name


def with_preprocessings(sources, preprocessings=(CORRECTED, FAITHFUL)) -> list[str]:
    """Every source crossed with every preprocessing, as arm names in a stable order (preprocessing first, then
    source): ``with_preprocessings(["radimagenet", "imagenet"])`` is ``["radimagenet@corrected",
    "imagenet@corrected", "radimagenet@faithful", "imagenet@faithful"]``, the grid that tests the reference's
    preprocessing against the corrected one. Random initialisation has no preprocessing of its own to test and
    is kept once, bare; so is a foundation encoder (fed its own normalization)."""
    arms = []
    for preprocessing in preprocessings:
        parse_arm(f"x{SEPARATOR}{preprocessing}")  # a one-line error naming a bad preprocessing
        for source in sources:
            arm = parse_arm(source)
            name = arm.name if arm.is_random or arm.encoder else Arm(arm.source, preprocessing.lower()).name
            if name not in arms:
                arms.append(name)
    return arms


def comparisons(sources, faithful: bool = False) -> list[tuple[str, str, str]]:
    """The paired comparisons a grid's arms answer, as (candidate, reference, factor) in the grid's order.

    factor "source": two weight sources fed the same preprocessing (for each preprocessing the grid has, the
    first pretrained source against each later one: RadImageNet − ImageNet, as the paper and, faithful, as the
    reference's code compared them); factor "preprocessing": one source, corrected − faithful (what fixing the
    input changes); factor "encoder": each pretrained arm against each later foundation encoder in the grid's order
    (the encoder, fed its own normalization, replaces the scenario's CNN on the same split and seed).
    Random initialisation is compared with nothing here (the learning curve does that).
    """
    arms = [parse_arm(name) for name in sources]
    pretrained = [arm for arm in arms if not arm.is_random and not arm.encoder]
    pairs = []
    labels = list(dict.fromkeys(arm.label(faithful) for arm in pretrained))
    for label in labels:
        same = [arm for arm in pretrained if arm.label(faithful) == label]
        for later in same[1:]:
            pairs.append((same[0].name, later.name, "source"))
    for arm in pretrained:
        if arm.label(faithful) != CORRECTED:
            continue
        for other in pretrained:
            if other.source == arm.source and other.label(faithful) == FAITHFUL:
                pairs.append((arm.name, other.name, "preprocessing"))
    trained = [arm for arm in arms if not arm.is_random]
    for i, arm in enumerate(trained):
        pairs += [(arm.name, later.name, "encoder") for later in trained[i + 1 :] if later.encoder]
    return pairs

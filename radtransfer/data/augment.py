"""Training augmentation's parameters and presets: one composed affine transform per image, applied batch-wise by
either image path (``tf_data/augment.py`` in the tf.data pipeline, ``py_dataset/device_augment.py`` on the device).

The random draws follow Keras's ImageDataGenerator (the reference loader): rotation in degrees, shifts as
fractions of the size, shear in degrees, independent x and y zoom factors, horizontal flip; the matrices
compose in its order (rotation · shift · shear · zoom about the image centre, then the flip) and the
result is applied once with ``ImageProjectiveTransformV3``, instead of a chain of random layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..utils.choices import check_choice

FILL_MODES = ("nearest", "constant", "reflect", "wrap")


@dataclass(frozen=True)
class Augment:
    """Parameters of the random affine augmentation.

    Attributes:
        rotation: maximum rotation in degrees (uniform in ±rotation).
        width_shift, height_shift: maximum shifts as fractions of width and height.
        shear: maximum shear angle in degrees (Keras's shear_range unit).
        zoom: (low, high) range of the independent x and y zoom factors.
        horizontal_flip, vertical_flip: flip with probability 1/2.
        fill_mode: "nearest", "constant", "reflect" or "wrap" for pixels from outside the image.
        fill_value: value for fill_mode="constant".
        interpolation: "bilinear" or "nearest".
    """

    rotation: float = 10.0
    width_shift: float = 0.1
    height_shift: float = 0.1
    shear: float = 0.1
    zoom: tuple = (0.9, 1.1)
    horizontal_flip: bool = True
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    fill_value: float = 0.0
    interpolation: str = "bilinear"

    def __post_init__(self):
        check_choice("fill_mode", self.fill_mode, FILL_MODES)
        check_choice("interpolation", self.interpolation, ("bilinear", "nearest"))
        zoom = self.zoom
        if isinstance(zoom, (int, float)):
            zoom = (1.0 - zoom, 1.0 + zoom)
        object.__setattr__(self, "zoom", (float(zoom[0]), float(zoom[1])))
        if not 0 < self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"Expected 0 < zoom[0] ≤ zoom[1]. Received: zoom={self.zoom}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def is_identity(self) -> bool:
        return (
            self.rotation == 0
            and self.width_shift == 0
            and self.height_shift == 0
            and self.shear == 0
            and self.zoom == (1.0, 1.0)
            and not self.horizontal_flip
            and not self.vertical_flip
        )


PRESETS = {
    # The reference scripts' training augmentation (ImageDataGenerator arguments).
    "radimagenet": Augment(),
    # The CT tasks dropped rotation and flip.
    "radimagenet_ct": Augment(rotation=0.0, horizontal_flip=False),
}


def get_augment(augment) -> Augment | None:
    """None, a preset name or an Augment → an Augment (or None)."""
    if augment is None or augment is False:
        return None
    if isinstance(augment, Augment):
        return augment
    if isinstance(augment, dict):
        return Augment(**augment)
    key = check_choice("augment", str(augment).lower(), (*PRESETS, None), what="or an Augment(...)")
    return PRESETS[key]

"""Where and how a model runs: precision, XLA and distribution, resolved for this machine in one place.

``fine_tune`` asks this module for a *working* model: the caller's own model when it already fits the
resolved precision and no distribution is used, otherwise a rebuild under the policy or the strategy's
scope with the same weights. After training, ``copy_weights`` hands the result back to the caller's
object, so that the model a user holds is always the model that was trained.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import backend
from ..utils.choices import check_choice

if TYPE_CHECKING:
    pass

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DISTRIBUTIONS = backend.DISTRIBUTIONS


def resolve_precision(precision: str, capability=None, backend_name: str | None = None) -> str:
    """ "auto" → mixed_bfloat16 on GPUs with native bfloat16 (compute capability ≥ 8.0), mixed_float16 (with
    loss scaling, which Keras adds for that policy) on 7.x, float32 otherwise — on every backend.
    ``capability`` overrides the detected GPU (for tests)."""
    key = check_choice("precision", str(precision).lower(), PRECISIONS)
    if key != "auto":
        return key
    capability = backend.gpu_compute_capability(backend_name) if capability is None else capability
    if not capability:
        return "float32"
    if tuple(capability) >= (8, 0):
        return "mixed_bfloat16"
    return "mixed_float16" if tuple(capability) >= (7, 0) else "float32"


def resolve_jit_compile(jit_compile, deterministic: bool, has_gpu: bool | None = None, backend_name: str | None = None):
    """ "auto" → XLA on TensorFlow GPUs (off on CPU), always on JAX, off on PyTorch. On TensorFlow,
    deterministic=True turns XLA off (TF's op determinism excludes XLA)."""
    check_choice("jit_compile", jit_compile, ("auto", True, False))
    backend_name = backend_name or backend.name()
    if deterministic and backend_name == "tensorflow":
        if jit_compile is True:
            warnings.warn(
                "deterministic=True turns XLA off (TF op determinism does not cover XLA); jit_compile=True is ignored.",
                stacklevel=3,
            )
        return False
    if jit_compile == "auto":
        if has_gpu is None and backend_name == "tensorflow":
            has_gpu = backend.has_gpu(backend_name)
        return backend.auto_jit_compile(backend_name, bool(has_gpu))
    return jit_compile


def make_distribution(distribute):
    """The distribution for ``distribute`` on this backend (see ``backend.make_distribution``). A TensorFlow
    multi-worker strategy must exist before TensorFlow's runtime starts, so call this before seeding or
    building anything."""
    return backend.make_distribution(distribute)


class null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def scope(distribution):
    return distribution.scope() if distribution is not None else null_scope()


@dataclass(frozen=True)
class Runtime:
    """The resolved execution settings of one training run (recorded in its config)."""

    precision: str
    jit_compile: bool
    distribution: object = None

    @classmethod
    def resolve(cls, config) -> "Runtime":
        """A TrainConfig's precision, XLA and distribution, resolved for this machine and backend (the
        distribution first: a TensorFlow multi-worker strategy must exist before TensorFlow's runtime starts)."""
        distribution = make_distribution(config.distribute)
        return cls(
            resolve_precision(config.precision),
            resolve_jit_compile(config.jit_compile, config.deterministic),
            distribution,
        )

    @property
    def replicas(self) -> int:
        return backend.replicas(self.distribution)

    def scope(self):
        return scope(self.distribution)


def model_policy(model) -> str:
    """The dtype policy the model computes in (its backbone's, for a build_model model)."""
    names = [layer.name for layer in model.layers]
    return model.get_layer("backbone").dtype_policy.name if "backbone" in names else model.dtype_policy.name


def working_model(model, precision: str, distribution):
    """A model to train: ``model`` itself when it already fits, else a rebuild with its weights.

    Args:
        model: a build_model model, or a function of no arguments that builds one.
        precision: the resolved precision policy.
        distribution: a tf.distribute strategy or None.

    Returns:
        (working model, whether it is a different object from ``model``).
    """
    import keras

    from ..models.classifier import build_model

    is_model = isinstance(model, keras.Model)
    if is_model and distribution is None and model_policy(model) == precision:
        return model, False
    previous = keras.mixed_precision.dtype_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        with scope(distribution):
            if not is_model:
                built = model()
            else:
                info = getattr(model, "radtransfer_info", None)
                if info is None:
                    raise ValueError(
                        "This model was not made by radtransfer.build_model, so it cannot be rebuilt for "
                        f"precision={precision!r} or a distribution; pass a function that builds it instead."
                    )
                built = build_model(
                    info.backbone,
                    weights=None,
                    num_classes=info.num_classes,
                    input_shape=info.input_shape,
                    dropout=info.dropout,
                    preprocessing=info.preprocessing,
                    name=model.name,
                )
                copy_weights(model, built)
                built.radtransfer_info = info
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return built, True


def copy_weights(source, target) -> None:
    """Copies every weight of ``source`` into ``target`` (same architecture; any precision or
    distribution), checking that the two match variable by variable."""
    if source is target:
        return
    a, b = source.weights, target.weights
    if len(a) != len(b):
        raise ValueError(f"Cannot copy weights between models with {len(a)} and {len(b)} weights.")
    for va, vb in zip(a, b):
        if tuple(va.shape) != tuple(vb.shape):
            raise ValueError(
                f"Cannot copy weight {va.path} of shape {tuple(va.shape)} into {vb.path} of shape {tuple(vb.shape)}."
            )
    target.set_weights([np.asarray(w) for w in source.get_weights()])

"""Everything that differs between Keras backends (TensorFlow, JAX, PyTorch), in one place: the GPU and its
compute capability, what "auto" XLA means, data-parallel distribution, and determinism.

TensorFlow is imported only on the TensorFlow backend, so that radtransfer's model side runs on JAX or
PyTorch without it.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from .utils.choices import check_choice

if TYPE_CHECKING:
    pass

BACKENDS = ("tensorflow", "jax", "torch")
DISTRIBUTIONS = (None, "mirrored", "data_parallel", "multiworker")


def name() -> str:
    """The Keras backend in use: "tensorflow", "jax" or "torch"."""
    import keras

    return keras.backend.backend()


IMAGE_PATHS = ("tf.data", "numpy")
IMAGE_PATH_VARIABLE = "RADTRANSFER_IMAGE_PATH"


def image_path() -> str:
    """How ImageSets are read: "tf.data" (``data.make_dataset``) on the TensorFlow backend; "numpy" (Pillow and
    pydicom, a uint8 cache and a ``PyDataset``: ``data.py_dataset.sequence``; augmentation on the device) on JAX
    and PyTorch, where TensorFlow need not be installed. ``$RADTRANSFER_IMAGE_PATH`` ("numpy" or "tf.data")
    overrides it, e.g. to compare the two paths on TensorFlow."""
    forced = os.environ.get(IMAGE_PATH_VARIABLE)
    if forced:
        return check_choice(f"${IMAGE_PATH_VARIABLE}", forced, IMAGE_PATHS)
    return "tf.data" if name() == "tensorflow" else "numpy"


def _parse_capability(value):
    if value is None:
        return None
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        return int(major), int(minor or 0)
    return tuple(int(v) for v in value)[:2]


def gpu_compute_capability(backend: str | None = None):
    """The first GPU's compute capability as (major, minor), or None without a GPU."""
    backend = backend or name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        return _parse_capability(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability"))
    if backend == "jax":
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # no GPU platform
            return None
        return _parse_capability(getattr(gpus[0], "compute_capability", None)) if gpus else None
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None
        return tuple(torch.cuda.get_device_capability(0))
    return None


def has_gpu(backend: str | None = None) -> bool:
    backend = backend or name()
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    return gpu_compute_capability(backend) is not None


def auto_jit_compile(backend: str, gpu: bool) -> bool:
    """What jit_compile="auto" means: XLA on TensorFlow GPUs (on CPU it is often slower and some ops lack
    XLA kernels), always on JAX (XLA is how JAX runs), off on PyTorch (Keras's torch backend would use
    torch.compile, whose compile time is not repaid in a fine-tuning run)."""
    if backend == "jax":
        return True
    if backend == "tensorflow":
        return bool(gpu)
    return False


def is_keras_distribution(distribution) -> bool:
    """A ``keras.distribution`` object (JAX), rather than a tf.distribute strategy."""
    import keras

    return isinstance(distribution, (keras.distribution.DataParallel, keras.distribution.ModelParallel))


def check_distribute(distribute, backend: str | None = None) -> None:
    backend = backend or name()
    if backend == "tensorflow":
        import tensorflow as tf

        if isinstance(distribute, tf.distribute.Strategy):
            return
    if is_keras_distribution(distribute):
        return
    check_choice("distribute", distribute, DISTRIBUTIONS, what="or a tf.distribute.Strategy")
    if backend == "torch" and distribute is not None:
        raise ValueError(
            f"distribute={distribute!r} is not supported on the PyTorch backend; use "
            "KERAS_BACKEND=tensorflow (tf.distribute) or jax (keras.distribution.DataParallel)."
        )


def make_distribution(distribute, backend: str | None = None):
    """The distribution for ``distribute`` on this backend (None for none).

    TensorFlow: "mirrored" (or "data_parallel") is a MirroredStrategy over the local GPUs; "multiworker" a
    MultiWorkerMirroredStrategy from TF_CONFIG, made before TensorFlow's runtime starts. JAX: "mirrored" and
    "data_parallel" are ``keras.distribution.DataParallel`` over the local devices; "multiworker" first
    initialises JAX's multi-process runtime (``keras.distribution.initialize``, from the JAX coordinator
    environment variables) and spans every host's devices.
    """
    import keras

    backend = backend or name()
    check_distribute(distribute, backend)
    if distribute is None or not isinstance(distribute, str):
        return distribute
    if backend == "tensorflow":
        import tensorflow as tf

        if distribute in ("mirrored", "data_parallel"):
            return tf.distribute.MirroredStrategy()
        if "TF_CONFIG" not in os.environ:
            raise ValueError("distribute='multiworker' needs the TF_CONFIG environment variable (cluster and task).")
        warnings.warn(
            "model.fit under MultiWorkerMirroredStrategy fails in released Keras 3 (up to at least 3.15; "
            "keras-team/keras#20585, tensorflow/tensorflow#72388). radtransfer sets it up correctly, but "
            "training may stop with a TensorFlow error until Keras fixes it; 'mirrored' works.",
            stacklevel=3,
        )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if distribute == "multiworker":
        keras.distribution.initialize()
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices())


def replicas(distribution) -> int:
    """How many copies of the model train in step."""
    if distribution is None:
        return 1
    if hasattr(distribution, "num_replicas_in_sync"):
        return int(distribution.num_replicas_in_sync)
    mesh = getattr(distribution, "device_mesh", None)
    return int(mesh.shape[0]) if mesh is not None else 1


def draw_from_generator_states(generators, backend: str | None = None) -> None:
    """Makes layers draw their random numbers from their ``SeedGenerator``'s state on every backend. On PyTorch, a
    generator made without a seed (``Dropout()``'s default) sends ``keras.random.dropout`` to torch's global
    generator, which Keras's own first-``fit`` build pass also draws from, so seeding the states (``seed_layers``)
    would not make an epoch replayable there; marking the generator seeded takes Keras's seeded path (a Bernoulli
    mask from the state: slower for large tensors, negligible for the classifier's head). TensorFlow and JAX always
    draw from the states."""
    if (backend or name()) != "torch":
        return
    for generator in generators:
        if getattr(generator, "_initial_seed", 0) is None:
            generator._initial_seed = 0  # any value: the draws come from the state seed_layers sets


def enable_determinism(backend: str | None = None) -> None:
    """Deterministic kernels where the backend offers a switch (TensorFlow op determinism, PyTorch's
    deterministic algorithms). JAX on CPU is deterministic; on GPU set
    XLA_FLAGS=--xla_gpu_deterministic_ops=true before JAX starts."""
    backend = backend or name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True, warn_only=True)
    elif backend == "jax" and has_gpu("jax") and "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
        warnings.warn(
            "deterministic=True on JAX GPUs needs XLA_FLAGS=--xla_gpu_deterministic_ops=true set "
            "before JAX starts; results may still vary between runs.",
            stacklevel=3,
        )


def class_score_gradients(features, preprocess, images, kernel, bias, classes, activations, pooled):
    """d(class score before the softmax) / d(activations of the Grad-CAM layer), as a NumPy array.

    ``features`` maps the preprocessed images to (activations, pooled backbone output); the score is
    pooled · kernel[:, class] + bias[class]. TensorFlow records a GradientTape and PyTorch uses autograd
    (both through whatever lies between the layer and the pooling). JAX has no tape over a Keras graph's
    intermediate tensors, so there the layer must feed the global average pooling directly (the default,
    the last convolutional activation), where the gradient is exactly kernel[:, class] / (h·w).
    """
    import keras
    import numpy as np

    classes = np.asarray(classes, dtype=np.int64)
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            acts, out = features(preprocess(tf.convert_to_tensor(images)), training=False)
            tape.watch(acts)
            logits = tf.matmul(tf.cast(out, tf.float32), kernel) + bias
            score = tf.gather(logits, tf.constant(classes, tf.int32), batch_dims=1)
        return tape.gradient(score, acts).numpy().astype(np.float32)
    if backend == "torch":
        import torch

        with torch.enable_grad():
            inputs = keras.ops.convert_to_tensor(images).float().requires_grad_(True)  # frozen layers too
            acts, out = features(preprocess(inputs), training=False)
            logits = out.float() @ torch.as_tensor(kernel, device=out.device) + torch.as_tensor(bias, device=out.device)
            index = torch.as_tensor(classes, device=out.device)[:, None]
            score = logits.gather(1, index).sum()
            (grads,) = torch.autograd.grad(score, acts)
        return grads.detach().cpu().numpy().astype(np.float32)
    h, w = activations.shape[1:3]
    if pooled.shape[-1] != activations.shape[-1] or not np.allclose(
        pooled, activations.mean(axis=(1, 2)), rtol=1e-3, atol=1e-4
    ):
        raise NotImplementedError(
            f"Grad-CAM at an inner layer needs gradients through the network, which the "
            f"{backend} backend cannot take over a Keras graph's intermediate tensors; use "
            "the default layer (the last convolutional activation), or the TensorFlow or "
            "PyTorch backend."
        )
    column = kernel[:, classes].T[:, None, None, :] / float(h * w)
    return np.broadcast_to(column, activations.shape).astype(np.float32)

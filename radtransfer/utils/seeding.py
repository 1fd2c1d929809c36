"""Random streams derived from a base seed and named parts, so that any run, epoch or stream can be
replayed on its own (a resumed run, a shard of the grid) without replaying what came before it."""

from __future__ import annotations

import hashlib

import numpy as np

SEED_RANGE = 2**31 - 1


def derive_seed(seed: int, *parts) -> int:
    """A seed in [0, 2³¹ − 1) that depends only on ``seed`` and ``parts`` (strings or numbers).

    ``derive_seed(726, "shuffle", 3)`` is the seed of epoch 3's shuffle in a run seeded 726: the same in
    every process, on every machine, whatever ran before.
    """
    text = "\x1f".join(str(p) for p in (int(seed), *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") % SEED_RANGE


def set_global_seed(seed: int) -> None:
    """Seeds Python, NumPy and the Keras backend (the seed of Keras's unseeded random ops).

    ``keras.utils.set_random_seed`` also seeds TensorFlow whenever it is installed, importing it; on the JAX
    and PyTorch backends with TensorFlow not yet imported, this seeds Python, NumPy and PyTorch instead and
    leaves TensorFlow unimported (radtransfer seeds every random stream it uses explicitly: shuffling,
    augmentation, dropout, the head).
    """
    import random
    import sys

    import keras

    seed = int(seed)
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def fresh_seed() -> int:
    """A random base seed (for runs given seed=None; it is recorded so the run can still be resumed)."""
    return int(np.random.SeedSequence().generate_state(1)[0] % SEED_RANGE)


def seed_generators(model):
    """Every ``keras.random.SeedGenerator`` of the model's layers (Dropout's, and any other)."""
    import keras

    found, seen = [], set()
    for layer in walk_layers(model):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator) and id(value) not in seen:
                seen.add(id(value))
                found.append(value)
    return found


def walk_layers(layer):
    """The layer and every layer nested in it, depth first."""
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from walk_layers(child)


def seed_layers(model, seed: int) -> int:
    """Sets every layer seed generator's state from ``seed`` (generator i gets derive_seed(seed, i)).

    Returns the number of generators set. Dropout then draws the same masks for the same (seed, step),
    which is what makes an epoch replayable.
    """
    generators = seed_generators(model)
    for index, generator in enumerate(generators):
        state = generator.state
        value = np.array([derive_seed(seed, index), 0], dtype=np.dtype(str(state.dtype).split(".")[-1]))
        state.assign(value)
    return len(generators)

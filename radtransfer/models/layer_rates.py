"""Per-variable learning rates for Keras optimizers: what layer-wise learning-rate decay ("llrd:D") trains with.

A Keras 3 optimizer has one learning rate. ``with_layer_rates`` makes the same optimizer (Adam, AdamW, SGD, RMSprop,
Nadam, or any Keras optimizer class) whose ``update_step(gradient, variable, learning_rate)`` multiplies the rate by
the variable's factor, looked up by the variable's index in the list the optimizer was built on. ``update_step`` is
what every backend's apply calls per variable (TensorFlow inside ``tf.distribute``'s update, JAX and PyTorch in the
base loop), so the factors hold on all three. A decoupled weight decay (AdamW's) is scaled alike (rate × factor ×
decay); a variable of factor 1 takes exactly the plain optimizer's path. The factors are constants of the optimizer
(no extra optimizer variables), so a run folder's optimizer snapshot is unchanged and a resume is exact.

The classes live here, below training, so that a saved ``.keras`` file of a compiled model reloads with its optimizer
(``models.trained`` registers them, as it does ``_keras_compat``).
"""

from __future__ import annotations

import keras

BUILT_IN = ("Adam", "AdamW", "SGD", "RMSprop", "Nadam")


class LayerRates:
    """Mixin placed before a Keras optimizer class: per-variable factors on its learning rate.

    Args (keyword, besides the optimizer's own):
        rate_factors: {variable path: factor}; a trainable variable not named has factor 1.
    """

    def __init__(self, *args, rate_factors: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_factors = {str(path): float(factor) for path, factor in (rate_factors or {}).items()}
        self._index_factors: list[float] = []
        self._index_decays: list[bool] = []

    def build(self, variables):
        super().build(variables)
        built_on = list(self._trainable_variables)
        paths = [v.path for v in built_on]
        unknown = sorted(set(self.rate_factors) - set(paths))
        if unknown:
            raise ValueError(
                f"rate_factors name {len(unknown)} variable(s) that the optimizer is not trained on (e.g. "
                f"{unknown[0]!r}); compute them from the model being compiled, after its trainable flags are set."
            )
        self._index_factors = [self.rate_factors.get(path, 1.0) for path in paths]
        decays = self.weight_decay is not None
        self._index_decays = [decays and self._use_weight_decay(v) for v in built_on]

    def factor_of(self, variable) -> float:
        """The factor on the learning rate of a variable the optimizer was built on."""
        return self._index_factors[self._get_variable_index(variable)]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        factor = self._index_factors[index]
        if factor == 1.0:
            return super().update_step(gradient, variable, learning_rate)
        learning_rate = keras.ops.multiply(keras.ops.cast(learning_rate, variable.dtype), factor)
        if self._index_decays[index]:  # the weight decay left out of _apply_weight_decay, at this variable's rate
            decay = keras.ops.cast(self.weight_decay, variable.dtype)
            self.assign(variable, variable - variable * decay * learning_rate)
        return super().update_step(gradient, variable, learning_rate)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        super()._apply_weight_decay([v for v in variables if self.factor_of(v) == 1.0])

    def get_config(self):
        config = super().get_config()
        config["rate_factors"] = dict(self.rate_factors)
        return config


def _with_rates(base: type) -> type:
    name = f"LayerRate{base.__name__}"
    return type(name, (LayerRates, base), {"__module__": __name__, "__doc__": f"{base.__name__} with LayerRates."})


CLASSES = {
    name: keras.saving.register_keras_serializable(package="radtransfer", name=f"LayerRate{name}")(
        _with_rates(getattr(keras.optimizers, name))
    )
    for name in BUILT_IN
}


def with_layer_rates(optimizer, learning_rate: float, rate_factors: dict) -> keras.optimizers.Optimizer:
    """An optimizer with per-variable factors on its learning rate.

    Args:
        optimizer: a class name of ``BUILT_IN`` ("Adam", ...), or a Keras optimizer, whose configuration is copied
            (the copy trains; the object given keeps no state).
        learning_rate: the base learning rate (factor 1).
        rate_factors: {variable path: factor}.

    Returns:
        A new, unbuilt optimizer.
    """
    if isinstance(optimizer, str):
        return CLASSES[optimizer](learning_rate=learning_rate, rate_factors=rate_factors)
    kind = type(optimizer)
    # Keras's own class (on PyTorch, its fused variant, which never calls update_step), else the caller's subclass.
    cls = CLASSES[kind.__name__] if kind.__module__.startswith("keras.") and kind.__name__ in CLASSES else None
    cls = cls or _with_rates(kind)
    config = {**optimizer.get_config(), "learning_rate": learning_rate, "rate_factors": rate_factors}
    return cls.from_config(config)

"""Temperature scaling's numbers: the probabilities of a model whose logits are divided by one temperature T, where a
two-class threshold goes under it, and the T that fits validation data best (Guo et al. 2017).

A softmax model's log-probabilities are its logits up to a constant per image, so softmax(log p / T) is what the
model gives with its logits divided by T. T > 1 softens over-confident probabilities, T < 1 sharpens them. Each
image's ranking of classes is kept (its predicted class and the accuracy are unchanged). With two classes
p1' = sigmoid((log p1 − log p0) / T) is monotone in the image's score, so the ranking of images, hence the ROC
AUC, is kept too (one caveat: a model whose float32 softmax rounds p1 to exactly 1.0 for several images ties them
in p1 while p0 still orders them; scaling reads both columns and so can break such ties, changing the AUC computed
on p1), and a threshold t on a class's probability maps to t' = t^(1/T) / (t^(1/T) + (1 − t)^(1/T)).
With more classes the one-vs-rest rankings of images can change (class k's probability depends on the image's
other logits), so one-vs-rest AUCs may move a little (0.850 to 0.851 in the tests); a report must not promise them
unchanged.

``fit_temperature`` finds the one T that minimises the negative log-likelihood of softmax(log p / T) on validation
data. A trained model's temperature is fitted and saved by ``calibrate`` (``evaluation/temperature_scaling.py``).
"""

from __future__ import annotations

import numpy as np

from .calibration import checked_probabilities, log_probabilities, negative_log_likelihood

TEMPERATURE_BOUNDS = (0.05, 20.0)  # where fit_temperature searches


def check_temperature(temperature) -> float:
    """``temperature`` as a float, or ValueError unless it is finite and > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"Expected a temperature > 0. Received: {temperature}")
    return value


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a temperature-scaled model gives.

    Args:
        probabilities: (images, classes) softmax outputs.
        temperature: T > 0 (1 leaves them as they are, up to rounding).

    Returns:
        The scaled probabilities (float64, rows summing to 1).
    """
    temperature = check_temperature(temperature)
    logits = log_probabilities(probabilities) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def scale_threshold(threshold: float, temperature: float) -> float:
    """Where a two-class threshold on a class's probability lies on the temperature-scaled probabilities:
    t^(1/T) / (t^(1/T) + (1 − t)^(1/T)), so an image is called that class after scaling exactly when it was
    before (up to rounding at an exact tie). ``scale_threshold(t', 1 / T)`` maps it back."""
    temperature = check_temperature(temperature)
    pair = np.array([[1.0 - float(threshold), float(threshold)]])
    return float(apply_temperature(pair, temperature)[0, 1])


def fit_temperature(y_true, probabilities, bounds=TEMPERATURE_BOUNDS) -> float:
    """The temperature that minimises the validation negative log-likelihood of softmax(log p / T)."""
    from scipy.optimize import minimize_scalar

    y, p = checked_probabilities(y_true, probabilities)
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one labelled image.")
    found = minimize_scalar(
        lambda log_t: negative_log_likelihood(y, apply_temperature(p, float(np.exp(log_t)))),
        bounds=(np.log(bounds[0]), np.log(bounds[1])),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(found.x))

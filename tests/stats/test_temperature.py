"""Temperature scaling's numbers: the fit recovers a known over-confidence and lowers the NLL (checked against
scikit-learn's log_loss), keeps each image's ranking of classes (and, with two classes, the AUC), and a threshold maps
through T by its formula so no decision changes."""

import numpy as np
import pytest
from simulated import overconfident
from sklearn.metrics import log_loss, roc_auc_score

from radtransfer.stats.calibration import expected_calibration_error, negative_log_likelihood
from radtransfer.stats.temperature import apply_temperature, fit_temperature


def test_temperature_scaling_lowers_the_nll_recovers_the_sharpness_and_keeps_the_ranking():
    y, p = overconfident(4000, 4, 3.0, 3)
    t = fit_temperature(y, p)
    assert t == pytest.approx(3.0, rel=0.1)  # the model was three times too sharp
    scaled = apply_temperature(p, t)
    assert negative_log_likelihood(y, scaled) < negative_log_likelihood(y, p) - 0.05
    assert negative_log_likelihood(y, scaled) == pytest.approx(log_loss(y, scaled), abs=1e-9)
    assert (scaled.argmax(axis=1) == p.argmax(axis=1)).all()
    assert expected_calibration_error(y, scaled)[0] < expected_calibration_error(y, p)[0]
    # One-vs-rest AUC with four classes is NOT invariant (class k's probability depends on the other logits) ...
    assert roc_auc_score(y, scaled, multi_class="ovr") != roc_auc_score(y, p, multi_class="ovr")
    # ... while with two classes the ranking of images, hence AUC, is exactly kept.
    y2, p2 = overconfident(2000, 2, 3.0, 4)
    scaled2 = apply_temperature(p2, fit_temperature(y2, p2))
    assert roc_auc_score(y2, scaled2[:, 1]) == pytest.approx(roc_auc_score(y2, p2[:, 1]), abs=1e-12)


def _by_hand(raw, temperature):
    """softmax(log p / T) written out: p^(1/T) / sum p^(1/T)."""
    powered = np.asarray(raw, dtype=np.float64) ** (1.0 / temperature)
    return powered / powered.sum(axis=1, keepdims=True)


def test_a_threshold_maps_through_the_temperature_so_no_decision_changes():
    from radtransfer.stats.temperature import scale_threshold

    y, p = overconfident(2000, 2, 3.0, 6)
    for temperature in (0.4, 2.5):
        scaled = apply_temperature(p, temperature)
        np.testing.assert_allclose(scaled, _by_hand(p, temperature), atol=1e-12)
        for t in (0.1, 0.37, 0.5, 0.9):
            mapped = scale_threshold(t, temperature)
            assert mapped == pytest.approx(
                t ** (1 / temperature) / (t ** (1 / temperature) + (1 - t) ** (1 / temperature))
            )
            assert ((scaled[:, 1] >= mapped) == (p[:, 1] >= t)).all()
            assert scale_threshold(mapped, 1 / temperature) == pytest.approx(t, abs=1e-12)

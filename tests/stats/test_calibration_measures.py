"""Calibration's numbers against independent computations: the Brier score against scikit-learn and its definition,
the ECE against a direct computation and a hand example, and bad inputs refused in one line."""

import numpy as np
import pytest
from simulated import overconfident
from sklearn.metrics import brier_score_loss

from radtransfer.stats.calibration import brier_score, expected_calibration_error
from radtransfer.stats.temperature import apply_temperature


def test_brier_equals_scikit_learn_on_two_classes_and_the_definition_on_four():
    y, p = overconfident(500, 2, 2.0, 0)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p[:, 1]), abs=1e-12)
    y4, p4 = overconfident(400, 4, 1.0, 1)
    by_hand = sum(sum((p4[i, k] - (y4[i] == k)) ** 2 for k in range(4)) for i in range(len(y4))) / len(y4)
    assert brier_score(y4, p4) == pytest.approx(by_hand, abs=1e-12)


def test_ece_equals_a_direct_computation_and_a_hand_example():
    y, p = overconfident(1000, 3, 2.5, 2)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    ece_by_hand = 0.0
    for m in range(15):
        lo, hi = m / 15, (m + 1) / 15
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece_by_hand += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    ece, table = expected_calibration_error(y, p)
    assert ece == pytest.approx(ece_by_hand, abs=1e-12)
    assert sum(b.count for b in table) == 1000 and len(table) == 15
    # Four images at confidence 0.9, three right: |0.75 - 0.9| = 0.15; exact ties at a bin edge go to the lower bin.
    p_hand = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error([0, 0, 0, 1], p_hand)[0] == pytest.approx(0.15)
    edge = expected_calibration_error([0], np.array([[2 / 3, 1 / 3]]))[1]
    assert edge[9].count == 1  # 2/3 = 10/15 lies in (9/15, 10/15]


def test_bad_inputs_say_what_was_expected():
    with pytest.raises(ValueError, match="shape"):
        brier_score([0, 1], np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="temperature > 0"):
        apply_temperature(np.ones((1, 2)) / 2, 0.0)

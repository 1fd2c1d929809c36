"""The AUC: intervals that respect patients, DeLong's test, the paired comparison, the rank form: checked against
analytic truths and direct textbook implementations, not against radtransfer's own output."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from simulated import clustered
from sklearn.metrics import roc_auc_score

from radtransfer import stats
from radtransfer.stats import auc


def test_patient_bootstrap_is_wider_than_image_bootstrap_on_multislice_data():
    labels, probabilities, groups, _ = clustered(np.random.default_rng(0))
    by_image = stats.bootstrap_auc_ci(labels, probabilities, groups=None, n=300)
    by_patient = stats.bootstrap_auc_ci(labels, probabilities, groups=groups, n=300)
    assert by_image["unit"] == "image" and by_patient["unit"] == "patient" and by_patient["n_units"] == 30
    assert by_patient["method"] == "BCa"
    assert (by_patient["high"] - by_patient["low"]) > 3 * (by_image["high"] - by_image["low"])


def test_patient_level_intervals_cover_the_true_auc():
    """Simulated 95% intervals must cover the analytic AUC about 95% of the time; resampling images
    (the first wave's method) covers it far less often on the same data."""
    rng = np.random.default_rng(1)
    covered_patient, covered_image, sims = 0, 0, 60
    for _ in range(sims):
        labels, probabilities, groups, truth = clustered(rng)
        patient = stats.bootstrap_auc_ci(labels, probabilities, groups=groups, n=200, seed=int(rng.integers(1e9)))
        image = stats.bootstrap_auc_ci(labels, probabilities, groups=None, n=200, seed=int(rng.integers(1e9)))
        covered_patient += patient["low"] <= truth <= patient["high"]
        covered_image += image["low"] <= truth <= image["high"]
    assert covered_patient / sims >= 0.85
    assert covered_image / sims <= 0.70


def _delong_direct(positives, a, b):
    """DeLong et al. (1988) from the definition: placement values by O(m·n) comparison."""
    pos, neg = np.flatnonzero(positives), np.flatnonzero(~positives)
    m, n = len(pos), len(neg)

    def psi(x, y):
        return (x > y) + 0.5 * (x == y)

    v10, v01, aucs = [], [], []
    for s in (a, b):
        table = psi(s[pos][:, None], s[neg][None, :])
        aucs.append(table.mean())
        v10.append(table.mean(axis=1))
        v01.append(table.mean(axis=0))
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (aucs[0] - aucs[1]) / math.sqrt(var)
    return aucs, 2 * sps.norm.sf(abs(z))


def test_delong_matches_the_direct_definition_with_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150).astype(bool)
    a = np.round(0.8 * y + rng.normal(0, 1, 150), 1)  # rounded: ties within and across classes
    b = np.round(0.4 * y + 0.5 * a + rng.normal(0, 1, 150), 1)
    result = stats.delong_test(y, a, b)
    (auc_a, auc_b), p = _delong_direct(y, a, b)
    assert result["auc_a"] == pytest.approx(auc_a) and result["auc_b"] == pytest.approx(auc_b)
    assert result["p"] == pytest.approx(p, rel=1e-9)
    from sklearn.metrics import roc_auc_score

    assert result["auc_a"] == pytest.approx(roc_auc_score(y, a))


def _paired_patient_bootstrap(labels, a, b, groups, n, seed):
    """AUC(a) − AUC(b) over resampled patients, written from the definition with scikit-learn's AUC: patients in
    sorted id order, one stratum per class (a synthetic patient has one label), each resampled with replacement
    by ``rng.choice`` in that order; P is twice the smaller share of differences on either side of zero."""
    from sklearn.metrics import roc_auc_score

    patients = sorted(set(groups))
    images = {patient: np.flatnonzero(groups == patient) for patient in patients}
    label = np.array([labels[images[patient][0]] for patient in patients])
    strata = [np.flatnonzero(label == c) for c in sorted(set(label))]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        chosen = np.concatenate([rng.choice(stratum, size=len(stratum), replace=True) for stratum in strata])
        index = np.concatenate([images[patients[u]] for u in chosen])
        diffs.append(roc_auc_score(labels[index], a[index, 1]) - roc_auc_score(labels[index], b[index, 1]))
    diffs = np.array(diffs)
    # Davison & Hinkley's (extreme + 1) / (B + 1), the observed sample counted as a replicate
    extreme = min(np.sum(diffs <= 0), np.sum(diffs >= 0))
    return min(1.0, 2 * (extreme + 1) / (len(diffs) + 1)), np.quantile(diffs, [0.025, 0.975])


def test_compare_aucs_uses_a_patient_bootstrap_for_multislice_data():
    labels, probabilities, groups, _ = clustered(np.random.default_rng(4), patients=16, slices=4)
    other = np.clip(probabilities + np.random.default_rng(5).normal(0, 0.1, probabilities.shape), 0, 1)
    assert stats.compare_aucs(labels, probabilities, other)["method"] == "delong"
    by_patient = stats.compare_aucs(labels, probabilities, other, groups=groups, n=300)
    assert by_patient["method"] == "paired_bootstrap" and by_patient["unit"] == "patient"
    worse = np.clip(probabilities + np.random.default_rng(5).normal(0, 0.5, probabilities.shape), 0, 1)
    for candidate in (other, worse):  # P is 1 (capped) for the first, about 0.33 for the second
        result = stats.compare_aucs(labels, probabilities, candidate, groups=groups, n=300)
        p, ci = _paired_patient_bootstrap(labels, probabilities, candidate, groups, n=300, seed=0)
        assert result["p"] == pytest.approx(p, abs=1e-12) and result["resamples"] == 300
        np.testing.assert_allclose(result["ci"], ci, atol=1e-12)
    assert 0.2 < result["p"] < 0.5


def test_auc_equals_scikit_learn_with_ties_and_more_classes():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1), 1)
    assert stats.auc_score(y, np.stack([1 - p, p], 1)) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    y4 = rng.integers(0, 4, 300)
    logits = rng.normal(size=(300, 4)) + np.eye(4)[y4]
    p4 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert stats.auc_score(y4, p4) == pytest.approx(roc_auc_score(y4, p4, multi_class="ovr"), abs=1e-12)
    assert math.isnan(stats.auc_score(y4 % 3, p4))  # a class absent: undefined, not a silent number


def test_the_bootstraps_ranks_equal_scipys_rankdata_with_ties_and_nan():
    """The AUC's own midranks (scipy's rankdata costs ~0.8 ms a call in a 1000-resample bootstrap) are scipy's,
    exactly, on tied integers, float32 and float64; a NaN score gives a NaN AUC as it did through rankdata."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    for i in range(300):
        n = int(rng.integers(1, 200))
        x = rng.integers(0, int(rng.integers(1, 30)), n).astype(float) if i % 3 == 0 else rng.random(n)
        x = x.astype(np.float32) if i % 3 == 1 else x
        np.testing.assert_array_equal(auc._average_ranks(x), rankdata(x))
    y = np.array([1, 0, 1, 0])
    assert math.isnan(stats.auc_score(y, np.array([[0.9, 0.1], [0.5, np.nan], [0.2, 0.8], [0.6, 0.4]])))


def test_weighted_aucs_equal_sklearn_with_sample_weights():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 50).astype(bool)
    scores = np.round(rng.uniform(0, 1, 50), 1)  # many ties
    weights = rng.integers(0, 4, (20, 50)).astype(float)
    got = auc.weighted_aucs(y, scores, weights)
    expected = [roc_auc_score(y, scores, sample_weight=w) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert np.isnan(auc.weighted_aucs(y, scores, (~y)[None].astype(float)))[0]  # no positive weight
    # More classes: the macro one-vs-rest AUC, as stats.auc_score, under unit weights.
    labels = rng.integers(0, 3, 60)
    probabilities = rng.dirichlet(np.ones(3), 60)
    got = auc.weighted_auc_score(labels, probabilities, np.ones((1, 60)))[0]
    assert got == pytest.approx(auc.auc_score(labels, probabilities), rel=1e-12)
    assert got == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"), rel=1e-12)


def test_the_vectorised_bootstrap_is_the_resample_by_resample_bootstrap():
    """bootstrap_auc_ci and the operating point's intervals compute every resample at once from draw counts; the
    same interval comes from scipy's bootstrap calling the AUC's definition (pairs counted, ties one half) or the share
    on each resample's images. BCa counts resamples equal to the estimate, so the values must agree to the last bit:
    the definition gives the same rational, rounded once (scikit-learn's trapezoids differ in the last bits)."""

    def by_pairs(index):
        scores, positive = probabilities[index, 1], labels[index] == 1
        above = scores[positive][:, None] - scores[~positive][None, :]
        return ((above > 0).sum() + 0.5 * (above == 0).sum()) / (positive.sum() * (~positive).sum())

    from radtransfer.stats.bootstrap import bootstrap_operating_point_ci, stratified_bootstrap_ci

    rng = np.random.default_rng(8)
    labels, probabilities, groups, _ = clustered(rng, patients=24, slices=3)
    labels[:3] = 1 - labels[:3]  # a patient of mixed labels
    for unit_groups in (groups, None):
        fast = stats.bootstrap_auc_ci(labels, probabilities, groups=unit_groups, n=300, seed=4)
        slow = stratified_bootstrap_ci(labels, by_pairs, unit_groups, 300, 4)
        assert fast["method"] == slow["method"] == "BCa"
        assert (fast["low"], fast["high"]) == (slow["low"], slow["high"])
        called = probabilities[:, 1] >= 0.5
        fast = bootstrap_operating_point_ci(labels, called, groups=unit_groups, n=300, seed=4)["specificity"]
        slow = stratified_bootstrap_ci(labels, lambda i: 1.0 - np.mean(called[i][labels[i] == 0]), unit_groups, 300, 4)
        assert (fast["low"], fast["high"]) == (slow["low"], slow["high"])


def test_a_bootstrap_p_is_never_zero_when_every_resample_favours_one_model():
    # a ranks every case perfectly and b at chance: no resample's difference reaches 0, and B resamples can support
    # at most P = 2 / (B + 1) two-sided (Davison & Hinkley 1997), not P = 0
    rng = np.random.default_rng(0)
    patients, y = np.repeat(np.arange(20), 2), np.repeat(np.arange(20) % 2, 2)
    a = np.stack([1 - y * 0.9 - 0.05, y * 0.9 + 0.05], axis=1)
    b = rng.uniform(0, 1, (40, 1)) * np.array([[-1, 1]]) + np.array([[1, 0]])
    result = stats.paired_bootstrap_test(y, a, b, groups=patients, n=400, seed=1)
    assert result["resamples"] == 400 and result["ci"][0] > 0
    assert result["p"] == 2 / 401
    assert stats.bootstrap_p(0, 400) == 1 / 401 and stats.bootstrap_p(400, 400) == 1.0

"""metrics.py against scikit-learn, an independent implementation of the same definitions."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from resnet8_onnx import metrics as m

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _sk_auc(y_true: np.ndarray, scores: np.ndarray, c: int) -> float:
    """scikit-learn's binary AUC of class c, NaN (silently) when undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skm.roc_auc_score(y_true == c, scores[:, c]))


def _sk_top_k_lowest_index_first(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """scikit-learn's top-k with our tie rule: it prefers the higher index among equal scores,
    so mirror the class order (column c becomes C-1-c) and it prefers the lower one."""
    c = scores.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= number of classes: "meaningless", still 1.0
        return float(
            skm.top_k_accuracy_score(c - 1 - y_true, scores[:, ::-1], k=k, labels=np.arange(c))
        )


def _random_case(seed: int, n: int, c: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Labels and logits correlated with them, so accuracy is far from both 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) * 2.0
    logits[np.arange(n), y] += rng.normal(1.5, 1.0, n)
    return y, logits


def _assert_matches_sklearn(y: np.ndarray, scores: np.ndarray, names: list[str]) -> None:
    res = m.compute_metrics(y, scores, names)
    c = len(names)
    labels = np.arange(c)
    probs = m.softmax(scores) if res.softmax_applied_for_auc else scores
    y_pred = scores.argmax(axis=1)

    assert res.total == y.size
    assert res.accuracy == pytest.approx(skm.accuracy_score(y, y_pred), abs=1e-15)
    assert res.correct == int(skm.accuracy_score(y, y_pred, normalize=False))
    np.testing.assert_array_equal(
        res.confusion_matrix, skm.confusion_matrix(y, y_pred, labels=labels)
    )
    p, r, f, s = skm.precision_recall_fscore_support(
        y, y_pred, labels=labels, zero_division=0
    )
    for i, cm in enumerate(res.per_class):
        assert (cm.name, cm.index) == (names[i], i)
        assert cm.support == s[i]
        assert cm.accuracy == cm.recall
        # A class without images has no recall (scikit-learn's zero_division=0 says 0); one
        # neither labelled nor predicted has no precision or F1 either.
        assert (cm.recall is None) == (s[i] == 0)
        assert (cm.precision is None) == (cm.f1 is None) == (s[i] == 0 and cm.predicted == 0)
        assert (cm.recall or 0.0) == pytest.approx(r[i], abs=1e-12)
        assert (cm.precision or 0.0) == pytest.approx(p[i], abs=1e-12)
        assert (cm.f1 or 0.0) == pytest.approx(f[i], abs=1e-12)
        expected_auc = _sk_auc(y, probs, i)
        if np.isnan(expected_auc):
            assert cm.auc is None
        else:
            assert cm.auc == pytest.approx(expected_auc, abs=1e-12)
    # Macro averages: over the classes in y_true ∪ y_pred, scikit-learn's default labels.
    for ours, theirs in ((res.macro_f1, skm.f1_score), (res.macro_recall, skm.recall_score),
                         (res.macro_precision, skm.precision_score)):
        assert ours == pytest.approx(theirs(y, y_pred, average="macro", zero_division=0),
                                     abs=1e-12)
    assert res.to_dict()["macro_classes"] == len(np.union1d(y, y_pred))
    if c > 5:
        assert res.top5_accuracy == pytest.approx(_sk_top_k_lowest_index_first(y, scores, 5))


# --- softmax and output-kind detection ---------------------------------------------------


def test_softmax_rows_sum_to_one_and_preserve_order() -> None:
    _, logits = _random_case(0, 50)
    p = m.softmax(logits.astype(np.float32))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(p.argmax(axis=1), logits.argmax(axis=1))
    naive = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(p, naive, rtol=1e-6)


def test_softmax_is_stable_for_huge_logits() -> None:
    p = m.softmax(np.array([[1000.0, 1001.0, -1000.0], [-5e4, -5e4, -5e4]]))
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p[0, :2], [1 / (1 + np.e), np.e / (1 + np.e)])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)


def test_softmax_one_dimensional() -> None:
    np.testing.assert_allclose(m.softmax(np.zeros(4)), [0.25] * 4)


def test_looks_like_probabilities() -> None:
    _, logits = _random_case(1, 20)
    assert m.looks_like_probabilities(m.softmax(logits))
    assert m.looks_like_probabilities(m.softmax(logits).astype(np.float32))
    assert not m.looks_like_probabilities(logits)
    bad_sum = m.softmax(logits) * 0.9
    assert not m.looks_like_probabilities(bad_sum)
    negative = np.array([[1.2, -0.2], [0.5, 0.5]])
    assert not m.looks_like_probabilities(negative)
    assert not m.looks_like_probabilities(np.array([0.5, 0.5]))  # not a batch
    assert not m.looks_like_probabilities(np.array([[np.nan, 1.0]]))


def test_quantised_probabilities_are_still_probabilities() -> None:
    # An int8 softmax dequantised with scale 1/256: rows miss 1 by up to ~0.02.
    y, logits = _random_case(14, 3000)
    quantised = np.round(m.softmax(logits) * 256) / 256
    assert np.abs(quantised.sum(axis=1) - 1).max() > 1e-3
    assert m.looks_like_probabilities(quantised)
    res = m.compute_metrics(y, quantised.astype(np.float32), NAMES)
    assert (res.output_kind, res.softmax_applied_for_auc) == ("probabilities", False)
    _assert_matches_sklearn(y, quantised, NAMES)
    # The slack is per grid step: coarse non-negative scores that do not sum to 1 are not.
    assert not m.looks_like_probabilities(np.round(m.softmax(logits) * 0.8 * 256) / 256)
    assert not m.looks_like_probabilities(np.round(logits))


# --- confusion matrix and top-k ------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 1), (1, 37), (2, 500), (3, 4000)])
def test_confusion_matrix_matches_sklearn(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 10, n), rng.integers(0, 10, n)
    cm = m.confusion_matrix(y, p, 10)
    assert cm.dtype == np.int64
    assert cm.shape == (10, 10)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, p, labels=np.arange(10)))
    assert cm.sum() == n


def test_confusion_matrix_rows_are_true_classes() -> None:
    cm = m.confusion_matrix([0, 0, 2], [1, 1, 2], 3)
    assert cm[0, 1] == 2
    assert cm[1, 0] == 0
    assert cm[2, 2] == 1


@pytest.mark.parametrize(("seed", "n"), [(0, 10), (1, 300), (2, 3000)])
@pytest.mark.parametrize("k", [1, 2, 5, 9, 10])
def test_top_k_matches_sklearn_without_ties(seed: int, n: int, k: int) -> None:
    y, logits = _random_case(seed, n)
    ours = m.top_k_accuracy(y, logits, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k=10: sklearn warns the score is trivially 1.0
        expected = skm.top_k_accuracy_score(y, logits, k=k, labels=np.arange(10))
    assert ours == pytest.approx(expected)
    if k == 10:
        assert ours == 1.0


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_ties_rank_lower_class_index_first(k: int) -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 10, 2000)
    scores = rng.integers(0, 3, (2000, 10)).astype(np.float32)  # ties everywhere
    ours = m.top_k_accuracy(y, scores, k)
    assert ours == pytest.approx(_sk_top_k_lowest_index_first(y, scores, k))
    if k == 1:  # same rule as argmax, so top-1 is the accuracy
        assert ours == pytest.approx(np.mean(scores.argmax(axis=1) == y))


def test_top_k_all_scores_equal() -> None:
    y = np.arange(10)
    scores = np.ones((10, 10))
    # Ties go to lower indices: class c ranks c-th, so it is a top-k hit iff c < k.
    for k in (1, 3, 10):
        assert m.top_k_accuracy(y, scores, k) == pytest.approx(k / 10)


def test_top_k_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k must be"):
        m.top_k_accuracy([0], [[0.5, 0.5]], 0)


# --- ROC AUC -------------------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 20), (1, 200), (2, 5000)])
def test_roc_auc_matches_sklearn(seed: int, n: int) -> None:
    y, logits = _random_case(seed, n)
    probs = m.softmax(logits)
    per_class, macro = m.roc_auc_ovr(y, probs)
    if len(np.unique(y)) == 10:
        assert macro == pytest.approx(
            skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"), abs=1e-12
        )
    for c, auc in enumerate(per_class):
        expected = _sk_auc(y, probs, c)
        assert (auc is None) == bool(np.isnan(expected))
        if auc is not None:
            assert auc == pytest.approx(expected, abs=1e-12)


def test_roc_auc_ties_use_average_ranks() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 3000)
    scores = np.round(rng.random((3000, 4)), 1)  # 11 distinct values: heavy ties
    per_class, macro = m.roc_auc_ovr(y, scores)
    expected = [_sk_auc(y, scores, c) for c in range(4)]
    np.testing.assert_allclose(per_class, expected, rtol=0, atol=1e-12)
    assert macro == pytest.approx(np.mean(expected), abs=1e-12)


def test_roc_auc_hand_computed_tie() -> None:
    # Positive scored 0.5 tied with one negative at 0.5 and above one at 0.1: (1 + 0.5) / 2.
    per_class, _ = m.roc_auc_ovr([0, 1, 1], [[0.5, 0.5], [0.5, 0.5], [0.1, 0.9]])
    assert per_class[0] == pytest.approx(0.75)


def test_roc_auc_class_absent_is_none_and_left_out_of_macro() -> None:
    y, logits = _random_case(4, 400, c=5)
    y[y == 2] = 3  # class 2 has no positive sample
    probs = m.softmax(logits)
    per_class, macro = m.roc_auc_ovr(y, probs)
    assert per_class[2] is None
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(skm.roc_auc_score(y == 2, probs[:, 2]))
    defined = [a for a in per_class if a is not None]
    assert len(defined) == 4
    assert macro == pytest.approx(np.mean(defined))
    assert macro == pytest.approx(np.mean([_sk_auc(y, probs, c) for c in (0, 1, 3, 4)]))


def test_roc_auc_single_label_has_no_auc_at_all() -> None:
    per_class, macro = m.roc_auc_ovr([1, 1, 1], [[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    assert per_class == [None, None]  # class 0: no positive; class 1: no negative
    assert macro is None


# --- compute_metrics -----------------------------------------------------------------------


@pytest.mark.parametrize(("seed", "n"), [(0, 10), (1, 100), (2, 1000), (3, 10000)])
def test_compute_metrics_matches_sklearn_on_random_logits(seed: int, n: int) -> None:
    y, logits = _random_case(seed, n)
    _assert_matches_sklearn(y, logits, NAMES)


@pytest.mark.parametrize("seed", [5, 6])
def test_compute_metrics_matches_sklearn_on_float32_probabilities(seed: int) -> None:
    y, logits = _random_case(seed, 2000)
    probs = m.softmax(logits).astype(np.float32)
    res = m.compute_metrics(y, probs, NAMES)
    assert res.output_kind == "probabilities"
    assert not res.softmax_applied_for_auc
    _assert_matches_sklearn(y, probs, NAMES)


def test_logits_and_their_softmax_give_the_same_metrics() -> None:
    y, logits = _random_case(8, 1500)
    from_logits = m.compute_metrics(y, logits, NAMES)
    from_probs = m.compute_metrics(y, m.softmax(logits), NAMES)
    assert (from_logits.output_kind, from_logits.softmax_applied_for_auc) == ("logits", True)
    assert (from_probs.output_kind, from_probs.softmax_applied_for_auc) == ("probabilities", False)
    np.testing.assert_array_equal(from_logits.confusion_matrix, from_probs.confusion_matrix)
    assert from_logits.top5_accuracy == from_probs.top5_accuracy
    assert from_logits.macro_auc == pytest.approx(from_probs.macro_auc, abs=1e-12)
    # Without the softmax the AUC of raw logits differs: the flag is not decorative.
    _, raw_macro = m.roc_auc_ovr(y, logits)
    assert raw_macro != pytest.approx(from_logits.macro_auc, abs=1e-6)


def test_output_kind_can_be_forced_and_is_validated() -> None:
    y, logits = _random_case(9, 100)
    probs = m.softmax(logits)
    forced = m.compute_metrics(y, probs, NAMES, output_kind="logits")
    assert forced.softmax_applied_for_auc
    with pytest.raises(ValueError, match="output_kind"):
        m.compute_metrics(y, probs, NAMES, output_kind="scores")


def test_class_never_predicted_has_zero_precision() -> None:
    y, logits = _random_case(10, 800)
    logits[:, 4] = -1e3  # nobody is predicted "deer"
    res = m.compute_metrics(y, logits, NAMES)
    deer = res.per_class[4]
    assert deer.predicted == 0
    assert deer.correct == 0
    assert (deer.precision, deer.recall, deer.f1) == (0.0, 0.0, 0.0)
    assert deer.support > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0 must not warn in sklearn either
        _assert_matches_sklearn(y, logits, NAMES)


def test_class_absent_from_labels() -> None:
    y, logits = _random_case(11, 800)
    y[y == 7] = 0  # no "horse" in y_true, but the model still predicts it sometimes
    res = m.compute_metrics(y, logits, NAMES)
    horse = res.per_class[7]
    assert horse.support == 0
    assert horse.predicted > 0
    # No images: no accuracy or recall; every prediction of it is wrong: precision and F1 0.
    assert (horse.precision, horse.recall, horse.accuracy, horse.f1) == (0.0, None, None, 0.0)
    assert res.absent_classes == ["horse"]
    assert horse.auc is None
    assert res.macro_auc == pytest.approx(
        np.mean([c.auc for c in res.per_class if c.auc is not None])
    )
    _assert_matches_sklearn(y, logits, NAMES)


def test_perfect_classifier() -> None:
    y = np.tile(np.arange(10), 30)
    probs = np.eye(10)[y] * 0.9 + 0.01
    res = m.compute_metrics(y, probs, NAMES)
    assert res.output_kind == "probabilities"
    assert (res.accuracy, res.correct, res.top5_accuracy) == (1.0, 300, 1.0)
    assert res.macro_auc == 1.0
    assert res.macro_f1 == 1.0
    assert all(c.precision == c.recall == c.f1 == c.auc == 1.0 for c in res.per_class)
    np.testing.assert_array_equal(res.confusion_matrix, np.diag([30] * 10))
    _assert_matches_sklearn(y, probs, NAMES)


def test_all_wrong_classifier() -> None:
    y = np.tile(np.arange(10), 30)
    probs = np.eye(10)[(y + 1) % 10] * 0.9 + 0.01  # always the next class, very sure
    res = m.compute_metrics(y, probs, NAMES)
    assert (res.accuracy, res.correct, res.macro_f1) == (0.0, 0, 0.0)
    assert all(c.correct == 0 and c.precision == 0.0 for c in res.per_class)
    # The true class scores 0.01 (tied with 8 others, lower than the wrong one): AUC < 0.5.
    assert res.macro_auc is not None
    assert res.macro_auc < 0.5
    _assert_matches_sklearn(y, probs, NAMES)


def test_argmax_ties_are_counted_and_go_to_the_lowest_index() -> None:
    scores = np.array([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]])
    res = m.compute_metrics([1, 2, 2, 0], scores, ["a", "b", "c"])
    assert res.argmax_ties == 1  # only row 0 has a tie at the top
    assert res.confusion_matrix[1][0] == 1  # row 0 (true b) predicted a, the lower index
    assert res.top5_accuracy is None  # 3 classes: top-5 is meaningless


def test_compute_metrics_to_dict_is_json_ready() -> None:
    y, logits = _random_case(12, 300)
    y[y == 3] = 1
    d = m.compute_metrics(y, logits, NAMES).to_dict()
    text = json.dumps(d, allow_nan=False)  # no NaN, no numpy scalars
    back = json.loads(text)
    assert back["total"] == 300
    assert isinstance(back["accuracy"], float)
    assert isinstance(back["correct"], int)
    assert len(back["per_class"]) == 10
    assert back["per_class"][3]["auc"] is None
    assert back["per_class"][3]["total"] == back["per_class"][3]["support"] == 0
    assert back["confusion_matrix"] == [[int(v) for v in row] for row in
                                        m.confusion_matrix(y, logits.argmax(1), 10)]
    assert {"name", "index", "accuracy", "correct", "total", "precision", "recall", "f1",
            "support", "auc"} <= set(back["per_class"][0])
    assert {"accuracy", "correct", "total", "top5_accuracy", "macro_auc", "macro_f1",
            "output_kind", "softmax_applied_for_auc", "confusion_matrix",
            "per_class"} <= set(back)


def test_compute_metrics_builds_the_records_metrics_block() -> None:
    """One shape: the block a report holds, not a second type bridged by ``.record()``; its
    matrix is plain ints, a copy that changing leaves the labels' counts alone."""
    from resnet8_onnx.records import ClassRow, Metrics

    y, logits = _random_case(13, 50)
    res = m.compute_metrics(y, logits, NAMES)
    assert isinstance(res, Metrics)
    assert all(isinstance(c, ClassRow) for c in res.per_class)
    assert Metrics.from_dict(json.loads(json.dumps(res.to_dict()))) == res
    expected = skm.confusion_matrix(y, logits.argmax(1), labels=np.arange(10))
    assert res.confusion_matrix == expected.tolist()
    assert [c.total for c in res.per_class] == expected.sum(axis=1).tolist()


@pytest.mark.parametrize(
    ("y", "scores", "names", "message"),
    [
        ([0, 1], [[0.5, 0.5]], ["a", "b"], "rows"),
        ([0, 2], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "outside"),
        ([0, -1], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "outside"),
        ([0, 1], [[np.nan, 0.5], [0.5, 0.5]], ["a", "b"], "non-finite"),
        ([0, 1], [[0.5, 0.5], [0.5, 0.5]], ["a"], "class names"),
        ([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "integer"),
        ([], np.zeros((0, 2)), ["a", "b"], "zero samples"),
        ([[0], [1]], [[0.5, 0.5], [0.5, 0.5]], ["a", "b"], "one-dimensional"),
    ],
)
def test_compute_metrics_rejects_inconsistent_input(y, scores, names, message) -> None:
    with pytest.raises(ValueError, match=message):
        m.compute_metrics(np.asarray(y), np.asarray(scores, dtype=float), names)


def test_metrics_module_does_not_import_sklearn() -> None:
    import subprocess

    code = ("import sys, resnet8_onnx.metrics; "
            "sys.exit(any(n.split('.')[0] in ('sklearn', 'scipy', 'matplotlib', 'tensorflow') "
            "for n in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- property-based: random labels and tie-heavy scores against scikit-learn ---------------


@st.composite
def _cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    c = draw(st.integers(3, 7))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    levels = draw(st.sampled_from([2, 4, 1000]))  # few levels: many ties
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    scores = rng.integers(0, levels, (n, c)).astype(np.float64) / levels
    return y, scores


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_property_compute_metrics_agrees_with_sklearn(case) -> None:
    y, scores = case
    names = [f"c{i}" for i in range(scores.shape[1])]
    _assert_matches_sklearn(y, scores, names)
    per_class, _ = m.roc_auc_ovr(y, scores)  # raw tied scores, no softmax in between
    for c, auc in enumerate(per_class):
        expected = _sk_auc(y, scores, c)
        assert (auc is None) == bool(np.isnan(expected))
        assert auc is None or auc == pytest.approx(expected, abs=1e-12)
    for k in range(1, scores.shape[1] + 1):
        assert m.top_k_accuracy(y, scores, k) == pytest.approx(
            _sk_top_k_lowest_index_first(y, scores, k)
        )


# --- accuracy thresholds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("correct", "total", "threshold", "meets"),
    [(8719, 10_000, 0.8719, True), (8718, 10_000, 0.8719, False),
     (29, 100, 0.29, True),  # 0.29 * 100 is 28.999999999999996 in floats
     (57, 100, 0.57, True), (56, 100, 0.57, False), (895, 1000, 0.895, True),
     (0, 5, 0.0, True), (5, 5, 1.0, True), (4, 5, 1.0, False), (1, 3, 1 / 3, True)],
)
def test_meets_accuracy_is_exact(correct: int, total: int, threshold: float,
                                 meets: bool) -> None:
    assert m.meets_accuracy(correct, total, threshold) is meets


def test_class_neither_labelled_nor_predicted_is_left_out_of_macro_averages() -> None:
    y, logits = _random_case(12, 800)
    y[y == 6] = 0
    logits[:, 6] = -1e3  # no "frog" images, and the model never predicts frog
    res = m.compute_metrics(y, logits, NAMES)
    frog = res.per_class[6]
    assert (frog.support, frog.predicted) == (0, 0)
    assert (frog.accuracy, frog.precision, frog.recall, frog.f1, frog.auc) == (None,) * 5
    assert res.to_dict()["macro_classes"] == 9
    y_pred = logits.argmax(axis=1)
    assert res.macro_f1 == pytest.approx(
        skm.f1_score(y, y_pred, average="macro", zero_division=0), abs=1e-12)
    assert res.macro_f1 == pytest.approx(np.mean([c.f1 for c in res.per_class if c.index != 6]))

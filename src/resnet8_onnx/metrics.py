"""Classification metrics as pure numpy functions: no I/O, no printing, no scikit-learn.

Why hand-written rather than ``sklearn.metrics``: the tests check every number here *against*
scikit-learn, which only proves something if the two are independent implementations, and the
evaluation path starts faster without importing scikit-learn. Conventions follow scikit-learn
so results can be compared one to one:

* **Zero division** (``zero_division=0``): precision of a class that is never predicted but
  has images is ``0.0``, never NaN. A class without images (absent from ``y_true``) has no
  per-class accuracy or recall: both are ``None`` (shown as "—"); its precision and F1 are
  ``0.0`` when the model predicts it (every such prediction is wrong) and ``None`` when not.
* **Macro averages** (precision, recall, F1) are over the classes present in ``y_true`` or
  the predictions — scikit-learn's default label set for ``average="macro"`` — with
  ``zero_division=0``, so they equal scikit-learn's figures. A class absent from both (an
  empty class folder the model never predicts) does not pull the average down; one the
  model predicts without having images counts with recall and F1 of 0.
* **Top-1 prediction** is ``argmax`` of the scores; when several classes share the top score
  the lowest class index wins (numpy's rule). ``argmax_ties`` counts how often that happened,
  which matters for quantised models whose outputs tie often.
* **Top-k ties**: a sample is a top-k hit when its true class ranks among the first ``k``
  after sorting by score descending, equal scores ordered by ascending class index. This is
  the same rule as the top-1 prediction, so ``top_k_accuracy(..., k=1)`` always equals the
  accuracy. scikit-learn's ``top_k_accuracy_score`` breaks ties the other way (highest index
  first); without ties the two agree exactly.
* **ROC AUC** is one-vs-rest per class, computed exactly as the Mann–Whitney U statistic with
  average ranks for tied scores, which equals ``sklearn.metrics.roc_auc_score`` on the
  binarised labels. A class with no positive (absent from ``y_true``) or no negative sample has
  no AUC: it is reported as ``None`` (scikit-learn returns NaN with a warning) and the macro
  AUC averages the classes that have one. MLCommons reports the same per-class/macro AUC for
  this benchmark (its script approximates the curve by thresholds; this is the exact value).
* **Logits**: AUC needs comparable per-class scores, so when the model outputs logits they
  are turned into probabilities with a softmax first and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from resnet8_onnx.records import ClassRow, Metrics

OUTPUT_KINDS = ("probabilities", "logits")


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, shifted by the row maximum so large logits cannot overflow."""
    z = np.asarray(x, dtype=np.float64)
    if z.ndim == 1:
        z = z[np.newaxis, :]
        squeeze = True
    else:
        squeeze = False
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out = e / e.sum(axis=-1, keepdims=True)
    return out[0] if squeeze else out


def looks_like_probabilities(scores: np.ndarray, atol: float = 1e-3) -> bool:
    """Whether every row is non-negative and sums to 1 within ``atol``.

    Used to tell a softmax-headed model from one that outputs logits, since the model file
    does not always say which it is. Quantised outputs (an int8 softmax dequantised onto a
    1/256 grid) round every element, so their rows miss 1 by up to half a grid step per
    class; that slack is added to ``atol``. For float outputs the grid step is the smallest
    gap between distinct values, so the slack is negligible.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.size == 0 or not np.all(np.isfinite(s)):
        return False
    if s.min() < -atol:
        return False
    deviation = float(np.abs(s.sum(axis=1) - 1.0).max())
    if deviation <= atol:
        return True
    values = np.unique(s)  # only now: sorting is the slow part
    step = float(np.diff(values).min()) if values.size > 1 else 0.0
    return deviation <= atol + s.shape[1] * step / 2


def _labels(y: Any, num_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{what} must hold integer class indices, got dtype {arr.dtype}")
    integral = np.issubdtype(arr.dtype, np.integer) or bool(np.all(np.mod(arr, 1) == 0))
    if not integral:
        raise ValueError(f"{what} must hold integer class indices")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{what} has class indices outside 0..{num_classes - 1}: "
            f"min {arr.min()}, max {arr.max()}"
        )
    return arr


def _scores(scores: Any, n: int | None = None) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 2:
        raise ValueError(f"scores must be two-dimensional (samples, classes), got shape {s.shape}")
    if n is not None and s.shape[0] != n:
        raise ValueError(f"scores have {s.shape[0]} rows but there are {n} labels")
    if s.shape[1] < 2:
        raise ValueError(f"scores need at least two classes, got {s.shape[1]}")
    if not np.all(np.isfinite(s)):
        bad = int(np.count_nonzero(~np.isfinite(s)))
        raise ValueError(f"scores contain {bad} non-finite values (NaN or infinity)")
    return s


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; row = true class, column = predicted class (sklearn's layout)."""
    t = _labels(y_true, num_classes, "y_true")
    p = _labels(y_pred, num_classes, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    flat = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _true_class_rank(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """0-based rank of each sample's true class; ties ordered by ascending class index."""
    true_score = scores[np.arange(scores.shape[0]), y_true][:, np.newaxis]
    cls = np.arange(scores.shape[1])[np.newaxis, :]
    ahead = (scores > true_score) | ((scores == true_score) & (cls < y_true[:, np.newaxis]))
    return ahead.sum(axis=1)


def top_k_accuracy(y_true: Any, scores: Any, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties: equal scores are ranked by ascending class index (see the module docstring), so
    ``k=1`` agrees with ``argmax``.
    """
    s = _scores(scores)
    t = _labels(y_true, s.shape[1], "y_true")
    if t.size != s.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} rows but there are {t.size} labels")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if t.size == 0:
        raise ValueError("top-k accuracy of zero samples is undefined")
    return float(np.mean(_true_class_rank(t, s) < k))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span (scipy's 'average')."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)  # 1-based rank of the last member of each tie group
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse.reshape(-1)]


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(score.astype(np.float64, copy=False))
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_ovr(y_true: Any, probs: Any) -> tuple[list[float | None], float | None]:
    """One-vs-rest ROC AUC per class and their macro mean.

    A class without positive or without negative samples gets ``None`` and is left out of the
    macro mean; the macro mean is ``None`` when no class has an AUC. Pass probabilities (apply
    :func:`softmax` to logits first): AUC compares one column's scores across samples, which
    logits of different samples do not support.
    """
    p = _scores(probs)
    t = _labels(y_true, p.shape[1], "y_true")
    if t.size != p.shape[0]:
        raise ValueError(f"probs have {p.shape[0]} rows but there are {t.size} labels")
    per_class = [_binary_auc(t == c, p[:, c]) for c in range(p.shape[1])]
    defined = [a for a in per_class if a is not None]
    macro = float(np.mean(defined)) if defined else None
    return per_class, macro


def meets_accuracy(correct: int | None, total: int | None, threshold: float) -> bool:
    """Whether ``correct / total ≥ threshold``, decided exactly rather than in floats.

    The threshold is read as the decimal it prints as (``0.8719`` is 8719/10000, not the
    binary float next to it), so 8,719 correct of 10,000 meets 0.8719 whatever the rounding.
    """
    from fractions import Fraction

    if correct is None or not total or total < 0:  # a record read back may lack them
        raise ValueError("accuracy of zero samples is undefined")
    return Fraction(int(correct), int(total)) >= Fraction(repr(float(threshold)))


def _present(row: ClassRow) -> bool:
    """In the labels or the predictions: the classes macro averages are taken over."""
    return bool(row.support) or bool(row.predicted)


def _macro(per_class: Sequence[ClassRow], attribute: str) -> float:
    """Mean of one per-class figure over the classes present in labels or predictions,
    undefined values counting as 0 (scikit-learn's ``average="macro"``, ``zero_division=0``)."""
    values = [getattr(c, attribute) or 0.0 for c in per_class if _present(c)]
    return float(np.mean(values)) if values else 0.0


def _ratio(num: int, den: int) -> float:
    """``num / den`` with scikit-learn's ``zero_division=0``."""
    return float(num / den) if den else 0.0


def compute_metrics(
    y_true: Any,
    scores: Any,
    class_names: Sequence[str],
    output_kind: str | None = None,
) -> Metrics:
    """All metrics of one evaluation from labels and raw model outputs: the report's block.

    ``output_kind`` says whether ``scores`` are probabilities or logits; ``None`` detects it
    with :func:`looks_like_probabilities`. Logits are softmaxed for AUC only; accuracy, top-k
    and the confusion matrix are unaffected by softmax (it preserves each row's order).
    """
    names = tuple(str(n) for n in class_names)
    s = _scores(scores)
    num_classes = s.shape[1]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} score columns")
    t = _labels(y_true, num_classes, "y_true")
    if t.size != s.shape[0]:
        raise ValueError(f"scores have {s.shape[0]} rows but there are {t.size} labels")
    if t.size == 0:
        raise ValueError("cannot compute metrics of zero samples")

    if output_kind is None:
        output_kind = "probabilities" if looks_like_probabilities(s) else "logits"
    elif output_kind not in OUTPUT_KINDS:
        raise ValueError(f"output_kind must be one of {OUTPUT_KINDS}, got {output_kind!r}")
    applied_softmax = output_kind == "logits"
    probs = softmax(s) if applied_softmax else s

    y_pred = np.argmax(s, axis=1)
    ties = int(np.count_nonzero((s == s.max(axis=1, keepdims=True)).sum(axis=1) > 1))
    cm = confusion_matrix(t, y_pred, num_classes)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    aucs, macro_auc = roc_auc_ovr(t, probs)

    per_class: list[ClassRow] = []
    for c in range(num_classes):
        has_images = int(support[c]) > 0
        present = has_images or int(predicted[c]) > 0
        recall = _ratio(int(tp[c]), int(support[c])) if has_images else None
        fp = int(predicted[c] - tp[c])
        fn = int(support[c] - tp[c])
        per_class.append(
            ClassRow(
                name=names[c],
                index=c,
                total=int(support[c]),  # repeats support for readers who think in counts
                support=int(support[c]),
                correct=int(tp[c]),
                accuracy=recall,
                precision=_ratio(int(tp[c]), int(predicted[c])) if present else None,
                recall=recall,
                # 2TP / (2TP + FP + FN): equals 2PR/(P+R) and is defined in more cases.
                f1=_ratio(2 * int(tp[c]), 2 * int(tp[c]) + fp + fn) if present else None,
                auc=aucs[c],
                predicted=int(predicted[c]),
            )
        )

    correct = int(tp.sum())
    return Metrics(
        accuracy=correct / int(t.size), correct=correct, total=int(t.size),
        top5_accuracy=top_k_accuracy(t, s, 5) if num_classes > 5 else None,
        macro_auc=macro_auc, macro_f1=_macro(per_class, "f1"),
        macro_precision=_macro(per_class, "precision"),
        macro_recall=_macro(per_class, "recall"),
        macro_classes=sum(1 for c in per_class if _present(c)),
        absent_classes=[c.name for c in per_class if not c.support],
        num_classes=num_classes, class_names=list(names), output_kind=output_kind,
        softmax_applied_for_auc=applied_softmax, argmax_ties=ties, per_class=per_class,
        confusion_matrix=[[int(v) for v in row] for row in cm],
        top_k={str(k): top_k_accuracy(t, s, k) for k in TOP_K if k < num_classes},
        most_confused=most_confused(cm, names))


TOP_K = (3, 5, 10)  # the top-k accuracies reported, each where the classes outnumber k
MOST_CONFUSED = 10  # pairs listed: the readable part of a matrix of 100+ classes


def most_confused(cm: np.ndarray, names: Sequence[str], n: int = MOST_CONFUSED
                  ) -> list[dict[str, Any]]:
    """The ``n`` largest off-diagonal cells, largest first (ties: true, then predicted
    class index): ``{"true", "predicted", "count", "share"}``, share of the true class."""
    m = np.asarray(cm, dtype=np.int64).copy()
    np.fill_diagonal(m, 0)
    flat = np.flatnonzero(m)
    if not len(flat):
        return []
    order = flat[np.lexsort((flat, -m.ravel()[flat]))][:n]
    support = np.asarray(cm).sum(axis=1)
    out = []
    for cell in order:
        t, p = divmod(int(cell), m.shape[1])
        out.append({"true": str(names[t]), "predicted": str(names[p]), "count": int(m[t, p]),
                    "share": float(m[t, p] / support[t]) if support[t] else None})
    return out

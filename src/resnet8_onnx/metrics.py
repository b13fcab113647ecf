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
from dataclasses import dataclass, field
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


def meets_accuracy(correct: int, total: int, threshold: float) -> bool:
    """Whether ``correct / total ≥ threshold``, decided exactly rather than in floats.

    The threshold is read as the decimal it prints as (``0.8719`` is 8719/10000, not the
    binary float next to it), so 8,719 correct of 10,000 meets 0.8719 whatever the rounding.
    """
    from fractions import Fraction

    if total <= 0:
        raise ValueError("accuracy of zero samples is undefined")
    return Fraction(int(correct), int(total)) >= Fraction(repr(float(threshold)))


def _macro(per_class: Sequence[ClassMetrics], attribute: str) -> float:
    """Mean of one per-class figure over the classes present in labels or predictions,
    undefined values counting as 0 (scikit-learn's ``average="macro"``, ``zero_division=0``)."""
    values = [getattr(c, attribute) or 0.0 for c in per_class if c.present]
    return float(np.mean(values)) if values else 0.0


def _ratio(num: int, den: int) -> float:
    """``num / den`` with scikit-learn's ``zero_division=0``."""
    return float(num / den) if den else 0.0


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class; ``accuracy`` is the per-class accuracy, i.e. the recall."""

    name: str
    index: int
    support: int
    correct: int
    accuracy: float | None  # None: no images of this class
    precision: float | None  # None: neither images nor predictions of this class
    recall: float | None
    f1: float | None
    auc: float | None
    predicted: int = 0  # how many samples were predicted as this class (column sum)

    @property
    def present(self) -> bool:
        """In the labels or the predictions: the classes macro averages are taken over."""
        return self.support > 0 or self.predicted > 0

    def record(self) -> ClassRow:
        """The report's row for this class; ``total`` repeats ``support`` for readers that
        think in counts."""
        return ClassRow(name=self.name, index=self.index, accuracy=self.accuracy,
                        correct=self.correct, total=self.support, support=self.support,
                        predicted=self.predicted, precision=self.precision, recall=self.recall,
                        f1=self.f1, auc=self.auc)

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()


@dataclass(frozen=True, eq=False)
class ClassificationMetrics:
    """Everything the reports show about one model on one set of images (timings excluded).

    Compared by identity (``eq=False``): it holds an array, and array equality is not a bool.
    """

    total: int
    correct: int
    accuracy: float
    top5_accuracy: float | None
    confusion_matrix: np.ndarray
    per_class: tuple[ClassMetrics, ...]
    macro_auc: float | None
    macro_f1: float
    output_kind: str
    softmax_applied_for_auc: bool
    argmax_ties: int = 0
    class_names: tuple[str, ...] = field(default=())
    top_k: dict[int, float] = field(default_factory=dict)  # k (3, 5, 10 below the classes)

    @property
    def num_classes(self) -> int:
        return len(self.per_class)

    @property
    def macro_precision(self) -> float:
        return _macro(self.per_class, "precision")

    @property
    def macro_recall(self) -> float:
        return _macro(self.per_class, "recall")

    @property
    def absent_classes(self) -> list[str]:
        """Names of the classes without images (their accuracy and recall are undefined)."""
        return [c.name for c in self.per_class if c.support == 0]

    def record(self) -> Metrics:
        """The report's metrics block (plain ints and floats; ``None`` where undefined)."""
        return Metrics(
            accuracy=self.accuracy, correct=self.correct, total=self.total,
            top5_accuracy=self.top5_accuracy, macro_auc=self.macro_auc, macro_f1=self.macro_f1,
            macro_precision=self.macro_precision, macro_recall=self.macro_recall,
            macro_classes=sum(1 for c in self.per_class if c.present),
            absent_classes=self.absent_classes, num_classes=self.num_classes,
            class_names=[c.name for c in self.per_class], output_kind=self.output_kind,
            softmax_applied_for_auc=self.softmax_applied_for_auc, argmax_ties=self.argmax_ties,
            per_class=[c.record() for c in self.per_class],
            confusion_matrix=[[int(v) for v in row] for row in self.confusion_matrix],
            top_k={str(k): v for k, v in self.top_k.items()},
            most_confused=most_confused(self.confusion_matrix, self.class_names
                                        or [c.name for c in self.per_class]))

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()


def compute_metrics(
    y_true: Any,
    scores: Any,
    class_names: Sequence[str],
    output_kind: str | None = None,
) -> ClassificationMetrics:
    """All metrics of one evaluation from labels and raw model outputs.

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

    per_class = []
    for c in range(num_classes):
        has_images = int(support[c]) > 0
        present = has_images or int(predicted[c]) > 0
        recall = _ratio(int(tp[c]), int(support[c])) if has_images else None
        fp = int(predicted[c] - tp[c])
        fn = int(support[c] - tp[c])
        per_class.append(
            ClassMetrics(
                name=names[c],
                index=c,
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

    cm.setflags(write=False)  # the record is frozen; so is its matrix
    correct = int(tp.sum())
    return ClassificationMetrics(
        total=int(t.size),
        correct=correct,
        accuracy=correct / int(t.size),
        top5_accuracy=top_k_accuracy(t, s, 5) if num_classes > 5 else None,
        confusion_matrix=cm,
        per_class=tuple(per_class),
        macro_auc=macro_auc,
        macro_f1=_macro(per_class, "f1"),
        output_kind=output_kind,
        softmax_applied_for_auc=applied_softmax,
        argmax_ties=ties,
        class_names=names,
        top_k={k: top_k_accuracy(t, s, k) for k in TOP_K if k < num_classes},
    )


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

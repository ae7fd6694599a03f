"""Evaluation metrics in pure Python.

Classification: accuracy and macro-F1 with scikit-learn's conventions (macro over the labels
seen in gold or predictions; a precision, recall or F1 whose denominator is zero counts as 0).
Generation: SQuAD's exact match and token F1 over normalised answers.
"""

import re
import string
from collections import Counter
from collections.abc import Sequence

from softprompt.errors import SoftPromptError


def _check(pred: Sequence[str], gold: Sequence[str]) -> None:
    if len(pred) != len(gold):
        raise SoftPromptError(f"{len(pred)} predictions for {len(gold)} gold answers")
    if not gold:
        raise SoftPromptError("no examples to score")


def accuracy(pred: Sequence[str], gold: Sequence[str]) -> float:
    _check(pred, gold)
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def per_label_scores(
    pred: Sequence[str], gold: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """label -> precision, recall, f1, support (the label's count in gold)."""
    _check(pred, gold)
    if labels is None:
        labels = sorted(set(gold) | set(pred))
    pairs = Counter(zip(pred, gold, strict=True))
    predicted, actual = Counter(pred), Counter(gold)
    scores = {}
    for label in labels:
        tp = pairs[(label, label)]
        fp, fn = predicted[label] - tp, actual[label] - tp
        scores[label] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),  # = harmonic mean of P and R, 0 if undefined
            "support": actual[label],
        }
    return scores


def recall_text(per_label: dict[str, dict[str, float]]) -> str:
    """Per-class recall in one line ("ham 0.99, spam 0.86"): a starved class shows as 0.00."""
    return ", ".join(f"{label} {s['recall']:.2f}" for label, s in per_label.items())


def macro_f1(pred: Sequence[str], gold: Sequence[str], labels: Sequence[str] | None = None) -> float:
    """Unweighted mean F1 over `labels` (default: every label in gold or pred)."""
    return _mean_f1(per_label_scores(pred, gold, labels))


def _mean_f1(scores: dict[str, dict[str, float]]) -> float:
    if not scores:
        raise SoftPromptError("macro F1 needs at least one label")
    return sum(s["f1"] for s in scores.values()) / len(scores)


def balanced_accuracy(per_label: dict[str, dict[str, float]]) -> float:
    """Mean recall over the labels present in gold: accuracy as if every class were equally frequent."""
    recalls = [s["recall"] for s in per_label.values() if s["support"]]
    return sum(recalls) / len(recalls) if recalls else 0.0


def classification_report(pred: Sequence[str], gold: Sequence[str]) -> dict[str, object]:
    per_label = per_label_scores(pred, gold)
    return {
        "accuracy": accuracy(pred, gold),
        "macro_f1": _mean_f1(per_label),
        "balanced_accuracy": balanced_accuracy(per_label),
        "n": len(gold),
        "per_label": per_label,
    }


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, drop punctuation and articles, collapse spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _token_f1(pred: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not pred_tokens or not gold_tokens:  # SQuAD 2.0: empty matches only empty
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: Sequence[str], gold: Sequence[str]) -> float:
    _check(pred, gold)
    hits = sum(normalize_answer(p) == normalize_answer(g) for p, g in zip(pred, gold, strict=True))
    return hits / len(gold)


def token_f1(pred: Sequence[str], gold: Sequence[str]) -> float:
    """SQuAD token F1 per pair, averaged over pairs."""
    _check(pred, gold)
    return sum(_token_f1(p, g) for p, g in zip(pred, gold, strict=True)) / len(gold)


def generation_report(pred: Sequence[str], gold: Sequence[str]) -> dict[str, object]:
    return {
        "exact_match": exact_match(pred, gold),
        "token_f1": token_f1(pred, gold),
        "n": len(gold),
    }

import pytest

from softprompt.errors import SoftPromptError
from softprompt.metrics import (
    accuracy,
    classification_report,
    exact_match,
    generation_report,
    macro_f1,
    normalize_answer,
    per_label_scores,
    token_f1,
)

# gold a a b b c / pred a b b b a, by hand:
#   a: tp 1, fp 1 (row 5), fn 1 (row 2) -> P 1/2, R 1/2, F1 1/2
#   b: tp 2, fp 1 (row 2), fn 0         -> P 2/3, R 1,   F1 4/5
#   c: tp 0, fp 0, fn 1                 -> P 0/0 := 0, R 0, F1 0
GOLD = ["a", "a", "b", "b", "c"]
PRED = ["a", "b", "b", "b", "a"]


def test_accuracy():
    assert accuracy(PRED, GOLD) == pytest.approx(3 / 5)
    assert accuracy(["x"], ["x"]) == 1.0


def test_per_label_scores_by_hand():
    scores = per_label_scores(PRED, GOLD)
    assert list(scores) == ["a", "b", "c"]
    assert scores["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert scores["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    for s in scores.values():  # F1 is the harmonic mean wherever P + R > 0
        if s["precision"] + s["recall"]:
            harmonic = 2 * s["precision"] * s["recall"] / (s["precision"] + s["recall"])
            assert s["f1"] == pytest.approx(harmonic)


def test_macro_f1_by_hand():
    assert macro_f1(PRED, GOLD) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(GOLD, GOLD) == 1.0


def test_macro_f1_label_only_in_predictions_counts_like_sklearn():
    # a: tp 1, fn 1 -> F1 2/3; z (never gold): tp 0, fp 1 -> F1 0; macro over {a, z}.
    assert macro_f1(["a", "z"], ["a", "a"]) == pytest.approx((2 / 3 + 0) / 2)


def test_macro_f1_explicit_labels():
    # A listed label absent from both sides scores F1 0 (sklearn's zero_division=0).
    assert macro_f1(["a", "b"], ["a", "b"], labels=["a", "b", "c"]) == pytest.approx(2 / 3)
    assert macro_f1(PRED, GOLD, labels=["b"]) == pytest.approx(0.8)
    with pytest.raises(SoftPromptError, match="at least one label"):
        macro_f1(PRED, GOLD, labels=[])


def test_classification_report():
    report = classification_report(PRED, GOLD)
    assert report["accuracy"] == pytest.approx(0.6)
    assert report["macro_f1"] == pytest.approx(13 / 30)
    assert report["n"] == 5
    assert report["per_label"] == per_label_scores(PRED, GOLD)
    assert [s["support"] for s in report["per_label"].values()] == [2, 2, 1]
    recalls = [s["recall"] for s in report["per_label"].values() if s["support"]]
    assert report["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls))


def test_empty_or_mismatched_inputs():
    for metric in (accuracy, macro_f1, exact_match, token_f1, classification_report):
        with pytest.raises(SoftPromptError, match="no examples"):
            metric([], [])
        with pytest.raises(SoftPromptError, match="2 predictions for 1 gold"):
            metric(["a", "b"], ["a"])
    with pytest.raises(SoftPromptError):
        generation_report([], [])


def test_normalize_answer_squad_style():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("  An apple, a DAY.\n") == "apple day"
    assert normalize_answer("theater") == "theater"  # articles only as whole words


def test_exact_match():
    pred = ["The cat!", "a  dog.", "cats", "Paris"]
    gold = ["cat", "Dog", "cat", "paris "]
    assert exact_match(pred, gold) == pytest.approx(3 / 4)


def test_token_f1_by_hand():
    # "the quick brown fox" -> quick brown fox; gold quick fox jumps: 2 shared,
    # P = R = 2/3 -> F1 2/3.
    assert token_f1(["the quick brown fox"], ["quick fox jumps"]) == pytest.approx(2 / 3)
    # Repeated tokens count by multiplicity: x x y vs x y y share one x and one y.
    assert token_f1(["x x y"], ["x y y"]) == pytest.approx(2 / 3)
    # Precision 1/1, recall 1/4 -> 2 * 1 * 0.25 / 1.25 = 0.4.
    assert token_f1(["one"], ["one two three four"]) == pytest.approx(0.4)
    assert token_f1(["no overlap"], ["entirely different"]) == 0.0
    # Empty after normalisation matches only empty (SQuAD 2.0).
    assert token_f1(["The"], ["a"]) == 1.0
    assert token_f1([""], ["something"]) == 0.0
    # Averaged over pairs.
    assert token_f1(["x x y", "one", "a b"], ["x y y", "one two three four", "b"]) == (
        pytest.approx((2 / 3 + 0.4 + 1.0) / 3)
    )


def test_generation_report():
    report = generation_report(["The cat", "a dog runs"], ["cat", "dog"])
    # pair 2: "dog runs" vs "dog" -> P 1/2, R 1 -> F1 2/3
    assert report == pytest.approx({"exact_match": 0.5, "token_f1": (1 + 2 / 3) / 2, "n": 2})

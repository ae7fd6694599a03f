"""Rows validated into examples (softprompt.data.examples)."""

import dataclasses

import pytest

from softprompt.data import (
    Example,
    LoadedData,
    load_examples,
)
from softprompt.errors import DataError

from .conftest import jsonl, write


def test_load_examples_basic_csv(tmp_path):
    path = write(tmp_path / "r.csv", "id,review,stars\n7,Loved it,5\n8,Meh,2\n")
    loaded = load_examples(path, input_column="review", output_column="stars")
    assert isinstance(loaded, LoadedData)
    assert loaded.examples == (
        Example("Loved it", "5", f"{path}:2"),
        Example("Meh", "2", f"{path}:3"),
    )
    assert loaded.skipped == ()


def test_missing_column_message_names_file_line_columns_and_flag(tmp_path):
    path = write(tmp_path / "reviews.csv", "text,sentiment\nfine,pos\n")
    with pytest.raises(DataError) as e:
        load_examples(path)
    assert str(e.value) == (
        f"{path}:2: missing column 'label' (columns here: 'text', 'sentiment'; choose another with --label-column)"
    )
    with pytest.raises(DataError, match=r"missing column 'src' .*with --input-column\)"):
        load_examples(
            path,
            input_column="src",
            output_column="sentiment",
            column_flags={"input": "--input-column"},
        )
    with pytest.raises(DataError, match=r"missing column 'label' \(columns here: .*'sentiment'\)$"):
        load_examples(path, column_flags={})  # no flag known: no hint
    with pytest.raises(DataError, match=r"reviews\.csv:2: missing column 'body' .*--text-column"):
        load_examples(path, input_column="body", output_column="sentiment")


def test_missing_column_on_first_row_raises_even_when_skipping(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"review": "a", "label": "x"}, {"review": "b"}])
    with pytest.raises(DataError, match=r"d\.jsonl:1: missing column 'text'"):
        load_examples(path, skip_invalid=True)


def test_missing_column_on_a_later_row_is_a_bad_row(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": "x"}, {"text": "b"}])
    loaded = load_examples(path, skip_invalid=True)
    assert [e.input for e in loaded.examples] == ["a"]
    assert len(loaded.skipped) == 1
    assert loaded.skipped[0].startswith(f"{path}:2: missing column 'label'")


def test_row_errors_name_file_line_and_field(tmp_path):
    rows = [
        ({"text": "   ", "label": "x"}, r"d\.jsonl:1: empty 'text'"),
        ({"text": "a", "label": ""}, r"d\.jsonl:1: empty 'label'"),
        ({"text": "a", "label": None}, r"d\.jsonl:1: empty 'label'"),
        ({"text": ["a"], "label": "x"}, r"d\.jsonl:1: 'text' holds a list, expected text"),
        ({"text": "a", "label": {"k": 1}}, r"d\.jsonl:1: 'label' holds a dict"),
    ]
    for row, message in rows:
        path = jsonl(tmp_path / "d.jsonl", [row])
        with pytest.raises(DataError, match=message):
            load_examples(path)


def test_label_outside_label_set_lists_allowed_labels(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,fresh\nb,meh\n")
    with pytest.raises(DataError) as e:
        load_examples(path, label_set={"rotten", "fresh"})
    assert str(e.value) == (f"{path}:3: 'label' is 'meh', not one of the labels: 'fresh', 'rotten'")


def test_numbers_and_booleans_become_text(tmp_path):
    path = jsonl(
        tmp_path / "d.jsonl",
        [
            {"text": "a", "label": 1},
            {"text": "b", "label": 1.0},
            {"text": "c", "label": 0.5},
            {"text": 42, "label": True},
        ],
    )
    loaded = load_examples(path, label_set={"1", "0.5", "true"})
    assert [(e.input, e.output) for e in loaded.examples] == [
        ("a", "1"),
        ("b", "1"),
        ("c", "0.5"),
        ("42", "true"),
    ]


def test_skip_invalid_counts_and_keeps_messages(tmp_path):
    path = write(
        tmp_path / "d.csv",
        "text,label\ngood one,pos\n,pos\nfine,neutral\nok,neg\n  ,neg\nnice,pos\n",
    )
    loaded = load_examples(path, label_set=["pos", "neg"], skip_invalid=True)
    assert [e.input for e in loaded.examples] == ["good one", "ok", "nice"]
    assert [e.where for e in loaded.examples] == [f"{path}:2", f"{path}:5", f"{path}:7"]
    assert loaded.skipped == (
        f"{path}:3: empty 'text'",
        f"{path}:4: 'label' is 'neutral', not one of the labels: 'neg', 'pos'",
        f"{path}:6: empty 'text'",
    )
    # Without skipping, the first bad row is the error.
    with pytest.raises(DataError, match=r"d\.csv:3: empty 'text'"):
        load_examples(path, label_set=["pos", "neg"])


def test_no_valid_examples_is_an_error(tmp_path):
    header_only = write(tmp_path / "h.csv", "text,label\n")
    with pytest.raises(DataError, match=r"h\.csv: no examples"):
        load_examples(header_only)
    empty = write(tmp_path / "e.jsonl", "")
    with pytest.raises(DataError, match=r"e\.jsonl: no examples"):
        load_examples(empty)
    all_bad = write(tmp_path / "b.csv", "text,label\n,x\n ,y\n")
    with pytest.raises(DataError, match=r"b\.csv: no valid examples; all 2 rows are invalid"):
        load_examples(all_bad, skip_invalid=True)


def test_require_output_false_allows_unlabelled_rows(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [{"text": "a"}, {"text": "b", "label": "x"}])
    loaded = load_examples(path, require_output=False, label_set={"x"})
    assert [(e.input, e.output) for e in loaded.examples] == [("a", ""), ("b", "x")]
    with pytest.raises(DataError, match="missing column 'label'"):
        load_examples(path)


def test_example_is_frozen():
    example = Example("a", "b", "f:1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        example.input = "c"  # type: ignore[misc]

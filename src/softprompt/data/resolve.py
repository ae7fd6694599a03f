"""What a `--data` value names: a file, a data set folder, hf:NAME, or a built-in dataset."""

from __future__ import annotations

from pathlib import Path

from softprompt.data.arrow import SAVED_STATE, is_saved_dataset
from softprompt.data.builtin import BUILTIN_DATASETS, BuiltinDataset
from softprompt.data.files import FORMATS
from softprompt.data.hub import HUB_PREFIX, SAVED_SPLITS, SplitDataset, hub_dataset, saved_dataset_dict
from softprompt.errors import SoftPromptError


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
        if is_saved_dataset(path) or any(path.glob("*.parquet")):
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

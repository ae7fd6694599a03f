"""Hugging Face data sets in named splits: DatasetDict folders (save_to_disk) and hf:NAME[:CONFIG] from the Hub.

Read with pyarrow only (the `datasets` package is not needed): a saved DatasetDict is one
saved Dataset folder per split; a Hub data set is the Hub's own Parquet conversion of it
(revision refs/convert/parquet), one folder of Parquet files per split.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from softprompt.data.arrow import is_saved_dataset
from softprompt.errors import DataError

HUB_PREFIX = "hf:"
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


def saved_dataset_dict(path: Path) -> SplitDataset:
    """A DatasetDict folder written by save_to_disk: its splits, in dataset_dict.json's order."""
    try:
        splits = json.loads((path / SAVED_SPLITS).read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: {SAVED_SPLITS} is not the one datasets' save_to_disk writes ({e})") from None
    missing = [s for s in splits if not is_saved_dataset(path / s)]
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

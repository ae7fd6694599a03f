"""What a --data value names (softprompt.data.resolve)."""

from pathlib import Path

import pytest

from softprompt.data import (
    BUILTIN_DATASETS,
    resolve_data,
)
from softprompt.errors import SoftPromptError

from .conftest import write


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

"""Hugging Face data sets: saved folders and the Hub (softprompt.data.hub)."""

import shutil
from pathlib import Path

import pytest

from softprompt.data import (
    Example,
    SplitDataset,
    load_examples,
    read_rows,
    resolve_data,
)
from softprompt.errors import DataError, SoftPromptError

SAVED = Path(__file__).parent.parent / "fixtures" / "datasets"


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
    assert isinstance(source, SplitDataset) and list(source.folders) == ["train", "validation", "test"]
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
    assert isinstance(source, SplitDataset) and source.name == "someone/reviews" and source.slug == "someone-reviews"
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

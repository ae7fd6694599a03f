"""Uploads: names are sanitised, sizes limited, files validated with the user's file name, paths stay inside."""

from __future__ import annotations

import asyncio
import json

import pytest

from softprompt.studio.uploads import UploadError, UploadStore, safe_name


def save(store: UploadStore, name: str, data: bytes, chunk: int = 7):
    async def chunks():
        for i in range(0, len(data), chunk):
            yield data[i : i + chunk]

    return asyncio.run(store.save(name, chunks()))


@pytest.mark.parametrize(
    "given, want",
    [
        ("reviews.csv", "reviews.csv"),
        ("../../etc/passwd.csv", "passwd.csv"),
        ("C:\\Users\\me\\Data Set (1).JSONL", "Data_Set_1_.jsonl"),
        ("..hidden.tsv", "hidden.tsv"),
        ("café ☕.csv", "cafe_.csv"),
        ("....csv", "data.csv"),
    ],
)
def test_safe_name_keeps_a_harmless_name_and_the_extension(given, want):
    assert safe_name(given) == want


@pytest.mark.parametrize("given", ["notes.txt", "data.csv.gz", "", "archive.zip", "x.csv/"])
def test_unsupported_names_are_refused_with_the_supported_types(given):
    with pytest.raises(UploadError, match="unsupported file type.*csv.*jsonl"):
        safe_name(given)


def test_a_csv_is_stored_inside_the_folder_and_described(tmp_path):
    store = UploadStore(tmp_path / "uploads")
    data = "id,review,stars\n" + "".join(
        f'{i},"long review text number {i}, with a comma",{i % 3}\n' for i in range(12)
    )
    info = save(store, "../../evil/My Reviews.csv", data.encode())
    stored = store.path(info.id)
    assert stored.parent == (tmp_path / "uploads").resolve() and stored.read_text() == data
    assert info.name == "../../evil/My Reviews.csv" and info.id.endswith("-My_Reviews.csv")
    assert (info.rows, info.columns) == (12, ["id", "review", "stars"])
    assert info.preview[0] == {"id": "0", "review": "long review text number 0, with a comma", "stars": "0"}
    assert len(info.preview) == 5
    assert info.text_column == "review" and info.label_column == "stars"
    assert info.label_counts == {"0": 4, "1": 4, "2": 4}
    assert [u["id"] for u in store.list()] == [info.id]
    assert not (tmp_path / "evil").exists()


def test_jsonl_with_a_label_named_column_is_preferred(tmp_path):
    store = UploadStore(tmp_path)
    rows = [{"text": f"some sentence {i}", "label": "yes" if i % 2 else "no", "flag": i % 2 == 0} for i in range(6)]
    info = save(store, "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert info.label_column == "label" and info.label_counts == {"no": 3, "yes": 3}


def test_too_big_is_refused_while_streaming_and_nothing_is_kept(tmp_path):
    store = UploadStore(tmp_path, max_bytes=100)
    with pytest.raises(UploadError, match="larger than the upload limit of 100 bytes") as e:
        save(store, "big.csv", b"text,label\n" + b"x,y\n" * 50)
    assert e.value.status == 413
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, message",
    [
        (b"text,label\nok,a\n\xff\xfe,b\n", r"my file\.csv:3: not valid UTF-8"),
        (b'text,label\n"unclosed,a\n', r"my file\.csv:2: .*fields but the header has 2"),
        (b"text\nonly one column\n", "only one column"),
        (b"text,label\n", "no data rows"),
        (b"", "is empty"),
    ],
)
def test_unreadable_files_get_a_message_naming_the_users_file_and_are_removed(tmp_path, content, message):
    store = UploadStore(tmp_path)
    with pytest.raises(UploadError, match=message) as e:
        save(store, "my file.csv", content)
    assert e.value.status == 422 and str(tmp_path) not in str(e.value)
    assert [p for p in tmp_path.iterdir()] == []


def test_a_json_array_file_gets_the_json_lines_hint(tmp_path):
    with pytest.raises(UploadError, match="JSON Lines"):
        save(UploadStore(tmp_path), "a.json", b'[{"text": "a", "label": "b"}]\n')


@pytest.mark.parametrize("bad", ["../x.csv", "12345678-../../x.csv", "/etc/passwd", "12345678-", "", "nothere"])
def test_paths_outside_the_folder_or_unknown_ids_are_refused(tmp_path, bad):
    store = UploadStore(tmp_path / "u")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UploadError) as e:
        store.path(bad)
    assert e.value.status == 404


def test_a_symlink_pointing_outside_is_not_an_upload(tmp_path):
    store = UploadStore(tmp_path / "u")
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    (tmp_path / "u" / "12345678-link.csv").symlink_to(tmp_path / "secret.csv")
    with pytest.raises(UploadError):
        store.path("12345678-link.csv")


def test_the_folder_quota_holds_while_streaming_and_deleting_makes_room(tmp_path):
    store = UploadStore(tmp_path, max_bytes=1000, max_total_bytes=300)
    data = b"text,label\n" + b"some text,a\n" * 15  # 191 bytes
    first = save(store, "a.csv", data)
    with pytest.raises(UploadError, match="uploads may use 300 bytes in all and 191 bytes are taken") as e:
        save(store, "b.csv", data)
    assert e.value.status == 413 and [u["id"] for u in store.list()] == [first.id]
    assert store.shown_name(first.id) == "a.csv" and store.used_bytes() == len(data)
    store.delete(first.id)
    assert store.list() == [] and save(store, "b.csv", data).name == "b.csv"
    with pytest.raises(UploadError):
        store.delete(first.id)


def test_a_deeply_nested_json_line_names_the_file_and_line(tmp_path):
    nested = "[" * 50_000 + "]" * 50_000
    with pytest.raises(UploadError, match=r"^d\.jsonl:2: JSON nested too deeply"):
        save(UploadStore(tmp_path), "d.jsonl", f'{{"text": "a", "label": "b"}}\n{{"text": {nested}}}\n'.encode(), 4096)


def test_a_conversations_file_is_checked_and_described_as_chat(tmp_path):
    store = UploadStore(tmp_path)
    turns = lambda i: [  # noqa: E731
        {"role": "system", "content": "Reply yes or no."},
        {"role": "user", "content": f"is {i} even?"},
        {"role": "assistant", "content": "no" if i % 2 else "yes"},
    ]
    info = save(store, "chats.jsonl", "".join(json.dumps({"messages": turns(i)}) + "\n" for i in range(6)).encode())
    assert info.chat and info.columns == ["messages"] and info.label_counts == {"yes": 3, "no": 3}
    assert info.preview[0] == {"messages": "system: Reply yes or no. | user: is 0 even? | assistant: yes"}
    bad = json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n"
    with pytest.raises(UploadError, match=r"bad.jsonl:1: the conversation must end with an assistant turn"):
        save(store, "bad.jsonl", bad.encode())

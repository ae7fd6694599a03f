"""Reading rows from data files (softprompt.data.files)."""

import bz2
import gzip

import pytest

from softprompt.data import (
    MAX_LINE_BYTES,
    Example,
    bounded_lines,
    load_examples,
    read_rows,
)
from softprompt.errors import DataError

from .conftest import write


def test_jsonl_rows_carry_physical_line_numbers(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n\n  \n{"text": "b"}\n')
    assert list(read_rows(path)) == [(1, {"text": "a", "label": "x"}), (4, {"text": "b"})]


def test_json_suffix_holds_json_lines(tmp_path):
    path = write(tmp_path / "d.json", '{"text": "a"}\n{"text": "b"}\n')
    assert [n for n, _ in read_rows(path)] == [1, 2]


def test_malformed_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b",}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid JSON \(") as e:
        list(read_rows(path))
    assert "column" in str(e.value)


def test_json_array_file_gets_a_json_lines_hint(tmp_path):
    path = write(tmp_path / "d.json", '[\n  {"text": "a"}\n]\n')
    with pytest.raises(DataError, match=r"d\.json:1: not valid JSON .*JSON Lines"):
        list(read_rows(path))
    pretty = write(tmp_path / "p.json", '{\n  "text": "a"\n}\n')
    with pytest.raises(DataError, match=r"p\.json:1: not valid JSON .*JSON Lines"):
        list(read_rows(pretty))
    one_line = write(tmp_path / "e.jsonl", '[{"text": "a"}]\n')
    with pytest.raises(DataError, match=r"e\.jsonl:1: expected a JSON object, got list"):
        list(read_rows(one_line))


def test_csv_line_numbers_count_physical_lines(tmp_path):
    # Line 2's quoted field spans two lines, so the next row starts on line 4.
    path = write(tmp_path / "d.csv", 'text,label\n"one\ntwo",x\n\n"three, 3",y\n')
    assert list(read_rows(path)) == [
        (2, {"text": "one\ntwo", "label": "x"}),
        (5, {"text": "three, 3", "label": "y"}),
    ]


def test_csv_crlf_and_utf8_bom(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\ncaf\xc3\xa9,x\r\n")
    assert list(read_rows(path)) == [(2, {"text": "café", "label": "x"})]


def test_csv_wrong_field_count_names_line(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\na,x\nb,y,extra\n")
    with pytest.raises(DataError, match=r"d\.csv:3: 3 fields but the header has 2"):
        list(read_rows(path))
    unclosed = write(tmp_path / "e.csv", 'text,label\na,x\n"b,y\nc,z\n')
    with pytest.raises(DataError, match=r"e\.csv:3: 1 fields .*unclosed quote"):
        list(read_rows(unclosed))


def test_csv_duplicate_header_and_unparsable_row(tmp_path):
    path = write(tmp_path / "d.csv", "text,text\na,b\n")
    with pytest.raises(DataError, match=r"d\.csv:1: duplicate column names \['text'\]"):
        list(read_rows(path))
    huge = write(tmp_path / "h.csv", "text,label\na,x\n" + "b" * 200_000 + ",y\n")
    with pytest.raises(DataError, match=r"h\.csv:3: cannot parse the row \(field larger"):
        list(read_rows(huge))


def test_tsv_keeps_commas_in_fields(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\nhello, world\tx\n")
    assert list(read_rows(path)) == [(2, {"text": "hello, world", "label": "x"})]


def test_non_utf8_bytes_give_a_data_error(tmp_path):
    for name in ("d.csv", "d.jsonl"):
        path = tmp_path / name
        header = b"text,label\n" if name.endswith("csv") else b'{"text": "ok"}\n'
        path.write_bytes(header + b'"caf\xe9",x\n')  # latin-1 é
        with pytest.raises(DataError, match=rf"{name}:2: not valid UTF-8 \(byte 0xe9.*UTF-8"):
            list(read_rows(path))


def test_unknown_extension_and_missing_file(tmp_path):
    path = write(tmp_path / "d.xlsx", "x")
    with pytest.raises(DataError, match=r"d\.xlsx: unsupported file type '\.xlsx'") as e:
        list(read_rows(path))
    for fmt in (".jsonl", ".csv", ".tsv", ".parquet"):
        assert fmt in str(e.value)
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        list(read_rows(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="a folder, but neither a data set saved with datasets' save_to_disk"):
        list(read_rows(tmp_path))


def test_compressed_text_files(tmp_path):
    gz = tmp_path / "d.csv.gz"
    gz.write_bytes(gzip.compress(b"text,label\na,x\n"))
    bz = tmp_path / "d.jsonl.bz2"
    bz.write_bytes(bz2.compress(b'{"text": "b", "label": "y"}\n'))
    assert list(read_rows(gz)) == [(2, {"text": "a", "label": "x"})]
    assert list(read_rows(bz)) == [(1, {"text": "b", "label": "y"})]
    fake = write(tmp_path / "f.csv.gz", "text,label\n")
    with pytest.raises(DataError, match=r"f\.csv\.gz: cannot read the file"):
        list(read_rows(fake))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".csv.gz"])
def test_a_line_longer_than_the_limit_is_refused_while_it_is_read(tmp_path, suffix):
    """A file without line breaks costs MAX_LINE_BYTES of memory, not its size (a 1 GiB line took 2.4 GB)."""
    import tracemalloc

    path = tmp_path / f"big{suffix}"
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(b'{"text": "ok", "label": "a"}\n' if suffix == ".jsonl" else b"text,label\nok,a\n")
        chunk = b"x" * 2**20
        for _ in range(MAX_LINE_BYTES // len(chunk) + 4):  # one line a few MiB over the limit
            f.write(chunk)
    line = 2 if suffix == ".jsonl" else 3
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{path.name}:{line}: the line is longer than 16 MiB"):
            list(read_rows(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_LINE_BYTES


def test_bounded_lines_keeps_lines_up_to_the_limit():
    import io

    lines = list(bounded_lines(io.BytesIO(b"abc\n12345\nlast"), "f", limit=6))
    assert lines == [b"abc\n", b"12345\n", b"last"]
    with pytest.raises(DataError, match="f:2: the line is longer"):
        list(bounded_lines(io.BytesIO(b"abc\n1234567\n"), "f", limit=6))


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "d.parquet"
    table = pa.table({"text": ["good", "bad", "meh"], "label": [1, 0, None]})
    pq.write_table(table, path)
    assert list(read_rows(path)) == [
        (1, {"text": "good", "label": 1}),
        (2, {"text": "bad", "label": 0}),
        (3, {"text": "meh", "label": None}),
    ]
    loaded = load_examples(path, skip_invalid=True)
    assert loaded.examples == (
        Example("good", "1", f"{path}:1"),
        Example("bad", "0", f"{path}:2"),
    )
    assert loaded.skipped == (f"{path}:3: empty 'label'",)


def test_corrupt_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    path = write(tmp_path / "d.parquet", "not parquet at all")
    with pytest.raises(DataError, match=r"d\.parquet: not a readable Parquet file"):
        list(read_rows(path))

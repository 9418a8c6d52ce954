"""agnews.data.ag_news on tiny CSVs written in tmp_path; downloads come from the local test server only."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from agnews.data.ag_news import CLASS_NAMES, SPLITS, DataError, Split, download_ag_news, locate_ag_news, read_split
from agnews.storage import AgnewsError

TRAIN = '"3","Wall St. Bears","Short-sellers, ""ultra-cynics"", are\\nback."\n"1","World news","x"\n'
TEST = '"4","Chips","Faster"\n"2","Goal","Late winner"\n'


def load_ag_news(data_dir, cache_dir, **download) -> dict[str, Split]:
    paths = locate_ag_news(data_dir, cache_dir, **download)
    return {name: read_split(paths[name], name) for name in SPLITS}


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def md5_of(content: str) -> str:
    return hashlib.md5(content.encode("utf-8")).hexdigest()


def test_class_names_match_the_label_order():
    assert CLASS_NAMES == ("World", "Sports", "Business", "Sci/Tech")


def test_read_split_shifts_labels_joins_text_and_keeps_escapes(tmp_path):
    path = write(
        tmp_path / "train.csv",
        TRAIN + '"2","Title only",""\n"4","Two\nlines","desc"\n',
    )
    split = read_split(path, "train")

    assert isinstance(split, Split)
    assert (split.name, split.source, len(split)) == ("train", path, 4)
    assert split.labels.dtype == np.int64
    assert split.labels.tolist() == [2, 0, 1, 3]
    # Doubled quotes undone, the literal backslash-n kept as two characters, one space between the fields.
    assert split.texts[0] == 'Wall St. Bears Short-sellers, "ultra-cynics", are\\nback.'
    assert split.texts[1] == "World news x"
    assert split.texts[2] == "Title only "
    assert split.texts[3] == "Two\nlines desc"
    assert not split.labels.flags.writeable


def test_crlf_and_byte_order_mark_are_accepted(tmp_path):
    path = write(tmp_path / "t.csv", b'\xef\xbb\xbf"1","a","b"\r\n"2","c","d"\r\n')
    split = read_split(path, "test")
    assert split.labels.tolist() == [0, 1]
    assert split.texts == ["a b", "c d"]


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path / "t.csv", '"1","a","b"\n\n"2","c","d"\n\n')
    assert read_split(path, "test").labels.tolist() == [0, 1]


def test_kaggle_header_is_skipped(tmp_path):
    path = write(tmp_path / "train.csv", 'Class Index,Title,Description\n3,"a","b"\n"1","c","d"\n')
    split = read_split(path, "train")
    assert split.labels.tolist() == [2, 0]
    assert split.texts == ["a b", "c d"]


def test_header_after_the_first_row_is_an_error(tmp_path):
    path = write(tmp_path / "train.csv", '"1","a","b"\nClass Index,Title,Description\n')
    with pytest.raises(DataError, match=r"train\.csv, line 2: label 'Class Index'"):
        read_split(path, "train")


@pytest.mark.parametrize("label", ["0", "5", "x", "", "1.5", "-1"])
def test_bad_label_names_file_and_line(tmp_path, label):
    path = write(tmp_path / "train.csv", f'"1","a","b"\n"{label}","c","d"\n')
    with pytest.raises(DataError) as excinfo:
        read_split(path, "train")
    message = str(excinfo.value)
    assert f"{path}, line 2: label {label!r}" in message
    assert "1..4" in message


def test_label_with_spaces_is_still_an_integer(tmp_path):
    path = write(tmp_path / "train.csv", '" 2","a","b"\n')
    assert read_split(path, "train").labels.tolist() == [1]


@pytest.mark.parametrize(
    ("row", "found"),
    [('"1","only a title"', 2), ('"1","a","b","c"', 4), ("1,Title, with a comma,desc", 4), ("   ", 1)],
)
def test_wrong_field_count_names_file_and_line(tmp_path, row, found):
    path = write(tmp_path / "test.csv", f'"1","a","b"\n"2","c","d"\n{row}\n')
    with pytest.raises(DataError, match=rf"test\.csv, line 3: expected 3 fields .*found {found}"):
        read_split(path, "test")


def test_line_numbers_count_physical_lines_after_a_multiline_field(tmp_path):
    path = write(tmp_path / "train.csv", '"1","a","first\nsecond\nthird"\n"2","c","d"\n"9","e","f"\n')
    with pytest.raises(DataError, match=r"train\.csv, line 5: label '9'"):
        read_split(path, "train")


def test_a_bad_multiline_record_names_its_lines(tmp_path):
    path = write(tmp_path / "train.csv", '"1","a","b"\n"7","c","d\ne"\n')
    with pytest.raises(DataError, match=r"train\.csv, lines 2-3: label '7'"):
        read_split(path, "train")


def test_unclosed_quote_is_an_error_not_a_swallowed_file(tmp_path):
    path = write(tmp_path / "train.csv", '"1","a","b"\n"2","c","d\n"3","e","f"\n')
    with pytest.raises(DataError, match=r"train\.csv, lines 2-3: not valid CSV"):
        read_split(path, "train")


def test_non_utf8_bytes_name_the_line_and_suggest_resaving(tmp_path):
    path = write(tmp_path / "train.csv", b'"1","a","b"\n"2","a","c\nd"\n"3","caf\xe9","x"\n')
    with pytest.raises(DataError) as excinfo:
        read_split(path, "train")
    message = str(excinfo.value)
    assert f"{path}, line 4:" in message
    assert "Re-save the file as UTF-8" in message


@pytest.mark.parametrize(
    ("content", "what"), [("", "no rows"), ("\n\n", "no rows"), ("Class Index,Title,Description\n", "only a header")]
)
def test_file_without_data_rows_is_an_error(tmp_path, content, what):
    path = write(tmp_path / "test.csv", content)
    with pytest.raises(DataError, match=rf"test\.csv: the test split has {what}"):
        read_split(path, "test")


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: no such file"):
        read_split(tmp_path / "nowhere.csv", "train")


def test_data_error_is_an_agnews_error():
    assert issubclass(DataError, AgnewsError)


def test_load_from_data_dir_reads_both_splits(tmp_path):
    write(tmp_path / "d" / "train.csv", TRAIN)
    write(tmp_path / "d" / "test.csv", TEST)
    splits = load_ag_news(tmp_path / "d", cache_dir=tmp_path / "unused")

    assert list(splits) == ["train", "test"]
    assert splits["train"].labels.tolist() == [2, 0]
    assert splits["test"].texts == ["Chips Faster", "Goal Late winner"]
    assert not (tmp_path / "unused").exists()


def test_data_dir_missing_a_file_says_what_the_folder_needs(tmp_path):
    write(tmp_path / "d" / "train.csv", TRAIN)
    with pytest.raises(DataError) as excinfo:
        load_ag_news(str(tmp_path / "d"), cache_dir=tmp_path / "cache")
    message = str(excinfo.value)
    assert str(tmp_path / "d" / "test.csv") in message
    assert "train.csv and test.csv" in message


def serve_both(http_server) -> dict[str, str]:
    write(http_server.root / "train.csv", TRAIN)
    write(http_server.root / "test.csv", TEST)
    return {"train": md5_of(TRAIN), "test": md5_of(TEST)}


def test_download_verifies_caches_and_does_not_fetch_again(http_server, isolated_cache):
    md5 = serve_both(http_server)
    paths = download_ag_news(isolated_cache, base_url=http_server.url, md5=md5, progress=False)

    assert paths == {name: isolated_cache / "ag_news" / f"{name}.csv" for name in ("train", "test")}
    assert paths["train"].read_text(encoding="utf-8") == TRAIN
    assert http_server.requests == ["/train.csv", "/test.csv"]

    assert download_ag_news(isolated_cache, base_url=http_server.url, md5=md5, progress=False) == paths
    assert http_server.requests == ["/train.csv", "/test.csv"]


def test_load_without_data_dir_downloads_then_parses(http_server, isolated_cache):
    md5 = serve_both(http_server)
    splits = load_ag_news(None, isolated_cache, base_url=http_server.url, md5=md5, progress=False)
    assert splits["test"].labels.tolist() == [3, 1]
    assert splits["train"].source == isolated_cache / "ag_news" / "train.csv"


def test_md5_mismatch_raises_and_caches_nothing(http_server, isolated_cache):
    md5 = serve_both(http_server)
    wrong = dict(md5, train="0" * 32)
    with pytest.raises(DataError) as excinfo:
        download_ag_news(isolated_cache, base_url=http_server.url, md5=wrong, progress=False)
    message = str(excinfo.value)
    assert f"{http_server.url}/train.csv" in message
    assert "0" * 32 in message
    assert md5["train"] in message
    assert "not cached" in message
    folder = isolated_cache / "ag_news"
    assert not folder.exists() or list(folder.iterdir()) == []  # no train.csv, no temporary file


def test_unreachable_url_says_how_to_work_offline(unreachable_url, isolated_cache):
    with pytest.raises(DataError) as excinfo:
        load_ag_news(None, isolated_cache, base_url=unreachable_url, progress=False)
    message = str(excinfo.value)
    assert f"{unreachable_url}/train.csv" in message
    assert "data.dir=" in message
    assert "data.url" in message


def test_http_error_names_the_status(http_server, isolated_cache):
    with pytest.raises(DataError, match=rf"{http_server.url}/train\.csv: HTTP 404\..*data\.dir="):
        download_ag_news(isolated_cache, base_url=http_server.url, progress=False)


def test_partial_file_left_by_a_killed_download_is_never_trusted(http_server, isolated_cache):
    md5 = serve_both(http_server)
    folder = isolated_cache / "ag_news"
    folder.mkdir(parents=True)
    (folder / "train.csv").write_bytes(TRAIN.encode()[:40])  # cut off mid-row
    paths = download_ag_news(isolated_cache, base_url=http_server.url, md5=md5, progress=False)
    assert paths["train"].read_text(encoding="utf-8") == TRAIN
    assert "/train.csv" in http_server.requests

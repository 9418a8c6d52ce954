import subprocess
import sys
import textwrap

import numpy as np
import pytest

from agnews.config import DataConfig
from agnews.data import prepare
from agnews.data.prepare import prepare_data
from agnews.data.text import UNK_INDEX, basic_english
from agnews.storage import AgnewsError, resolve_cache_dir


def fresh(config: DataConfig):
    prepare.clear_memory_cache()
    return prepare_data(config, resolve_cache_dir(config.cache_dir), progress=False)


def cache_entries(cache):
    return sorted(path.name for path in (cache / "prepared").iterdir() if path.is_dir())


def test_prepared_arrays_are_the_tokenizer_and_vocab_ids(ag_news_dir, isolated_cache):
    config = DataConfig(dir=str(ag_news_dir), val_fraction=0.25)
    built = fresh(config)
    loaded = fresh(config)  # from the disk cache this time
    assert len(cache_entries(isolated_cache)) == 1
    texts = [line.split('","', 1)[1] for line in (ag_news_dir / "test.csv").read_text().splitlines()]
    for index, raw in enumerate(texts):
        title, description = raw.rstrip('"').split('","')
        expected = built.vocab.lookup_indices(basic_english(f"{title} {description}")) or [UNK_INDEX]
        assert built.test.ids_of(index).tolist() == expected
        assert loaded.test.ids_of(index).tolist() == expected
    assert loaded.vocab.itos == built.vocab.itos
    for name in ("train", "val", "test"):
        for field in ("token_ids", "offsets", "labels"):
            a, b = getattr(getattr(built, name), field), getattr(getattr(loaded, name), field)
            assert np.array_equal(a, b) and a.dtype == b.dtype == np.int64
    assert len(built.train) + len(built.val) == 160


def test_cache_is_invalidated_by_data_or_encoding_settings(ag_news_dir, isolated_cache):
    fresh(DataConfig(dir=str(ag_news_dir)))
    fresh(DataConfig(dir=str(ag_news_dir), min_freq=2))
    fresh(DataConfig(dir=str(ag_news_dir), max_vocab_size=10))
    assert len(cache_entries(isolated_cache)) == 3
    fresh(DataConfig(dir=str(ag_news_dir), val_fraction=0.3, split_seed=5))  # cut after the cache: no new entry
    assert len(cache_entries(isolated_cache)) == 3
    with open(ag_news_dir / "train.csv", "a") as handle:
        handle.write('"2","Extra row","zebra zebra"\n')
    changed = fresh(DataConfig(dir=str(ag_news_dir)))
    assert len(cache_entries(isolated_cache)) == 4
    assert "zebra" in changed.vocab.stoi


def test_later_call_in_the_process_reuses_the_arrays(ag_news_dir):
    config = DataConfig(dir=str(ag_news_dir))
    first = fresh(config)
    second = prepare_data(config, resolve_cache_dir(), progress=False)
    assert second.vocab is first.vocab


def test_two_processes_racing_build_one_complete_cache(ag_news_dir, isolated_cache, tmp_path):
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from agnews.config import DataConfig
        from agnews.data.prepare import prepare_data
        from agnews.storage import resolve_cache_dir
        prepared = prepare_data(DataConfig(dir={str(ag_news_dir)!r}), resolve_cache_dir(), progress=False)
        print("RESULT", len(prepared.vocab), int(prepared.train.token_ids.sum()), int(prepared.test.token_ids.sum()))
        """
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    results = {line for output in outputs for line in output.splitlines() if line.startswith("RESULT")}
    assert len(results) == 1  # both saw the same arrays
    assert sum(output.count("Prepared ") for output in outputs) == 1  # one built, the other waited and loaded
    assert len(cache_entries(isolated_cache)) == 1
    assert not [path for path in (isolated_cache / "prepared").iterdir() if path.name.startswith(".")]


def test_notebook_validation_uses_the_test_split(ag_news_dir):
    from agnews.config import Validation

    prepared = fresh(DataConfig(dir=str(ag_news_dir), validation=Validation.test))
    assert prepared.val is prepared.test and len(prepared.train) == 160


def swap_two_lines(path):
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[5], lines[6] = lines[6], lines[5]
    path.write_text("".join(lines), encoding="utf-8")


@pytest.mark.parametrize(
    "damage",
    {
        "npz_truncated": lambda entry: (entry / "train.npz").write_bytes((entry / "train.npz").read_bytes()[:300]),
        "vocab_lines_removed": lambda entry: (entry / "vocab.txt").write_text("<pad>\n<unk>\nthe\n"),
        "vocab_reordered": lambda entry: swap_two_lines(entry / "vocab.txt"),  # same size, other ids
        "manifest_missing": lambda entry: (entry / "manifest.json").unlink(),
    }.items(),
    ids=lambda item: item[0],
)
def test_damaged_cache_entry_is_rebuilt_with_a_warning(ag_news_dir, isolated_cache, damage, caplog):
    config = DataConfig(dir=str(ag_news_dir), val_fraction=0.25)
    built = fresh(config)
    (entry,) = [path for path in (isolated_cache / "prepared").iterdir() if path.is_dir()]
    damage[1](entry)
    with caplog.at_level("WARNING"):
        rebuilt = fresh(config)
    assert str(entry) in caplog.text and "rebuilding it" in caplog.text
    assert rebuilt.vocab.itos == built.vocab.itos
    for name in ("train", "test"):
        assert np.array_equal(getattr(rebuilt, name).token_ids, getattr(built, name).token_ids)
    assert cache_entries(isolated_cache) == [entry.name]  # rebuilt in place, nothing left aside
    assert not [path for path in (isolated_cache / "prepared").iterdir() if path.name.startswith(".")]


def test_validation_split_that_would_be_empty_is_refused_before_training(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "train.csv").write_text("".join(f'"{i % 4 + 1}","t","w{i}"\n' for i in range(8)))
    (folder / "test.csv").write_text('"1","t","w"\n')
    with pytest.raises(AgnewsError, match=r"holds out no text.*larger data.val_fraction"):
        fresh(DataConfig(dir=str(folder)))


def test_missing_class_few_texts_and_empty_vocab_are_warned_about(tmp_path, caplog):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "train.csv").write_text("".join(f'"{i % 3 + 1}","t","w{i}"\n' for i in range(90)))  # no class 4
    (folder / "test.csv").write_text('"1","t","w"\n')
    with caplog.at_level("WARNING"):
        fresh(DataConfig(dir=str(folder), val_fraction=0.1, min_freq=1000))
    assert "no texts of class 4 (Sci/Tech)" in caplog.text
    assert "only 27 training texts of class 1 (World)" in caplog.text
    assert "data.min_freq=1000 leaves a vocab of only <pad> and <unk>" in caplog.text


def test_long_texts_are_cut_at_max_tokens(tmp_path, caplog):
    folder = tmp_path / "long"
    folder.mkdir()
    long_text = " ".join(["word"] * 200_000)  # 1 MB in one field: over the csv module's default field limit
    rows = [f'"{i % 4 + 1}","t","w{i}"\n' for i in range(40)] + [f'"1","t","{long_text}"\n']
    (folder / "train.csv").write_text("".join(rows))
    (folder / "test.csv").write_text('"1","t","w"\n')
    with caplog.at_level("WARNING"):
        prepared = fresh(DataConfig(dir=str(folder), max_tokens=50))
    assert prepared.train.lengths.max() <= 50 or prepared.val.lengths.max() <= 50
    assert max(prepared.train.lengths.max(), prepared.val.lengths.max()) == 50
    assert "1 texts are longer than data.max_tokens=50 tokens and were cut (the longest has 200001)" in caplog.text


def test_a_cache_entry_locked_by_a_stuck_process_is_named_then_given_up_on(
    ag_news_dir, isolated_cache, monkeypatch, caplog
):
    """Another process (stuck, or slow) holds the entry's lock: the run says after a few seconds what it waits
    for and who holds it, and gives up after $AGNEWS_LOCK_TIMEOUT seconds instead of waiting silently."""
    from agnews.data import ag_news

    config = DataConfig(dir=str(ag_news_dir))
    key = prepare.cache_key(ag_news.locate_ag_news(str(ag_news_dir), isolated_cache), config)
    lock = isolated_cache / "prepared" / f"{key}.lock"
    script = (
        "import sys, time\nfrom agnews.locks import file_lock\n"
        f"with file_lock({str(lock)!r}, 'a test'):\n    print('held', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("AGNEWS_LOCK_TIMEOUT", "7")
        with pytest.raises(AgnewsError) as gave_up:
            prepare_data(config, isolated_cache, progress=False)
    finally:
        holder.kill()
        holder.wait()
    entry = isolated_cache / "prepared" / key
    assert f"Waiting for the prepared-data cache entry {entry}: another process (pid {holder.pid} on " in caplog.text
    assert str(gave_up.value).startswith(f"gave up waiting for the prepared-data cache entry {entry} after 7 s")
    assert f"is held by pid {holder.pid} on" in str(gave_up.value) and "AGNEWS_LOCK_TIMEOUT=SECONDS" in str(
        gave_up.value
    )

    prepared = prepare_data(config, isolated_cache, progress=False)  # the holder is gone: its lock went with it
    assert len(prepared.train) > 0


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_a_lock_timeout_that_is_no_positive_number_is_refused(monkeypatch, value):
    """filelock takes a negative timeout for 'wait forever': -1 used to wait silently, with no notice either."""
    from agnews.locks import lock_timeout

    monkeypatch.setenv("AGNEWS_LOCK_TIMEOUT", value)
    with pytest.raises(AgnewsError, match=r"AGNEWS_LOCK_TIMEOUT=.*give a positive number of seconds"):
        lock_timeout()

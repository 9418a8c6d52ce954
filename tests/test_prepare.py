import subprocess
import sys
import textwrap

import numpy as np

from agnews import prepare
from agnews.config import DataConfig
from agnews.prepare import prepare_data
from agnews.text import UNK_INDEX, basic_english


def fresh(config: DataConfig):
    prepare.clear_memory_cache()
    return prepare_data(config, progress=False)


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
    second = prepare_data(config, progress=False)
    assert second.vocab is first.vocab


def test_two_processes_racing_build_one_complete_cache(ag_news_dir, isolated_cache, tmp_path):
    script = textwrap.dedent(
        f"""
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from agnews.config import DataConfig
        from agnews.prepare import prepare_data
        prepared = prepare_data(DataConfig(dir={str(ag_news_dir)!r}), progress=False)
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

import os
import stat

import pytest

from agnews.storage import atomic_write, atomic_write_text, resolve_cache_dir


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "summary.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["summary.csv"]  # no temporary file left behind


def test_atomic_write_replaces_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "results.json"
    atomic_write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("AGNEWS_CACHE_DIR", str(tmp_path / "from-env"))
    assert resolve_cache_dir(str(tmp_path / "from-config")) == tmp_path / "from-config"
    assert resolve_cache_dir(None) == tmp_path / "from-env"
    monkeypatch.delenv("AGNEWS_CACHE_DIR")
    assert resolve_cache_dir(None).name == "agnews"

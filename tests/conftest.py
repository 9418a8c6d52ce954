"""Shared fixtures. Tests never touch the network: downloads go to a server on 127.0.0.1 that serves
files the test itself wrote."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class LocalServer:
    root: Path  # files written here are served at `url`
    url: str  # "http://127.0.0.1:PORT", no trailing slash
    requests: list[str]  # paths requested so far, to check that a cached file is not fetched again


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[LocalServer]:
    root = tmp_path / "served"
    root.mkdir()
    requests: list[str] = []

    class Handler(_QuietHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(root=root, url=f"http://127.0.0.1:{server.server_port}", requests=requests)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unreachable_url() -> str:
    """A URL on a loopback port that nothing listens on: connection refused, as when offline."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default cache at tmp_path so no test reads or writes the user's real cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AGNEWS_CACHE_DIR", str(cache))
    return cache

"""The real-text loader against an HTTP server on 127.0.0.1 that serves files this test writes."""
from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from lmlab.texts import SOURCES, ChecksumError, DownloadError, load_text

# CRLF, non-ASCII and a trailing newline: the loader must keep the bytes exactly.
CONTENT = ("First Citizen:\nBefore we proceed any further, hear me speak.\r\n\nAll:\nSpeak, speak. — ß\n" * 50)
GOOD = CONTENT.encode("utf-8")
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
CORRUPT = GOOD[:-10] + b"XXXXXXXXXX"


class Server:
    def __init__(self):
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                owner.requests.append(self.path)
                body = {"/good.txt": GOOD, "/corrupt.txt": CORRUPT}.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "texts"


def cached_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_good_download_is_checked_cached_and_reused_without_a_request(server, cache):
    text = load_text("tinyshakespeare", url=server.url + "/good.txt", sha256=GOOD_SHA)
    assert text == CONTENT
    assert server.requests == ["/good.txt"]
    assert cached_files(cache) == ["tinyshakespeare.txt"]
    assert (cache / "tinyshakespeare.txt").read_bytes() == GOOD
    again = load_text("tinyshakespeare", url=server.url + "/good.txt", sha256=GOOD_SHA)
    assert again == CONTENT and server.requests == ["/good.txt"]  # no second request
    # the cache needs no network at all
    assert load_text("tinyshakespeare", url=f"http://127.0.0.1:{closed_port()}/x", sha256=GOOD_SHA) == CONTENT


def test_corrupted_download_is_rejected_and_leaves_nothing(server, cache):
    with pytest.raises(ChecksumError) as err:
        load_text("tinyshakespeare", url=server.url + "/corrupt.txt", sha256=GOOD_SHA)
    message = str(err.value)
    assert "checksum mismatch" in message
    assert GOOD_SHA in message and hashlib.sha256(CORRUPT).hexdigest() in message
    assert "lmlab.corpus.toy()" in message
    assert server.requests == ["/corrupt.txt"]
    assert cached_files(cache) == []  # no partial or wrong file, no temporary file


def test_damaged_cache_file_is_fetched_again(server, cache):
    cache.mkdir(parents=True)
    (cache / "tinyshakespeare.txt").write_bytes(GOOD[:100])  # e.g. a truncated copy
    assert load_text("tinyshakespeare", url=server.url + "/good.txt", sha256=GOOD_SHA) == CONTENT
    assert server.requests == ["/good.txt"] and cached_files(cache) == ["tinyshakespeare.txt"]


def test_http_error_names_the_cause(server, cache):
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        load_text("tinyshakespeare", url=server.url + "/missing.txt", sha256=GOOD_SHA)
    assert "lmlab.corpus.toy()" in str(err.value)
    assert cached_files(cache) == []


def test_unreachable_server_fails_fast_naming_the_toy_language(cache):
    start = time.monotonic()
    with pytest.raises(DownloadError) as err:
        load_text("tinyshakespeare", url=f"http://127.0.0.1:{closed_port()}/input.txt")
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "network unreachable" in message and "lmlab.corpus.toy()" in message
    assert cached_files(cache) == []


def test_silent_server_times_out_within_five_seconds(cache):
    """A server that accepts the connection but never answers (a black hole)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # connections wait in the backlog; nobody ever reads or answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/input.txt"
        start = time.monotonic()
        with pytest.raises(DownloadError) as err:
            load_text("tinyshakespeare", url=url, timeout=1.0)
        assert time.monotonic() - start < 5
    assert "lmlab.corpus.toy()" in str(err.value)
    time.sleep(0.1)  # the helper thread cleans up after itself
    assert cached_files(cache) == []


def test_tiny_shakespeare_ships_with_lmlab_and_loads_offline(cache, monkeypatch):
    """No request at all: the shipped copy (lmlab/corpora) is read, its SHA-256 checked, nothing cached."""
    import hashlib
    import urllib.request

    from lmlab import texts

    def no_network(*args, **kwargs):
        raise AssertionError("load_text('tinyshakespeare') tried the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    texts._load_shipped.cache_clear()
    start = time.monotonic()
    text = load_text("tinyshakespeare")
    assert time.monotonic() - start < 3
    source = SOURCES["tinyshakespeare"]
    assert len(text) == source.n_chars == 1_115_394
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == source.sha256
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert cached_files(cache) == []
    assert texts.shipped_texts() == ["tinyshakespeare"]
    record = texts.shipped_record("tinyshakespeare")
    assert record["sha256"] == source.sha256 and record["characters"] == len(text)
    xz = texts.CORPORA_DIR / "tinyshakespeare.txt.xz"
    assert xz.stat().st_size == record["xz_bytes"] < 400_000


def test_the_usual_split_first_90_percent_train_last_10_validate():
    from lmlab import texts

    text = load_text("tinyshakespeare")
    train, val = texts.load_split("tinyshakespeare")
    assert (len(train), len(val)) == (1_003_854, 111_540) == (int(0.9 * len(text)), len(text) - int(0.9 * len(text)))
    assert train + val == text and train.endswith("But who comes here")
    record = texts.shipped_record("tinyshakespeare")["split"]
    assert (record["train_characters"], record["validation_characters"]) == (len(train), len(val))
    assert texts.split_text("abcdefghij") == ("abcdefghi", "j")
    assert texts.split_text("abcdefghij", 0.5) == ("abcde", "fghij")
    with pytest.raises(ValueError, match="train_fraction"):
        texts.split_text("abc", 1.0)


def test_a_damaged_shipped_copy_is_refused(tmp_path, monkeypatch):
    import lzma

    from lmlab import texts

    (tmp_path / "tinyshakespeare.txt.xz").write_bytes(lzma.compress(b"First Citizen: not the real text"))
    monkeypatch.setattr(texts, "CORPORA_DIR", tmp_path)
    texts._load_shipped.cache_clear()
    try:
        with pytest.raises(ChecksumError, match="damaged.*reinstall lmlab"):
            load_text("tinyshakespeare")
        (tmp_path / "tinyshakespeare.txt.xz").write_bytes(b"not xz at all")
        texts._load_shipped.cache_clear()
        with pytest.raises(ChecksumError, match="damaged"):
            load_text("tinyshakespeare")
    finally:
        texts._load_shipped.cache_clear()


def test_local_files_with_and_without_checksum(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_bytes(GOOD)
    assert load_text(path) == CONTENT
    assert load_text(str(path), sha256=GOOD_SHA.upper()) == CONTENT
    with pytest.raises(ChecksumError, match="expected sha256 0{64}, got " + GOOD_SHA):
        load_text(path, sha256="0" * 64)
    with pytest.raises(FileNotFoundError, match="tinyshakespeare"):
        load_text(tmp_path / "nothing.txt")
    with pytest.raises(ValueError, match="64-character"):
        load_text(path, sha256="abc")
    with pytest.raises(ValueError, match="timeout"):
        load_text("tinyshakespeare", timeout=0)


SHARED_COPY = Path("/work/shared/data/tinyshakespeare.txt")


@pytest.mark.skipif(not SHARED_COPY.exists(), reason="no local copy of tiny Shakespeare here")
def test_local_copy_of_tiny_shakespeare_checks_out():
    source = SOURCES["tinyshakespeare"]
    text = load_text(SHARED_COPY, sha256=source.sha256)
    assert len(text) == source.n_chars == 1_115_394

"""Real public-domain text: tiny Shakespeare ships with lmlab; other texts download once, checked, cached.

>>> text = load_text("tinyshakespeare")          # shipped with lmlab: no network
>>> len(text)
1115394
>>> train, val = load_split("tinyshakespeare")   # the usual split: first 90% / last 10% of the characters
>>> len(train), len(val)
(1003854, 111540)

A text that ships with the package (``lmlab/corpora/NAME.txt.xz``, with a JSON record) is read from
there, offline, and checked against its SHA-256 on every first load of a session. Any other known
text is downloaded: a download goes to a temporary file in the cache folder (``lmlab.env.cache_dir("texts")``) and is
renamed into place only after its SHA-256 matches, so the cache never holds a partial or wrong file.
Offline, or when the checksum does not match, :func:`load_text` raises within a few seconds with
the cause, and points to the built-in toy language (``lmlab.corpus.toy()``), which needs no network.
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import checks
from .env import cache_dir

__all__ = ["load_text", "load_split", "split_text", "shipped_texts", "shipped_record", "TRAIN_FRACTION", "SOURCES", "TextLoadError",
           "DownloadError", "ChecksumError"]

CORPORA_DIR = Path(__file__).parent / "corpora"  # texts shipped as package data (NAME.txt.xz + NAME.json)
TRAIN_FRACTION = 0.9  # the usual split: the first 90% of the characters train, the last 10% validate

OFFLINE_HINT = ("The built-in toy language needs no network: lmlab.corpus.toy().text(n_sentences, seed=0) "
                "gives as much text as you like.")


@dataclass(frozen=True)
class TextSource:
    url: str
    sha256: str
    n_chars: int
    filename: str
    description: str


SOURCES: dict[str, TextSource] = {
    "tinyshakespeare": TextSource(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        n_chars=1_115_394,
        filename="tinyshakespeare.txt",
        description="about 40,000 lines of Shakespeare's plays, as collected by Andrej Karpathy for char-rnn",
    ),
}


class TextLoadError(RuntimeError):
    """A text could not be loaded (see the message for the cause and the offline alternative)."""


class DownloadError(TextLoadError):
    """The download failed: no network, an unreachable server, an HTTP error or a timeout."""


class ChecksumError(TextLoadError, ValueError):
    """The text's SHA-256 is not the expected one."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")  # bytes -> str without newline translation: counts stay exact
    except UnicodeDecodeError as e:
        raise ValueError(f"{where} is not UTF-8 text ({e})") from None


def load_text(name_or_path: str | os.PathLike, sha256: str | None = None, url: str | None = None,
              timeout: float = 4.0) -> str:
    """Load a known public-domain text by name, or a local text file.

    ``load_text("tinyshakespeare")`` reads the copy shipped with lmlab (no network; its SHA-256 is
    checked). A known text that does not ship downloads on first use (from ``url``, default the
    source's usual address), checks its SHA-256 (``sha256`` overrides the known one) and caches it
    under ``lmlab.env.cache_dir("texts")``; later calls read the cache without any request.

    ``load_text(path)`` reads a local UTF-8 file, checking ``sha256`` if given.

    ``timeout`` (seconds) bounds the wait for the server to answer and for each read; offline the
    call fails within it with :class:`DownloadError`. A checksum mismatch raises
    :class:`ChecksumError` naming both hashes. Both point to ``lmlab.corpus.toy()``.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"pass a text name ({sorted(SOURCES)}) or a file path, got {type(name_or_path).__name__}")
    checks.check_real(timeout, "timeout", 0, low_open=True, hint="a positive number of seconds")
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}")
    key = os.fspath(name_or_path)
    if key in SOURCES and url is None and (sha256 is None or sha256.lower() == SOURCES[key].sha256):
        shipped = _load_shipped(key)
        if shipped is not None:
            return shipped
    if key in SOURCES:
        return _load_known(key, SOURCES[key], sha256 or SOURCES[key].sha256, url or SOURCES[key].url, timeout)
    path = Path(key).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key!r} is neither a known text ({', '.join(sorted(SOURCES))}) nor an existing "
                                f"file. {OFFLINE_HINT}")
    data = path.read_bytes()
    if sha256 is not None and _sha256(data) != sha256.lower():
        raise ChecksumError(f"checksum mismatch for {path}: expected sha256 {sha256.lower()}, got {_sha256(data)}. "
                            f"{OFFLINE_HINT}")
    return _decode(data, str(path))


def shipped_texts() -> list[str]:
    """Names of the texts that ship with lmlab (readable offline)."""
    return sorted(name for name, source in SOURCES.items() if (CORPORA_DIR / (source.filename + ".xz")).is_file())


@functools.lru_cache(maxsize=4)
def _load_shipped(name: str) -> str | None:
    """The shipped text ``name`` (decompressed and checked), or None if lmlab does not ship it."""
    source = SOURCES[name]
    path = CORPORA_DIR / (source.filename + ".xz")
    if not path.is_file():
        return None
    try:
        data = lzma.decompress(path.read_bytes())
    except lzma.LZMAError as err:
        raise ChecksumError(f"lmlab's shipped copy of {name!r} ({path}) is damaged ({err}); reinstall lmlab") from None
    if _sha256(data) != source.sha256:
        raise ChecksumError(f"lmlab's shipped copy of {name!r} ({path}) is damaged: sha256 {_sha256(data)}, expected "
                            f"{source.sha256}; reinstall lmlab")
    return _decode(data, str(path))


def split_text(text: str, train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """``(train, validation)``: the first ``int(train_fraction * len(text))`` characters, and the rest.

    The usual split of tiny Shakespeare (char-rnn, nanoGPT): 90% / 10% by characters, in order, so the
    validation text is a different stretch of the plays (the end of the file), not a random sample.
    """
    checks.check_str(text, "text")
    checks.check_real(train_fraction, "train_fraction", 0, 1, low_open=True, high_open=True)
    n = int(train_fraction * len(text))
    return text[:n], text[n:]


def load_split(name_or_path: str | os.PathLike = "tinyshakespeare",
               train_fraction: float = TRAIN_FRACTION) -> tuple[str, str]:
    """``split_text(load_text(name_or_path), train_fraction)``: the training and validation text."""
    return split_text(load_text(name_or_path), train_fraction)


def shipped_record(name: str) -> dict:
    """The JSON record of a shipped text (``lmlab/corpora/NAME.json``): source, size, hash, split."""
    if name not in SOURCES:
        raise ValueError(f"unknown text {name!r}; known: {', '.join(sorted(SOURCES))}")
    path = CORPORA_DIR / (SOURCES[name].filename.rsplit(".", 1)[0] + ".json")
    if not path.is_file():
        raise FileNotFoundError(f"lmlab ships no record for {name!r} ({path} is missing)")
    return json.loads(path.read_text(encoding="utf-8"))


def _load_known(name: str, source: TextSource, sha256: str, url: str, timeout: float) -> str:
    sha256 = sha256.lower()
    folder = cache_dir("texts")
    target = folder / source.filename
    if target.is_file():
        data = target.read_bytes()
        if _sha256(data) == sha256:
            return _decode(data, str(target))
        target.unlink()  # stale or damaged cache entry: fetch it again
    data = _download(name, url, folder, target, sha256, timeout)
    return _decode(data, str(target))


def _download(name: str, url: str, folder: Path, target: Path, sha256: str, timeout: float) -> bytes:
    """Fetch ``url`` into a temporary file in ``folder``; rename it to ``target`` once it checks out.

    The request runs in a helper thread so that even a hanging name lookup cannot keep the caller
    waiting past ``timeout`` for the server's answer.
    """
    _remove_stale_parts(folder, target.name)
    state: dict = {}
    answered, finished, abandoned = threading.Event(), threading.Event(), threading.Event()

    def fetch() -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                answered.set()
                fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
                state["tmp"] = Path(tmp_name)
                digest, chunks = hashlib.sha256(), []
                with os.fdopen(fd, "wb") as f:
                    while not abandoned.is_set():
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        digest.update(chunk)
                        chunks.append(chunk)
                        f.write(chunk)
                state["digest"], state["data"] = digest.hexdigest(), b"".join(chunks)
        except BaseException as e:  # reported to the caller below
            state["error"] = e
        finally:
            answered.set()
            finished.set()
            if abandoned.is_set() and "tmp" in state:  # the caller gave up: clean up here
                state["tmp"].unlink(missing_ok=True)

    started = time.monotonic()
    try:
        threading.Thread(target=fetch, daemon=True, name=f"lmlab-download-{name}").start()
        if not answered.wait(timeout):
            raise DownloadError(f"could not download {name!r} from {url}: no answer within {timeout:g} s "
                                f"(network unreachable or offline?). {OFFLINE_HINT}")
        finished.wait()  # each read is bounded by the socket timeout
        if "error" in state:
            raise DownloadError(f"could not download {name!r} from {url}: {_describe(state['error'])} "
                                f"(after {time.monotonic() - started:.1f} s). {OFFLINE_HINT}") from state["error"]
        if state["digest"] != sha256:
            raise ChecksumError(f"checksum mismatch for {name!r} downloaded from {url}: expected sha256 {sha256}, "
                                f"got {state['digest']}; the download was discarded (nothing was cached). "
                                f"{OFFLINE_HINT}")
        os.replace(state["tmp"], target)
        return state["data"]
    finally:
        # Each side sets its own flag before looking at the other's, so exactly one of them (or
        # both, harmlessly) removes the temporary file; after the rename this is a no-op.
        abandoned.set()
        if finished.is_set() and "tmp" in state:
            state["tmp"].unlink(missing_ok=True)


def _remove_stale_parts(folder: Path, filename: str, max_age_s: float = 3600.0) -> None:
    """Remove temporary files left by a process that was killed while downloading."""
    for part in folder.glob(f".{filename}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > max_age_s:
                part.unlink()
        except OSError:
            pass


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        if isinstance(reason, (TimeoutError, OSError)) and "timed out" in str(reason):
            return "the connection timed out (network unreachable or offline?)"
        return f"network unreachable or offline? ({reason})"
    if isinstance(error, TimeoutError):
        return "the server stopped sending data (timed out)"
    return f"{type(error).__name__}: {error}"

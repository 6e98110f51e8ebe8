"""Started by the replay runtime's ``.pth`` file in every Python process of the Colab replay.

* ``LMLAB_REPLAY_NO_NETWORK=1``: sockets may only reach the loopback (the kernel talks to nbclient
  over 127.0.0.1); any other connection fails with ``OSError(ENETUNREACH)`` and name lookups of other
  hosts with ``socket.gaierror``, as on a machine without network. (The replay also runs under
  ``unshare -n`` where the system allows it; this guard makes it offline everywhere.)
* ``LMLAB_REPLAY_URL_MAP=JSON``: ``{URL: URL}``; a ``urllib`` request for a key goes to its value
  instead (the replay maps the known texts' usual addresses to the loopback stand-in,
  ``gates/hub_standin.py``; the hub itself is redirected by ``HF_ENDPOINT``).
* ``LMLAB_REPLAY_GLUE_LOG=FILE``: record every ``lmlab.glue(name, value)`` call (name and the value's
  display data, as MyST-NB's ``glue`` would store it) as one JSON line in FILE, so the determinism test
  can compare the numbers the prose shows. The call itself still runs ``lmlab.glue`` unchanged: on
  Colab there is no MyST-NB, and that is the branch the replay must exercise.
"""
from __future__ import annotations

import errno
import functools
import importlib.abc
import ipaddress
import json
import os
import socket
import sys

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_local_host(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or str(host).lower() in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _is_numeric(host) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def _is_local_address(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX socket path
        return True
    if isinstance(address, tuple) and address:
        return _is_local_host(address[0])
    return True


def block_network() -> None:
    """Let sockets reach the loopback only."""
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def refuse(address):
        raise OSError(errno.ENETUNREACH, f"Network is unreachable: {address!r} (the Colab replay runs offline)")

    def connect(self, address):
        if not _is_local_address(address):
            refuse(address)
        return original_connect(self, address)

    def connect_ex(self, address):
        if not _is_local_address(address):
            return errno.ENETUNREACH
        return original_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local_host(host) and not _is_numeric(host):  # a number needs no lookup; connect fails
            raise socket.gaierror(socket.EAI_AGAIN, f"Temporary failure in name resolution: {host!r} "
                                                    "(the Colab replay runs offline)")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo


# --- redirecting known URLs to the loopback stand-in -----------------------------------------------

def redirect_urls(mapping: dict[str, str]) -> None:
    """Send ``urllib`` requests for a URL in ``mapping`` to its stand-in (every opener goes through
    ``OpenerDirector.open``)."""
    import urllib.request

    original_open = urllib.request.OpenerDirector.open

    def open_(self, fullurl, data=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT):
        if isinstance(fullurl, str) and fullurl in mapping:
            fullurl = mapping[fullurl]
        elif isinstance(fullurl, urllib.request.Request) and fullurl.full_url in mapping:
            fullurl.full_url = mapping[fullurl.full_url]
        return original_open(self, fullurl, data, timeout)

    urllib.request.OpenerDirector.open = open_


# --- recording lmlab.glue ------------------------------------------------------------------------

def _record(log: str, name: str, value) -> None:
    try:
        from IPython.core.interactiveshell import InteractiveShell

        if not InteractiveShell.initialized():
            return
        data, _ = InteractiveShell.instance().display_formatter.format(value)
    except Exception as err:  # never break the notebook because of the recorder
        data = {"text/plain": f"<glue value could not be formatted: {err!r}>"}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"name": name, "data": data}, default=str) + "\n")


def _wrap_glue(module, log: str) -> None:
    original = getattr(module, "glue", None)
    if original is None or getattr(original, "_lmlab_replay_recorder", False):
        return
    import inspect

    signature = inspect.signature(original)

    @functools.wraps(original)
    def glue(*args, **kwargs):
        result = original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        params = list(bound.signature.parameters)
        _record(log, bound.arguments.get(params[0]), bound.arguments.get(params[1]))
        return result

    glue._lmlab_replay_recorder = True
    module.glue = glue


class _GlueRecorder(importlib.abc.MetaPathFinder):
    """Wraps ``lmlab.env.glue`` as soon as ``lmlab.env`` is imported (before ``lmlab`` re-exports it)."""

    def __init__(self, log: str) -> None:
        self.log = log

    def find_spec(self, fullname, path, target=None):
        if fullname != "lmlab.env":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader, log = spec.loader, self.log
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_wrap(module):
            exec_module(module)
            _wrap_glue(module, log)

        loader.exec_module = exec_and_wrap
        return spec


if os.environ.get("LMLAB_REPLAY_NO_NETWORK") == "1":
    block_network()
if os.environ.get("LMLAB_REPLAY_URL_MAP"):
    redirect_urls(json.loads(os.environ["LMLAB_REPLAY_URL_MAP"]))
if os.environ.get("LMLAB_REPLAY_GLUE_LOG"):
    sys.meta_path.insert(0, _GlueRecorder(os.environ["LMLAB_REPLAY_GLUE_LOG"]))

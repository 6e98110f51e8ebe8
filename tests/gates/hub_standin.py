"""A loopback stand-in for the Hugging Face hub and for text downloads, for the Colab replay.

The chapters' optional Colab cells (tags ``colab-only``, ``skip-execution``) download GPT-2 or BERT with
``lmlab.hub.load_pretrained`` and may download a text. The replay runs offline, so it serves them from
127.0.0.1 instead: ``HF_ENDPOINT`` points ``transformers``/``huggingface_hub`` (and ``lmlab.hub``'s
reachability check) at :func:`serve`, and the replay hooks rewrite the known text URLs to it
(``LMLAB_REPLAY_URL_MAP``). The cells' code paths, messages and timings are exercised; their numbers are
those of random weights.

:func:`build` writes the files (run with the replay runtime's Python, so its ``transformers`` writes
what its own ``from_pretrained`` reads):

* ``models/<repo id>/``: for each id in :data:`GPT2_REPOS` a tiny ``GPT2LMHeadModel`` with a byte-level
  BPE tokenizer, for each id in :data:`BERT_REPOS` a tiny BERT with a WordPiece tokenizer (uncased),
  saved like ``bert-base-uncased`` (a ``BertForPreTraining`` checkpoint whose config names
  ``BertForMaskedLM``); random weights (seed 0), trained tokenizers on a few hundred sentences of the
  toy language, ``save_pretrained`` (safetensors);
* ``texts/<name>.txt``: lmlab's known texts (:data:`lmlab.texts.SOURCES`), from the shipped copies, so
  their checksums hold; ``urls.json`` maps each text's usual URL to its path here.

:func:`serve` answers as the hub does for downloads: ``HEAD``/``GET /<repo>/resolve/<rev>/<file>``
with ``X-Repo-Commit``, ``ETag`` and ``Content-Length``; ``404`` with ``X-Error-Code: EntryNotFound``
(a file the repo lacks) or ``RepoNotFound``; ``/api/models/<repo>[/revision/<rev>]`` (model info) and
``/api/models/<repo>/tree/<rev>/<path>`` (listings); ``HEAD /`` answers 200 (the reachability check).
Every request is logged (``requests.log``) so a test can see what was fetched.

Command line (the replay runs it with the runtime's Python)::

    python hub_standin.py build DEST
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import sys
import threading
import time
import urllib.parse
from pathlib import Path

GPT2_REPOS = ("gpt2", "distilgpt2", "openai-community/gpt2")
BERT_REPOS = ("bert-base-uncased", "google-bert/bert-base-uncased", "distilbert-base-uncased")
COMMIT = hashlib.sha1(b"lmlab hub stand-in").hexdigest()


# --- building the files ------------------------------------------------------------------------------

def _sentences(n: int = 400) -> list[str]:
    try:
        from lmlab import corpus

        return corpus.toy().text(n, seed=0).splitlines() or ["the dog barks ."]
    except Exception:  # lmlab not importable: a fixed text does
        base = "the world is everything that is the case . the dog sees the cat . a bird sings in the garden ."
        return [base] * n


def build(dest: Path) -> Path:
    """Write the stand-in's files into ``dest`` (see the module docstring); returns ``dest``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import (BertConfig, BertForPreTraining, BertTokenizerFast, GPT2Config, GPT2LMHeadModel,
                              GPT2TokenizerFast)

    dest = Path(dest)
    texts = _sentences()
    torch.manual_seed(0)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    gpt_tok = GPT2TokenizerFast(tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                unk_token="<|endoftext|>")
    eos = bpe.token_to_id("<|endoftext|>")
    gpt_config = GPT2Config(vocab_size=bpe.get_vocab_size(), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                            bos_token_id=eos, eos_token_id=eos)
    gpt = GPT2LMHeadModel(gpt_config)

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wp.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    wp.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, wp.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    wp.decoder = decoders.WordPiece()
    bert_tok = BertTokenizerFast(tokenizer_object=wp, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                 cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True)
    bert_config = BertConfig(vocab_size=wp.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                             pad_token_id=wp.token_to_id("[PAD]"))
    bert = BertForPreTraining(bert_config)  # as bert-base-uncased: pooler and both pre-training heads,
    bert.config.architectures = ["BertForMaskedLM"]  # and the architecture its config names

    for repo in GPT2_REPOS:
        out = dest / "models" / repo
        gpt.save_pretrained(out)
        gpt_tok.save_pretrained(out)
    for repo in BERT_REPOS:
        out = dest / "models" / repo
        bert.save_pretrained(out)
        bert_tok.save_pretrained(out)

    urls = {}
    try:
        from lmlab import texts as lm_texts

        for name, source in lm_texts.SOURCES.items():
            try:
                data = lm_texts.load_text(name)
            except Exception:
                continue
            path = dest / "texts" / source.filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.encode("utf-8"))
            urls[source.url] = f"/texts/{source.filename}"
    except ImportError:
        pass
    (dest / "urls.json").write_text(json.dumps(urls, indent=1), encoding="utf-8")
    return dest


# --- serving them --------------------------------------------------------------------------------------

def _handler(root: Path, log_path: Path | None):
    models_dir = root / "models"

    class Hub(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # the request log below replaces stderr noise
            pass

        def _log(self, status: int, size: int) -> None:
            if log_path is not None:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"t": round(time.time(), 3), "method": self.command, "path": self.path,
                                        "status": status, "bytes": size}) + "\n")

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self._log(status, len(body) if self.command != "HEAD" else 0)

        def _error(self, status: int, code: str, message: str) -> None:
            self._send(status, json.dumps({"error": message}).encode(), {"X-Error-Code": code, "X-Error-Message": message})

        def _repo(self, parts: list[str]) -> tuple[str, list[str]] | None:
            """The longest repo id (one or two path parts) that exists, and the rest of the path."""
            for n in (2, 1):
                if len(parts) >= n and (models_dir / "/".join(parts[:n])).is_dir():
                    return "/".join(parts[:n]), parts[n:]
            return None

        def _files(self, repo: str) -> list[Path]:
            base = models_dir / repo
            return sorted(p for p in base.rglob("*") if p.is_file())

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
            if not parts:
                return self._send(200, b"lmlab hub stand-in", ctype="text/plain")
            if parts[0] == "texts" and len(parts) == 2:
                file = root / "texts" / parts[1]
                if file.is_file():
                    return self._send(200, file.read_bytes(), ctype="text/plain; charset=utf-8")
                return self._error(404, "EntryNotFound", f"no text {parts[1]}")
            if parts[:2] == ["api", "models"]:
                found = self._repo(parts[2:])
                if found is None:
                    return self._error(404, "RepoNotFound", f"Repository {'/'.join(parts[2:])} not found")
                repo, rest = found
                if rest[:1] == ["tree"]:
                    sub = "/".join(rest[2:])
                    base = models_dir / repo / sub
                    if not base.is_dir():
                        return self._error(404, "EntryNotFound", f"{sub} does not exist in {repo}")
                    items = [{"type": "file", "path": p.relative_to(models_dir / repo).as_posix(), "size": p.stat().st_size,
                              "oid": hashlib.sha1(p.read_bytes()).hexdigest()} for p in sorted(base.iterdir()) if p.is_file()]
                    return self._send(200, json.dumps(items).encode())
                info = {"id": repo, "modelId": repo, "sha": COMMIT, "private": False, "gated": False, "disabled": False,
                        "tags": [], "siblings": [{"rfilename": p.relative_to(models_dir / repo).as_posix()}
                                                 for p in self._files(repo)]}
                return self._send(200, json.dumps(info).encode())
            if "resolve" in parts:
                i = parts.index("resolve")
                repo = "/".join(parts[:i])
                if not (models_dir / repo).is_dir():
                    return self._error(404, "RepoNotFound", f"Repository {repo} not found")
                filename = "/".join(parts[i + 2:])
                file = models_dir / repo / filename
                if not file.is_file():
                    return self._error(404, "EntryNotFound", f"{filename} does not exist in {repo}")
                data = file.read_bytes()
                etag = '"' + hashlib.sha256(data).hexdigest() + '"'
                return self._send(200, data, {"X-Repo-Commit": COMMIT, "ETag": etag},
                                  ctype="application/octet-stream")
            return self._error(404, "RepoNotFound", f"nothing at {path}")

    return Hub


def serve(root: Path, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None):
    """Serve ``root`` (written by :func:`build`) in a daemon thread; returns ``(server, base_url)``."""
    root = Path(root)
    server = http.server.ThreadingHTTPServer((host, port), _handler(root, log_path))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}"


def url_map(root: Path, base_url: str) -> dict[str, str]:
    """``{usual URL: stand-in URL}`` of the texts served under ``root``."""
    file = Path(root) / "urls.json"
    mapping = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    return {url: base_url + path for url, path in mapping.items()}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "build":
        build(Path(argv[1]))
        print(f"hub stand-in written to {argv[1]}")
        return 0
    print(__doc__.rsplit("Command line", 1)[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

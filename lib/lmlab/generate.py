"""Generation: next-token distributions, decoding strategies, masked filling, log-probabilities.

Every function takes either an ``lmlab`` model or a Hugging Face ``transformers`` model (a
``GPT2LMHeadModel``, a ``BertForMaskedLM``, ...) with its tokenizer, and a prompt given as text (with
``tokenizer=``), a list of ids, or a LongTensor ``(seq,)`` / ``(batch, seq)``::

    generate(model, "the dog", tokenizer=tok, max_new_tokens=10, temperature=0.8, top_p=0.9, seed=0)
    beam_search(model, "the dog", tokenizer=tok, num_beams=4)[0].text
    fill_mask(bert, "the world is everything that is the <mask> .", tokenizer=tok)

The decoding steps are also pure functions on logits, to read and to reuse:
:func:`apply_temperature`, :func:`top_k_filter`, :func:`top_p_filter`, :func:`sampling_distribution`
and :func:`sample_from_logits`. Sampling is seeded with a ``torch.Generator`` (``seed=``); without a
seed it draws from torch's global generator (which :func:`lmlab.env.seed_everything` seeds).

Our causal :class:`~lmlab.models.Transformer` generates with its key-value cache (``use_cache=True``):
each new token is pushed through the model alone, instead of the whole sequence again.
:func:`count_positions` counts the token positions a model processes, a deterministic measure of
that saving.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from . import checks, env

__all__ = [
    "apply_temperature", "top_k_filter", "top_p_filter", "sampling_distribution", "sample_from_logits",
    "next_token_distribution", "generate", "greedy", "sample", "beam_search", "Beam", "fill_mask", "top_tokens",
    "sequence_logprob", "token_logprobs", "perplexity", "count_positions", "PositionCounter",
]

STRATEGIES = ("greedy", "sample", "beam")


# --- argument checks --------------------------------------------------------------------------------

def _check_temperature(temperature: Any) -> float:
    return checks.check_real(temperature, "temperature", 0, low_open=True,
                             hint="1.0 leaves the distribution unchanged; for the argmax use strategy='greedy'")


def _check_top_k(top_k: Any) -> int | None:
    return checks.check_int(top_k, "top_k", 1, allow_none=True, hint="None means no filtering")


def _check_top_p(top_p: Any) -> float | None:
    return checks.check_real(top_p, "top_p", 0, 1, low_open=True, allow_none=True, hint="None means no filtering")


def _check_count(name: str, value: Any, minimum: int) -> int:
    return checks.check_int(value, name, minimum)


def _make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(checks.seed_of(seed))


# --- pure functions on logits -----------------------------------------------------------------------

def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide logits ``(..., vocab)`` by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    A temperature so small that the division overflows (e.g. ``1e-38``) raises a ``ValueError``: use
    greedy decoding for the limit of temperature 0.
    """
    temperature = _check_temperature(temperature)
    _check_logits(logits)
    out = logits / temperature
    if torch.isposinf(out).any() or torch.isnan(out).any():
        raise ValueError(f"temperature={temperature!r} is too small for these logits: logits / temperature "
                         f"overflows to inf. Use a larger temperature (e.g. >= 1e-3) or strategy='greedy' "
                         f"(the limit of temperature 0)")
    return out


def _check_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    """A float tensor ``(..., vocab)`` with no NaN or +inf and a finite entry in every row."""
    if isinstance(logits, torch.Tensor) and not logits.dtype.is_floating_point:
        raise TypeError(f"{name} must be a float tensor (..., vocab), got dtype {logits.dtype}")
    checks.check_finite_tensor(logits, name)
    if logits.dim() == 0 or logits.size(-1) == 0:
        raise ValueError(f"{name} must have shape (..., vocab) with vocab >= 1, got shape {tuple(logits.shape)}")
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits along the last axis (more when tied with the k-th), set the rest to -inf."""
    k = checks.check_int(k, "k (top_k)", 1)
    _check_logits(logits)
    if k >= logits.size(-1):
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most probable tokens whose probability reaches ``p``.

    Tokens are taken in order of decreasing probability until their total is at least ``p``; the most
    probable token is always kept. The others' logits become -inf. ``logits``: ``(..., vocab)``.
    """
    p = checks.check_real(p, "p (top_p)", 0, 1, low_open=True)
    _check_logits(logits)
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the more likely tokens
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sampling_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                          top_p: float | None = None) -> torch.Tensor:
    """The distribution sampling draws from: temperature, then top-k, then top-p, then softmax.

    ``logits``: ``(..., vocab)``; returns probabilities of the same shape (float32).
    """
    _check_logits(logits)
    _check_temperature(temperature), _check_top_k(top_k), _check_top_p(top_p)
    logits = apply_temperature(logits.float(), temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def sample_from_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row from ``logits`` ``(..., vocab)``; returns ids of shape ``(...)``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    probs = sampling_distribution(logits, temperature, top_k, top_p)
    flat = probs.reshape(-1, probs.size(-1))
    if not torch.isfinite(flat).all() or bool((flat.sum(-1) <= 0).any()):
        raise ValueError("logits give no valid distribution to sample from (NaN, or every token excluded); "
                         "check the logits and the temperature")
    ids = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
    return ids.reshape(probs.shape[:-1])


# --- models: ours and the hub's behind one small interface -------------------------------------------

def _is_hub(model: Any) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def _is_causal(model: Any) -> bool:
    if _is_hub(model):
        name = type(model).__name__
        return name.endswith(("LMHeadModel", "ForCausalLM")) or bool(getattr(model.config, "is_decoder", False))
    return bool(getattr(model, "causal", True))


def _context_length(model: Any) -> int:
    cfg = getattr(model, "config", None)
    for name in ("context_length", "n_positions", "max_position_embeddings"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30  # no limit known (e.g. an RNN without one)


def _device(model: nn.Module) -> torch.device:
    return env.model_device(model)


def _vocab_size(model: Any) -> int | None:
    value = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(value) if checks.is_int(value) else None


def _hub_cache_argument(model: nn.Module) -> str:
    """``"cache"`` (transformers >= 5.2x) or ``"past_key_values"`` (older releases, e.g. on Colab)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _logits(model: nn.Module, idx: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
    """Run ``idx`` ``(batch, seq)``; returns ``(logits (batch, seq, vocab), cache)``."""
    if _is_hub(model):
        if cache is None:
            out = model(input_ids=idx)
            return out.logits, None
        past = None if cache is True else cache
        name = _hub_cache_argument(model)
        out = model(input_ids=idx, use_cache=True, **{name: past})
        return out.logits, out[name] if name in out else None
    if cache is None:
        return model(idx), None
    return model(idx, kv_cache=cache), cache


def _supports_cache(model: nn.Module) -> bool:
    return _is_hub(model) or callable(getattr(model, "new_kv_cache", None))


class _Stepper:
    """Gives the last position's logits ``(batch, vocab)`` while a sequence grows one token at a time.

    With the cache, the prompt is pushed through once and then only each new token; without it (or
    once the sequence outgrows the model's context, where learned positions cannot slide), the last
    ``context_length`` tokens are recomputed every step.
    """

    def __init__(self, model: nn.Module, use_cache: bool):
        self.model = model
        self.context = _context_length(model)
        self.use_cache = use_cache and _supports_cache(model)
        self.cache: Any = None
        self.cached = 0  # positions held in the cache

    def start(self, idx: torch.Tensor) -> torch.Tensor:
        if self.use_cache and idx.size(1) <= self.context:
            self.cache = True if _is_hub(self.model) else self.model.new_kv_cache()
            logits, self.cache = _logits(self.model, idx, self.cache)
            self.cached = idx.size(1)
            return logits[:, -1]
        self.use_cache = False
        return _logits(self.model, idx[:, -self.context:])[0][:, -1]

    def step(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx``: the whole sequence so far ``(batch, seq)``, its last token new."""
        if self.use_cache and self.cached < self.context:
            logits, self.cache = _logits(self.model, idx[:, -1:], self.cache)
            self.cached += 1
            return logits[:, -1]
        self.use_cache, self.cache = False, None
        return _logits(self.model, idx[:, -self.context:])[0][:, -1]


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


@dataclass
class PositionCounter:
    """What :func:`count_positions` saw: ``calls`` to the model and token ``positions`` pushed through it."""

    calls: int = 0
    positions: int = 0


@contextmanager
def count_positions(model: nn.Module) -> Iterator[PositionCounter]:
    """Count the forward calls and the token positions (batch x seq per call) a model processes.

    A deterministic measure of work, e.g. for the key-value cache::

        with count_positions(model) as c:
            generate(model, prompt, max_new_tokens=50, use_cache=False)
        c.positions   # grows with the square of the length without the cache, linearly with it
    """
    counter = PositionCounter()

    def hook(module, args, kwargs):
        idx = args[0] if args else kwargs.get("input_ids", kwargs.get("idx"))
        if isinstance(idx, torch.Tensor):
            counter.calls += 1
            counter.positions += idx.numel()

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counter
    finally:
        handle.remove()


# --- prompts in and out -------------------------------------------------------------------------------

def _encode(prompt: Any, tokenizer: Any, model: Any, name: str = "prompt") -> tuple[torch.Tensor, str]:
    """Returns ``(ids (batch, seq), kind)`` on the model's device, where kind is "text", "list", "1d" or "2d".

    Ids are checked against the model's vocabulary."""
    vocab = _vocab_size(model)
    if isinstance(prompt, (list, tuple)) and all(checks.is_int(i) for i in prompt):
        checks.check_ids(prompt, name, vocab)  # before torch sees an id too large for int64
    idx, kind = _encode_ids(prompt, tokenizer, name)
    if vocab is not None and idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab):
        bad = idx[(idx < 0) | (idx >= vocab)].tolist()[:5]
        raise ValueError(f"{name} must hold token ids in 0..{vocab - 1} (the model's vocab_size={vocab}), "
                         f"got {bad}; encode text with the model's own tokenizer")
    return env.to_model_device(model, idx), kind


def _encode_ids(prompt: Any, tokenizer: Any, name: str) -> tuple[torch.Tensor, str]:
    device = torch.device("cpu")
    if tokenizer is not None and not (hasattr(tokenizer, "encode") and callable(tokenizer.encode)):
        raise TypeError(f"tokenizer must be a tokenizer with .encode(text) or None, got {type(tokenizer).__name__}")
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError(f"{name} is text, so pass tokenizer=... (or pass token ids)")
        ids = tokenizer.encode(prompt)
        if len(ids) == 0:
            raise ValueError(f"{name} {prompt!r} encodes to no tokens; give at least one token")
        return torch.tensor([ids], dtype=torch.long, device=device), "text"
    if isinstance(prompt, torch.Tensor):
        if prompt.dtype.is_floating_point or prompt.dtype == torch.bool or prompt.dim() not in (1, 2):
            raise TypeError(f"{name} must be a LongTensor of ids of shape (seq,) or (batch, seq), got dtype "
                            f"{prompt.dtype} and shape {tuple(prompt.shape)}")
        if prompt.size(-1) == 0:
            raise ValueError(f"{name} is empty; give at least one token")
        kind = "1d" if prompt.dim() == 1 else "2d"
        return prompt.long().reshape(-1, prompt.size(-1)), kind
    if isinstance(prompt, (list, tuple)) and all(checks.is_int(i) for i in prompt):
        if len(prompt) == 0:
            raise ValueError(f"{name} is empty; give at least one token")
        return torch.tensor([[int(i) for i in prompt]], dtype=torch.long, device=device), "list"
    raise TypeError(f"{name} must be text (with tokenizer=...), a list of int ids or a LongTensor, "
                    f"got {type(prompt).__name__}")


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids))


def _token_id(token: int | str | None, tokenizer: Any, what: str) -> int | None:
    if token is None or checks.is_int(token):
        return None if token is None else checks.check_int(token, what, 0)
    if isinstance(token, str):
        if tokenizer is None:
            raise ValueError(f"{what}={token!r} is a token string, so pass tokenizer=... (or pass its id)")
        if hasattr(tokenizer, "token_to_id"):
            try:
                return tokenizer.token_to_id(token)
            except (KeyError, ValueError) as err:
                raise ValueError(f"{what}={token!r} is not a token of the tokenizer") from err
        return tokenizer.convert_tokens_to_ids(token)
    raise TypeError(f"{what} must be a token id, a token string or None, got {token!r}")


def _vocab_token(tokenizer: Any, i: int) -> str:
    if hasattr(tokenizer, "id_to_token"):
        return tokenizer.id_to_token(i)
    return tokenizer.convert_ids_to_tokens(i)


# --- next-token distribution and autoregressive generation ---------------------------------------------

def next_token_distribution(model: nn.Module, prompt: Any, *, tokenizer: Any = None, temperature: float = 1.0,
                            top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """The model's distribution over the token after ``prompt``: ``(vocab,)``, or ``(batch, vocab)``
    for a 2-D prompt. With ``temperature``/``top_k``/``top_p`` it is the distribution sampling draws from.
    """
    if not _is_causal(model):
        raise TypeError("next_token_distribution needs a causal (next-word) model; for a masked model use "
                        "fill_mask with a mask token in the slot")
    _check_temperature(temperature), _check_top_k(top_k), _check_top_p(top_p)
    idx, kind = _encode(prompt, tokenizer, model)
    with _eval_mode(model):
        logits = _logits(model, idx[:, -_context_length(model):])[0][:, -1]
        probs = sampling_distribution(logits, temperature, top_k, top_p)
    return probs if kind == "2d" else probs[0]


def generate(model: nn.Module, prompt: Any, max_new_tokens: int = 20, *, tokenizer: Any = None,
             strategy: str | None = None, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, num_beams: int = 4, num_samples: int = 1, seed: int | None = None,
             stop_at: int | str | None = None, use_cache: bool = True):
    """Continue ``prompt`` by ``max_new_tokens`` tokens.

    Args:
        strategy: ``"greedy"`` (argmax every step), ``"sample"`` (draw from
            :func:`sampling_distribution` with ``temperature``, ``top_k``, ``top_p``) or ``"beam"``
            (:func:`beam_search` with ``num_beams``). Default: ``"sample"``.
        num_samples: continuations per prompt row (sampled independently).
        seed: seeds a ``torch.Generator`` for sampling (None: torch's global generator).
        stop_at: a token (id or string, e.g. ``"."``) that ends a row; later positions repeat it.
        use_cache: use the key-value cache (our Transformer, hub models); False recomputes every step.

    Returns the prompt with its continuation, in the prompt's form: text for text (a list of texts if
    ``num_samples > 1``), a list of ids for a list, a LongTensor ``(seq + new,)`` or
    ``(batch * num_samples, seq + new)`` for a tensor.
    """
    strategy = "sample" if strategy is None else strategy
    checks.check_choice(strategy, "strategy", STRATEGIES)
    checks.check_bool(use_cache, "use_cache")
    _check_count("num_beams", num_beams, 1)
    seed = None if seed is None else checks.seed_of(seed)
    if not _is_causal(model):
        raise TypeError("generate needs a causal (next-word) model; for a masked model use fill_mask")
    _check_count("max_new_tokens", max_new_tokens, 0)
    _check_count("num_samples", num_samples, 1)
    _check_temperature(temperature), _check_top_k(top_k), _check_top_p(top_p)
    device = _device(model)
    idx, kind = _encode(prompt, tokenizer, model)
    stop_id = _token_id(stop_at, tokenizer, "stop_at")
    if strategy == "beam":
        if num_samples != 1 or idx.size(0) != 1:
            raise ValueError("strategy='beam' takes one prompt and num_samples=1; call beam_search for all beams")
        best = beam_search(model, idx[0], num_beams=num_beams, max_new_tokens=max_new_tokens, stop_at=stop_id,
                           use_cache=use_cache)[0]
        out = torch.tensor([best.ids], dtype=torch.long, device=device)
    else:
        if num_samples > 1:
            idx = idx.repeat_interleave(num_samples, dim=0)
        generator = (None if seed is None or strategy != "sample"
                     else torch.Generator(device=device).manual_seed(seed))
        out = _autoregress(model, idx, max_new_tokens, strategy, temperature, top_k, top_p, generator,
                           stop_id, use_cache)
    if kind == "text":
        texts = [_decode(tokenizer, _trim(row.tolist(), stop_id, idx.size(1))) for row in out]
        return texts[0] if len(texts) == 1 else texts
    if kind == "list":
        rows = [_trim(row.tolist(), stop_id, idx.size(1)) for row in out]
        return rows[0] if len(rows) == 1 else rows
    if kind == "1d" and out.size(0) == 1:
        return out[0]
    return out


def _trim(ids: list[int], stop_id: int | None, prompt_len: int) -> list[int]:
    if stop_id is None or stop_id not in ids[prompt_len:]:
        return ids
    return ids[: prompt_len + ids[prompt_len:].index(stop_id) + 1]


def _autoregress(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, strategy: str, temperature: float,
                 top_k: int | None, top_p: float | None, generator: torch.Generator | None,
                 stop_id: int | None, use_cache: bool) -> torch.Tensor:
    """The generation loop: ``idx`` ``(batch, seq)`` -> ``(batch, seq + max_new_tokens)``."""
    if max_new_tokens == 0:
        return idx
    batch, start = idx.shape
    out = torch.empty(batch, start + max_new_tokens, dtype=torch.long, device=idx.device)
    out[:, :start] = idx
    done = torch.zeros(batch, dtype=torch.bool, device=idx.device)
    with _eval_mode(model):
        stepper = _Stepper(model, use_cache)
        logits = stepper.start(idx)
        for t in range(start, start + max_new_tokens):
            if strategy == "greedy":
                nxt = torch.argmax(logits, dim=-1)
            else:
                nxt = sample_from_logits(logits, temperature, top_k, top_p, generator)
            if stop_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, stop_id), nxt)
                done |= nxt == stop_id
            out[:, t] = nxt
            if t + 1 == out.size(1) or (stop_id is not None and bool(done.all())):
                if t + 1 < out.size(1):
                    out[:, t + 1:] = stop_id
                break
            logits = stepper.step(out[:, : t + 1])
    return out


def greedy(model: nn.Module, prompt: Any, max_new_tokens: int = 20, **kwargs):
    """:func:`generate` with ``strategy="greedy"``."""
    return generate(model, prompt, max_new_tokens, strategy="greedy", **kwargs)


def sample(model: nn.Module, prompt: Any, max_new_tokens: int = 20, **kwargs):
    """:func:`generate` with ``strategy="sample"``."""
    return generate(model, prompt, max_new_tokens, strategy="sample", **kwargs)


# --- beam search -----------------------------------------------------------------------------------------

@dataclass
class Beam:
    """One hypothesis of :func:`beam_search`: all ``ids`` (prompt included), the log-probability of the
    new tokens, its ``score`` (the log-probability divided by ``new_tokens ** length_penalty``) and,
    with a tokenizer, its ``text``."""

    ids: list[int]
    logprob: float
    score: float
    new_tokens: int
    text: str | None = None


def beam_search(model: nn.Module, prompt: Any, num_beams: int = 4, max_new_tokens: int = 20, *,
                tokenizer: Any = None, stop_at: int | str | None = None, length_penalty: float = 0.0,
                use_cache: bool = True) -> list[Beam]:
    """Beam search: keep the ``num_beams`` most probable continuations at every step.

    A hypothesis that emits ``stop_at`` is finished; the search ends after ``max_new_tokens`` steps,
    or once ``num_beams`` hypotheses are finished and no open one can still beat them. Returns up to
    ``num_beams`` :class:`Beam`\\ s, best first (finished ones and, if too few, the open ones).
    ``length_penalty`` (>= 0) ranks by ``logprob / new_tokens ** length_penalty``; 0 ranks by
    log-probability (with one beam the search is then greedy decoding). With ``use_cache`` our
    Transformer keeps one key-value cache row per beam (reordered as beams survive); hub models and
    ``use_cache=False`` recompute the beams every step.
    """
    if not _is_causal(model):
        raise TypeError("beam_search needs a causal (next-word) model")
    _check_count("num_beams", num_beams, 1)
    _check_count("max_new_tokens", max_new_tokens, 0)
    length_penalty = checks.check_real(length_penalty, "length_penalty", 0, hint="0 ranks by log-probability")
    checks.check_bool(use_cache, "use_cache")
    device = _device(model)
    idx, _ = _encode(prompt, tokenizer, model)
    if idx.size(0) != 1:
        raise ValueError(f"beam_search takes one prompt, got a batch of {idx.size(0)}")
    stop_id = _token_id(stop_at, tokenizer, "stop_at")
    context = _context_length(model)

    def score(logprob: float, n: int) -> float:
        return logprob / (max(n, 1) ** length_penalty) if length_penalty else logprob

    seqs = idx                                        # (beams, seq)
    logps = torch.zeros(1, device=device)             # (beams,)
    finished: list[Beam] = []
    cache = None
    with _eval_mode(model):
        if use_cache and not _is_hub(model) and _supports_cache(model) and idx.size(1) < context:
            cache = model.new_kv_cache()
            logits = _logits(model, idx, cache)[0][:, -1].float()
        else:
            logits = _logits(model, idx[:, -context:])[0][:, -1].float()
        for step in range(max_new_tokens):
            if step > 0:  # the logits after the tokens chosen in the previous step
                if cache is not None and seqs.size(1) <= context:
                    cache.reorder(rows)
                    logits = _logits(model, tokens[:, None], cache)[0][:, -1].float()
                else:
                    cache = None
                    logits = _logits(model, seqs[:, -context:])[0][:, -1].float()
            cand = (logps[:, None] + torch.log_softmax(logits, dim=-1)).reshape(-1)  # (beams * vocab,)
            vocab = logits.size(-1)
            k = min(cand.numel(), 2 * num_beams)
            top = torch.topk(cand, k)
            alive_rows, alive_logps = [], []
            for value, flat in zip(top.values.tolist(), top.indices.tolist()):
                if value == float("-inf"):
                    break
                row, token = divmod(flat, vocab)
                if stop_id is not None and token == stop_id:
                    ids = seqs[row].tolist() + [token]
                    finished.append(Beam(ids, value, score(value, step + 1), step + 1))
                else:
                    alive_rows.append((row, token))
                    alive_logps.append(value)
                if len(alive_rows) == num_beams:
                    break
            if not alive_rows:
                seqs = seqs[:0]
                break
            rows = torch.tensor([r for r, _ in alive_rows], device=device)
            tokens = torch.tensor([t for _, t in alive_rows], device=device)
            seqs = torch.cat([seqs[rows], tokens[:, None]], dim=1)
            logps = torch.tensor(alive_logps, device=device)
            if len(finished) >= num_beams:
                worst = sorted(b.score for b in finished)[-num_beams]
                # log-probabilities only fall, so with no length penalty an open beam cannot catch up
                if length_penalty == 0 and float(logps.max()) <= worst:
                    break
    n_new = seqs.size(1) - idx.size(1)
    open_beams = [Beam(s.tolist(), lp, score(lp, n_new), n_new) for s, lp in zip(seqs, logps.tolist())]
    ranked = sorted(finished, key=lambda b: -b.score)[:num_beams]
    if len(ranked) < num_beams:
        ranked = sorted(ranked + open_beams, key=lambda b: -b.score)[:num_beams]
    if tokenizer is not None:
        for b in ranked:
            b.text = _decode(tokenizer, b.ids)
    return ranked


# --- masked filling ------------------------------------------------------------------------------------

def _mask_id(tokenizer: Any, mask_id: int | None) -> int:
    if mask_id is not None:
        return checks.check_int(mask_id, "mask_id", 0)
    for name in ("mask_id", "mask_token_id"):
        value = getattr(tokenizer, name, None)
        if isinstance(value, int):
            return value
    raise ValueError("fill_mask needs the mask token's id: pass tokenizer=... (with a mask token) or mask_id=...")


def fill_mask(model: nn.Module, prompt: Any, *, tokenizer: Any = None, mask_id: int | None = None,
              temperature: float = 1.0) -> torch.Tensor:
    """The distribution of every masked slot given both sides: ``(n_masks, vocab)``, slots left to right.

    ``prompt`` holds one or more mask tokens (``"<mask>"`` for lmlab's word tokenizer, ``"[MASK]"`` for
    BERT's) or, as ids, ``mask_id``. Works for masked models (ours with ``causal=False``, hub
    ``...ForMaskedLM``). With a causal model it raises: a next-word model sees only the left side.
    """
    if _is_causal(model):
        raise TypeError("fill_mask needs a masked model (causal=False or a hub ...ForMaskedLM); for a causal "
                        "model use next_token_distribution on the left context")
    _check_temperature(temperature)
    idx, _ = _encode(prompt, tokenizer, model)
    if idx.size(0) != 1:
        raise ValueError(f"fill_mask takes one prompt, got a batch of {idx.size(0)}")
    mid = _mask_id(tokenizer, mask_id)
    positions = (idx[0] == mid).nonzero().flatten()
    if positions.numel() == 0:
        raise ValueError(f"the prompt has no mask token (id {mid}); put one in the slot to fill")
    if idx.size(1) > _context_length(model):
        raise ValueError(f"the prompt has {idx.size(1)} tokens, more than the model's context "
                         f"{_context_length(model)}")
    with _eval_mode(model):
        logits = _logits(model, idx)[0][0, positions]
        return torch.softmax(apply_temperature(logits.float(), temperature), dim=-1)


def top_tokens(probs: torch.Tensor, tokenizer: Any, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable tokens of a distribution ``(vocab,)`` as ``(token, probability)`` pairs."""
    _check_count("k", k, 1)
    if not isinstance(probs, torch.Tensor) or probs.dim() != 1:
        raise TypeError(f"probs must be a 1-D tensor (vocab,), got {type(probs).__name__} "
                        f"{tuple(getattr(probs, 'shape', ()))}")
    values, ids = torch.topk(probs, min(k, probs.numel()))
    return [(_vocab_token(tokenizer, int(i)), float(v)) for v, i in zip(values, ids)]


# --- log-probabilities and perplexity --------------------------------------------------------------------

def token_logprobs(model: nn.Module, sequence: Any, *, tokenizer: Any = None, context: Any = None) -> torch.Tensor:
    """Log-probability (nats) of every token of ``sequence`` given what precedes it: ``(n,)``.

    With ``context`` (text or ids) every token of ``sequence`` is scored after it; without, the first
    token of ``sequence`` is the context and is not scored (``n = len(sequence) - 1``). A sequence longer
    than the model's context is scored in overlapping windows (every token with at least half the
    context before it).
    """
    if not _is_causal(model):
        raise TypeError("token_logprobs needs a causal (next-word) model")
    device = _device(model)
    seq, _ = _encode(sequence, tokenizer, model, "sequence")
    if seq.size(0) != 1:
        raise ValueError(f"sequence must be one sequence, got a batch of {seq.size(0)}")
    if context is not None:
        ctx, _ = _encode(context, tokenizer, model, "context")
        ids, first = torch.cat([ctx[0], seq[0]]), ctx.size(1)
    else:
        ids, first = seq[0], 1
    n, window = ids.numel(), _context_length(model)
    out = torch.empty(n - first, device=device)
    stride = max(1, window // 2)
    with _eval_mode(model):
        t = first  # the next target position to score
        while t < n:
            end = min(n, max(t + stride, window + 1))  # score targets t .. end-1 in this window
            start = max(0, end - 1 - window)           # inputs ids[start:end-1] predict ids[start+1:end]
            logits = _logits(model, ids[start:end - 1][None])[0][0].float()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[start + 1:end, None])[:, 0]
            out[t - first:end - first] = logp[t - start - 1:]
            t = end
    return out


def sequence_logprob(model: nn.Module, sequence: Any, *, tokenizer: Any = None, context: Any = None) -> float:
    """log p(sequence | context) in nats: the sum of :func:`token_logprobs`."""
    return float(token_logprobs(model, sequence, tokenizer=tokenizer, context=context).sum())


def perplexity(model: nn.Module, sequences: Any, *, tokenizer: Any = None, context: Any = None) -> float:
    """exp(mean negative log-probability per scored token) over one sequence or a list of them.

    Each sequence is scored with :func:`token_logprobs` (every token after the first, or every token
    after ``context``); the mean is pooled over all scored tokens.
    """
    if isinstance(sequences, (str, torch.Tensor)) or (isinstance(sequences, (list, tuple)) and sequences
                                                     and checks.is_int(sequences[0])):
        sequences = [sequences]
    if not isinstance(sequences, (list, tuple)) or not sequences:
        raise TypeError(f"sequences must be a text, ids, or a non-empty list of them, got {sequences!r:.60}")
    parts = [token_logprobs(model, s, tokenizer=tokenizer, context=context) for s in sequences]
    scores = torch.cat(parts)
    if scores.numel() == 0:
        raise ValueError("nothing to score: each sequence needs at least two tokens (or a context)")
    return math.exp(-float(scores.mean()))

"""Batches for training and the sentence-aligned evaluation of language models.

Training batches
    * :func:`next_token_batch`: random windows of a token stream, targets shifted by one.
    * :func:`masked_batch`: BERT's 80/10/10 rule on any rows (random windows or sentence-aligned
      rows made by :func:`sentence_rows`).

Evaluation
    A model scored on random windows meets some tokens at a window start, cut off from the words
    that predict them, and its loss comes out too high. :func:`evaluate_sentences` instead feeds each
    held-out sentence whole, after the end of the previous one (``"." + sentence``), so every token is
    scored with its whole sentence in context. The toy language's sentences are independent, so that
    is everything a token can depend on. :func:`exact_gap` compares the model with the toy language's
    exact log-probabilities, token by token.

Models follow the contract in CONTRIBUTING.md: ``model(idx (batch, seq)) -> logits (batch, seq,
vocab)``; for ``model.causal`` models ``logits[:, t]`` predicts token ``t+1``, for masked models
token ``t``. Counting models with ``next_distribution(context_ids) -> (vocab,)`` probabilities
(``NGramLM``) are scored too.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from . import checks, env
from .tokenizers import Tokenizer, WordTokenizer, encode_with_offsets

IGNORE_INDEX = -100


# --- inputs ---------------------------------------------------------------------------------

def _as_ids(ids: Any) -> torch.Tensor:
    if isinstance(ids, (list, tuple, np.ndarray)):
        ids = torch.as_tensor(checks.check_ids(ids, "ids"), dtype=torch.long)
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"ids must be a 1-D LongTensor (or a list of ints), got {type(ids).__name__}")
    if ids.dim() != 1 or ids.dtype != torch.long:
        raise ValueError(f"ids must be a 1-D LongTensor, got shape {tuple(ids.shape)} and dtype {ids.dtype}")
    return ids


def _check_pos_int(name: str, value: Any) -> int:
    return checks.check_int(value, name, 1)


def sentence_tokens(sentences: Sequence[Any]) -> list[list[str]]:
    """Normalise sentences to lists of words: accepts ``Sentence`` objects (with ``.tokens``),
    lists of words, or strings of words separated by spaces."""
    if isinstance(sentences, str):
        raise TypeError("sentences must be a list of sentences, got one str; split it or wrap it in a list")
    if sentences is None or not hasattr(sentences, "__iter__"):
        raise TypeError(f"sentences must be a list of sentences, got {type(sentences).__name__}")
    out = []
    for s in sentences:
        if isinstance(s, str):
            toks = s.split()
        elif hasattr(s, "tokens"):
            toks = list(s.tokens)
        else:
            toks = list(s)
        if not toks or not all(isinstance(t, str) for t in toks):
            raise ValueError(f"each sentence must be a non-empty list of word strings, got {s!r:.80}")
        out.append(toks)
    return out


# --- next-token training --------------------------------------------------------------------

def random_windows(ids: torch.Tensor, batch_size: int, length: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch_size`` windows of ``length`` consecutive ids, at uniformly random starts.

    ids: ``(N,)`` -> ``(batch, length)``.
    """
    ids = _as_ids(ids)
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("length", length)
    if len(ids) < length:
        raise ValueError(f"the stream has {len(ids)} tokens, fewer than the window length {length}")
    starts = torch.randint(0, len(ids) - length + 1, (batch_size,), generator=generator)
    return ids[(starts[:, None] + torch.arange(length)).to(ids.device)]


def next_token_batch(ids: torch.Tensor, batch_size: int, context: int,
                     generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random training windows for next-token prediction.

    ids: ``(N,)`` token stream. Returns ``x, y``, each ``(batch, context)``, with
    ``y[:, t] == x[:, t + 1]`` for ``t < context - 1``: ``y`` is ``x`` shifted left by one.
    """
    _check_pos_int("context", context)
    w = random_windows(ids, batch_size, context + 1, generator)
    x, y = w[:, :-1], w[:, 1:]
    if device is not None:
        x, y = x.to(device), y.to(device)
    return x, y


def stream_ids(sentences: Sequence[Any], tokenizer: Tokenizer) -> torch.Tensor:
    """The sentences as one token stream (text ``"s1 . s2 ."`` encoded): a LongTensor ``(N,)``."""
    _check_tokenizer(tokenizer)
    toks = sentence_tokens(sentences)
    if isinstance(tokenizer, WordTokenizer):
        return torch.tensor(tokenizer.encode_tokens([w for s in toks for w in s]), dtype=torch.long)
    return torch.tensor(tokenizer.encode(" ".join(" ".join(s) for s in toks)), dtype=torch.long)


# --- masked-LM training ---------------------------------------------------------------------

def masked_batch(rows: torch.Tensor, tokenizer: Tokenizer, mask_prob: float = 0.15,
                 generator: torch.Generator | None = None,
                 protect_special: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply BERT's 80/10/10 rule to rows of ids.

    Each position is chosen independently with probability ``mask_prob``, except padding (never)
    and special tokens (never, unless ``protect_special=False``; ``"."`` is an ordinary word). Of the
    chosen positions 80% become ``mask_id``, 10% a random ordinary token (which may by chance be the
    original) and 10% stay unchanged.

    rows: ``(batch, seq)`` (random windows, or sentence-aligned rows from :func:`sentence_rows`).
    Returns ``inputs (batch, seq)`` and ``targets (batch, seq)``: the original id at chosen
    positions, ``-100`` (ignored by ``F.cross_entropy``) elsewhere.
    """
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2 or rows.dtype != torch.long:
        raise ValueError(f"rows must be a LongTensor (batch, seq), got {getattr(rows, 'shape', type(rows).__name__)}")
    checks.check_real(mask_prob, "mask_prob", 0, 1, low_open=True)
    checks.check_bool(protect_special, "protect_special")
    _check_tokenizer(tokenizer)
    if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= tokenizer.vocab_size):
        checks.check_ids(rows.flatten(), "rows", tokenizer.vocab_size)
    device = rows.device
    protected = [tokenizer.pad_id] + (tokenizer.special_ids if protect_special else [])
    can_mask = ~torch.isin(rows, torch.tensor(protected, device=device))
    u = torch.rand(rows.shape, generator=generator).to(device)
    chosen = can_mask & (u < mask_prob)
    # One more uniform per position decides what a chosen position becomes.
    v = torch.rand(rows.shape, generator=generator).to(device)
    to_mask = chosen & (v < 0.8)
    to_random = chosen & (v >= 0.8) & (v < 0.9)
    ordinary = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in set(tokenizer.special_ids)])
    random_tokens = ordinary[torch.randint(0, len(ordinary), rows.shape, generator=generator)].to(device)
    inputs = torch.where(to_mask, torch.full_like(rows, tokenizer.mask_id), rows)
    inputs = torch.where(to_random, random_tokens, inputs)
    targets = torch.where(chosen, rows, torch.full_like(rows, IGNORE_INDEX))
    return inputs, targets


def sentence_rows(sentences: Sequence[Any], tokenizer: Tokenizer, max_len: int | None = None,
                  return_attention_mask: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Sentence-aligned rows, padded with ``pad_id``: no row starts or ends inside a sentence.

    With ``max_len=None`` each row holds one sentence (padded to the longest); otherwise
    consecutive whole sentences are packed greedily into rows of at most ``max_len`` tokens (a
    sentence longer than ``max_len`` raises). Returns a LongTensor ``(rows, seq)`` (and a bool
    attention mask ``(rows, seq)`` if asked).
    """
    _check_tokenizer(tokenizer)
    checks.check_bool(return_attention_mask, "return_attention_mask")
    toks = sentence_tokens(sentences)
    if isinstance(tokenizer, WordTokenizer):
        first = cont = [tokenizer.encode_tokens(s) for s in toks]
    else:  # a sentence after another one in the same row starts with the separating space
        first = [tokenizer.encode(" ".join(s)) for s in toks]
        cont = [tokenizer.encode(" " + " ".join(s)) for s in toks]
    if max_len is None:
        return tokenizer.pad(first, return_attention_mask=return_attention_mask)
    _check_pos_int("max_len", max_len)
    rows: list[list[int]] = []
    current: list[int] = []
    for i, s in enumerate(toks):
        if len(first[i]) > max_len:
            raise ValueError(f"sentence {i} has {len(first[i])} tokens, more than max_len={max_len}: "
                             f"{' '.join(s)!r:.80}; pass a larger max_len")
        if current and len(current) + len(cont[i]) <= max_len:
            current += cont[i]
        else:
            if current:
                rows.append(current)
            current = list(first[i])
    if current:
        rows.append(current)
    return tokenizer.pad(rows, max_length=max_len, return_attention_mask=return_attention_mask)


# --- evaluation -----------------------------------------------------------------------------

@dataclass
class _Item:
    ids: list[int]     # context + sentence, model tokens
    n_context: int     # how many leading ids are context (not scored)
    owner: list[int]   # for each scored id, the index of the sentence word it belongs to
    n_words: int


def _prepare(tokenizer: Tokenizer, toks: list[list[str]], context_token: str | None) -> list[_Item]:
    items = []
    for k, words in enumerate(toks):
        if isinstance(tokenizer, WordTokenizer):
            ctx = [] if context_token is None else [tokenizer.token_to_id(context_token)]
            sent = tokenizer.encode_tokens(words)
            ids, owner = ctx + sent, list(range(len(words)))
        else:
            # Each word owns the space before it: " the" is scored as part of "the".
            prefix = "" if context_token is None else context_token
            text = prefix + " ".join(words) if not prefix else prefix + " " + " ".join(words)
            ids, spans = encode_with_offsets(tokenizer, text)
            starts, pos = [], len(prefix)
            for w in words:
                starts.append(pos)  # the separating space (or the text start) belongs to w
                pos += len(w) + 1
            n_ctx = sum(1 for a, b in spans if b <= len(prefix))
            if any(a < len(prefix) < b for a, b in spans):
                raise ValueError(f"the tokenizer merges the context token {context_token!r} with the sentence "
                                 f"{' '.join(words)!r:.60}; pass another context_token")
            owner = [bisect.bisect_right(starts, b - 1) - 1 for a, b in spans[n_ctx:]]
            ctx = ids[:n_ctx]
        if tokenizer.unk_id in ids[len(ctx):]:
            bad = [w for w in words if tokenizer.unk_id in tokenizer.encode(w)]
            raise ValueError(f"sentence {k} has input the tokenizer does not know ({bad[:5]}): "
                             f"{' '.join(words)!r:.80}; evaluate on text from the tokenizer's domain")
        items.append(_Item(ids, len(ctx), owner, len(words)))
    return items


def _is_causal(model: Any) -> bool:
    return bool(getattr(model, "causal", True))


def _model_device(model: torch.nn.Module) -> torch.device:
    return env.model_device(model)


def _check_tokenizer(tokenizer: Any) -> Tokenizer:
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be an lmlab tokenizer (lmlab.tokenizers), got {type(tokenizer).__name__}")
    return tokenizer


def _model_vocab_size(model: Any) -> int | None:
    value = getattr(model, "vocab_size", None)
    if value is None:
        value = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(value) if checks.is_int(value) else None


def _check_vocab(model: Any, tokenizer: Tokenizer) -> None:
    """A model scores a tokenizer's ids only if their vocabularies have the same size."""
    v = _model_vocab_size(model)
    if v is not None and v != tokenizer.vocab_size:
        raise ValueError(f"model's vocab_size ({v}) differs from the tokenizer's vocab_size ({tokenizer.vocab_size}): "
                         "pass the tokenizer the model was built for (for an NGramLM, "
                         "NGramLM(n, vocab_size=tokenizer.vocab_size))")


def _check_length(model: Any, n: int, k: int) -> None:
    limit = getattr(getattr(model, "config", None), "context_length", None)
    if limit is not None and n > limit:
        raise ValueError(f"sentence {k} needs {n} tokens of context (context token included) but the model's "
                         f"context_length is {limit}; it cannot be scored whole. Evaluate shorter sentences "
                         "or a model with a longer context")


def _batches_by_length(rows: list[list[int]], batch_size: int):
    """Group row indices by length (no padding needed) and cut into batches."""
    by_len: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by_len.setdefault(len(r), []).append(i)
    for length in sorted(by_len):
        idx = by_len[length]
        for s in range(0, len(idx), batch_size):
            yield idx[s: s + batch_size]


def _logprobs(model: torch.nn.Module, idx: torch.Tensor) -> torch.Tensor:
    logits = model(idx)
    if isinstance(logits, tuple):
        logits = logits[0]
    if logits.dim() != 3 or logits.shape[:2] != idx.shape:
        raise ValueError(f"model(idx) must return logits (batch, seq, vocab) = ({idx.shape[0]}, {idx.shape[1]}, V), "
                         f"got shape {tuple(logits.shape)}")
    return torch.log_softmax(logits.double(), dim=-1)


def _token_nll(model: Any, items: list[_Item], batch_size: int, device: torch.device | None,
               mask_id: int) -> list[np.ndarray]:
    """Negative log-likelihood of every scored model token, one array per item."""
    out = [np.zeros(len(it.ids) - it.n_context) for it in items]
    causal = _is_causal(model)
    if not isinstance(model, torch.nn.Module):
        if not hasattr(model, "next_distribution"):
            raise TypeError(f"model must be an nn.Module (model(idx) -> logits) or have next_distribution(context), "
                            f"got {type(model).__name__}")
        for it, nll in zip(items, out):
            for j, t in enumerate(range(it.n_context, len(it.ids))):
                p = float(np.asarray(model.next_distribution(it.ids[:t]))[it.ids[t]])
                nll[j] = -math.log(p) if p > 0 else math.inf
        return out
    device = env.model_device(model)  # ids go where the model is (env.to_model_device); ``device`` is checked only
    for k, it in enumerate(items):
        _check_length(model, len(it.ids), k)
    if causal:
        if any(it.n_context == 0 for it in items):
            raise ValueError("a causal model cannot score a sentence's first token without context; "
                             "pass context_token='.' (the end of the previous sentence)")
        rows = [it.ids for it in items]
        for batch in _batches_by_length(rows, batch_size):
            idx = env.to_model_device(model, torch.tensor([rows[i] for i in batch], dtype=torch.long))
            lp = _logprobs(model, idx)
            nll = -lp[:, :-1].gather(-1, idx[:, 1:, None])[..., 0].cpu().numpy()  # (batch, seq-1)
            for b, i in enumerate(batch):
                out[i][:] = nll[b, items[i].n_context - 1:]
        return out
    # Masked model: pseudo-log-likelihood, one row per scored position with that position masked.
    rows, where = [], []
    for i, it in enumerate(items):
        for j, t in enumerate(range(it.n_context, len(it.ids))):
            row = list(it.ids)
            row[t] = mask_id
            rows.append(row)
            where.append((i, j, t))
    for batch in _batches_by_length(rows, batch_size):
        idx = env.to_model_device(model, torch.tensor([rows[r] for r in batch], dtype=torch.long))
        pos = torch.tensor([where[r][2] for r in batch], device=device)
        target = torch.tensor([items[where[r][0]].ids[where[r][2]] for r in batch], device=device)
        nll = -_logprobs(model, idx)[torch.arange(len(batch), device=device), pos, target].cpu().numpy()
        for b, r in enumerate(batch):
            i, j, _ = where[r]
            out[i][j] = nll[b]
    return out


def evaluate_sentences(model: Any, tokenizer: Tokenizer, sentences: Sequence[Any], batch_size: int = 256,
                       context_token: str | None = ".", device: torch.device | str | None = None,
                       per: str = "word") -> list[np.ndarray]:
    """Score every token of held-out sentences with its whole sentence in the model's context.

    Each sentence is fed as ``context_token + sentence`` (default ``"."``, the end of the previous
    sentence), so its first word is predicted the way it is met in running text, and no token is
    cut off from its sentence by a window start. Sentences of equal length are batched together
    (no padding). A sentence longer than ``model.config.context_length`` raises.

    * causal models (``model.causal`` true, or a model with ``next_distribution``): the NLL of each
      token given everything before it;
    * masked models: the pseudo-log-likelihood, each position masked alone and scored given the
      rest.

    Returns one float64 array per sentence, in nats. With ``per="word"`` (default) it has one entry
    per word of the sentence (``"."`` included), aligned with the sentence's tokens: for a character
    or BPE tokenizer a word's entry sums its pieces, the space before it included. ``per="token"``
    gives the model's own tokens.
    """
    checks.check_choice(per, "per", ("word", "token"))
    _check_pos_int("batch_size", batch_size)
    _check_tokenizer(tokenizer)
    checks.check_str(context_token, "context_token", allow_none=True)
    if device is not None:
        device = env.device(device)
    _check_vocab(model, tokenizer)
    toks = sentence_tokens(sentences)
    items = _prepare(tokenizer, toks, context_token)
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            nll = _token_nll(model, items, batch_size, device, tokenizer.mask_id)
    finally:
        if was_training:
            model.train()
    if per == "token":
        return nll
    return [np.bincount(it.owner, weights=v, minlength=it.n_words) for it, v in zip(items, nll)]


def exact_token_nll(lang: Any, sentences: Sequence[Any], masked: bool = False) -> list[np.ndarray]:
    """The toy language's exact NLL of every word, one float64 array per sentence.

    ``masked=False``: ``-log p(word | the words before it)`` (``lang.token_logprobs``);
    ``masked=True``: ``-log p(word | all the other words)`` (``lang.masked_distribution``).
    """
    if not hasattr(lang, "token_logprobs") or not hasattr(lang, "masked_distribution"):
        raise TypeError(f"lang must be a toy language (lmlab.corpus.toy()), got {type(lang).__name__}")
    checks.check_bool(masked, "masked")
    out = []
    for words in sentence_tokens(sentences):
        if masked:
            nll = [-math.log(lang.masked_distribution(words, i).get(w, 0.0) or 1e-300) for i, w in enumerate(words)]
            out.append(np.array(nll, dtype=np.float64))
        else:
            out.append(-np.asarray(lang.token_logprobs(words), dtype=np.float64))
        if len(out[-1]) != len(words):
            raise ValueError(f"the language gave {len(out[-1])} log-probabilities for {len(words)} words")
    return out


@dataclass
class GapResult:
    """A model against the exact language on the same held-out tokens (nats per token).

    ``gap = model_nll - exact_nll``, means over all ``n_tokens`` words; ``gap_se`` is its standard
    error, treating sentences (not tokens) as the independent units.
    """

    gap: float
    model_nll: float
    exact_nll: float
    n_tokens: int
    n_sentences: int
    gap_se: float
    model_token_nll: list[np.ndarray] = field(repr=False)
    exact_token_nll: list[np.ndarray] = field(repr=False)


def exact_gap(model: Any, tokenizer: Tokenizer, lang: Any, sentences: Sequence[Any], **kwargs: Any) -> GapResult:
    """How far a model's loss is above the exact one, on every token of ``sentences``.

    Causal models are compared with ``lang.token_logprobs``; masked models (``model.causal`` false)
    by pseudo-log-likelihood with ``lang.masked_distribution``, which needs one model token per word
    (a word tokenizer). ``kwargs`` go to :func:`evaluate_sentences`.
    """
    toks = checks.check_nonempty(sentence_tokens(sentences), "sentences", "sentence")
    _check_tokenizer(tokenizer)
    _check_vocab(model, tokenizer)
    masked = not _is_causal(model)
    if masked and not isinstance(tokenizer, WordTokenizer):
        raise ValueError("the masked-LM gap compares one masked word at a time, so it needs a WordTokenizer "
                         f"(one token per word), got {type(tokenizer).__name__}")
    model_nll = evaluate_sentences(model, tokenizer, toks, per="word", **kwargs)
    exact = exact_token_nll(lang, toks, masked=masked)
    d_sent = np.array([float((m - e).sum()) for m, e in zip(model_nll, exact)])
    n_sent = np.array([len(e) for e in exact], dtype=np.float64)
    n = int(n_sent.sum())
    gap = float(d_sent.sum() / n)
    s = len(toks)
    se = math.sqrt(float(((d_sent - gap * n_sent) ** 2).sum()) / (s * (s - 1))) / float(n_sent.mean()) if s > 1 else math.nan
    return GapResult(gap=gap, model_nll=float(sum(m.sum() for m in model_nll) / n),
                     exact_nll=float(sum(e.sum() for e in exact) / n), n_tokens=n, n_sentences=s, gap_se=se,
                     model_token_nll=model_nll, exact_token_nll=exact)

"""Language models for the course, from counting to transformers, all open for inspection.

* :class:`NGramLM`: a counting n-gram model over integer token ids (add-k, Jelinek-Mercer
  interpolation or interpolated Kneser-Ney), exposing its ``counts`` and conditional probabilities.
* :class:`MLPLM`: Bengio et al. (2003): a fixed window of previous tokens, embeddings concatenated,
  a tanh hidden layer.
* :class:`RNNLM`: a recurrent LM (GRU, LSTM or a plain tanh RNN).
* :class:`Transformer`: one :class:`Block` for a GPT-style causal decoder (``causal=True``) and a
  BERT-style masked LM (``causal=False``), with the variants chosen in :class:`TransformerConfig`.

Every neural model maps ``idx (batch, seq)`` to ``logits (batch, seq, vocab)``. For causal models
``logits[:, t]`` predicts token ``t + 1``; for masked models ``logits[:, t]`` predicts token ``t``.

Inspection follows TransformerLens: every activation passes through a named :class:`HookPoint`
(an identity layer), ``logits, cache = model.run_with_cache(idx)`` records them all, and
``model.run_with_hooks(idx, hooks={name: fn})`` lets ``fn(activation)`` return a replacement
(ablate or patch a head or a neuron). ``model.hook_names()`` lists the names.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from . import checks, env

__all__ = [
    "ACTIVATIONS", "POSITIONS", "NORMS", "PRESETS",
    "NGramLM", "MLPConfig", "MLPLM", "RNNConfig", "RNNLM",
    "TransformerConfig", "Transformer", "Block", "Attention", "MLP", "KVCache", "HookPoint",
    "sinusoidal_positions", "apply_rotary",
]

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu", "geglu", "reglu")
GLU_ACTIVATIONS = {"swiglu": "silu", "geglu": "gelu", "reglu": "relu"}  # variant -> gate activation
POSITIONS = ("learned", "sinusoidal", "rotary", "none")
NORMS = ("pre", "post")


# --- argument checks ------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int = 1) -> None:
    checks.check_int(value, name, minimum)


def _check_float(name: str, value, low: float, high: float, low_open: bool = False) -> None:
    checks.check_real(value, name, low if math.isfinite(low) else None, high if math.isfinite(high) else None,
                      low_open=low_open)


def _check_bool(name: str, value) -> None:
    checks.check_bool(value, name)


def _check_choice(name: str, value, allowed: Sequence[str]) -> None:
    checks.check_choice(value, name, allowed)


def _activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return {
        "relu": F.relu,
        "gelu": F.gelu,
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "silu": F.silu,
    }[name]


def _as_ids(idx, vocab_size: int, name: str = "idx") -> torch.Tensor:
    """Check a ``(batch, seq)`` tensor of token ids and return it as int64."""
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"{name} must be a LongTensor of shape (batch, seq), got {type(idx).__name__}; "
                        "wrap a list of ids with torch.tensor([ids])")
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise TypeError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
    if idx.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, seq), got shape {tuple(idx.shape)}; "
                         "for one sequence pass idx[None]")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size - 1}] (vocab_size={vocab_size}), "
                         f"got ids from {int(idx.min())} to {int(idx.max())}")
    return idx.long()


# --- inspection: hook points, run_with_cache, run_with_hooks ----------------------------------------

class HookPoint(nn.Identity):
    """An identity layer that names an activation; its module path is the activation's name."""


HookFn = Callable[[torch.Tensor], "torch.Tensor | None"]


class Inspectable(nn.Module):
    """Base class of the neural LMs: ``run_with_cache``, ``run_with_hooks``, ``num_parameters``."""

    config: object

    @property
    def causal(self) -> bool:
        return True

    def hook_names(self) -> list[str]:
        """Names of every activation ``run_with_cache`` records, in forward order."""
        return list(self._hook_points())

    def _hook_points(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    @contextmanager
    def _inspecting(self) -> Iterator[None]:
        yield

    @contextmanager
    def _hooked(self, cache: dict | None, names: Iterable[str] | None, hooks: dict[str, HookFn]):
        points = self._hook_points()
        if not isinstance(hooks, dict):
            raise TypeError(f"hooks must be a dict {{name: fn}}, got {type(hooks).__name__}")
        wanted = None if names is None else set([names] if isinstance(names, str) else names)
        unknown = sorted((set(hooks) | (wanted or set())) - set(points))
        if unknown:
            raise ValueError(f"unknown activation name(s) {unknown}; see model.hook_names(), e.g. "
                             f"{list(points)[:6]}")
        handles = []
        for name, point in points.items():
            fn = hooks.get(name)
            record = cache is not None and (wanted is None or name in wanted)
            if fn is None and not record:
                continue
            if fn is not None and not callable(fn):
                raise TypeError(f"hook for {name!r} must be a function of the activation, got {fn!r}")

            def hook(module, inputs, output, name=name, fn=fn, record=record):
                if fn is not None:
                    new = fn(output)
                    if new is not None:
                        if not isinstance(new, torch.Tensor) or new.shape != output.shape:
                            raise ValueError(f"hook for {name!r} must return None or a tensor of shape "
                                             f"{tuple(output.shape)}, got {getattr(new, 'shape', new)!r}")
                        output = new
                if record:
                    cache[name] = output.detach()
                return output

            handles.append(point.register_forward_hook(hook))
        try:
            with self._inspecting():
                yield
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(self, idx: torch.Tensor, names: Iterable[str] | None = None,
                       hooks: dict[str, HookFn] | None = None, **forward_kwargs):
        """Run the model and record its named activations.

        Returns ``(logits, cache)``: ``cache`` maps names (see :meth:`hook_names`) to detached
        tensors. ``names`` keeps only some; ``hooks`` are applied first, so the cache shows patched
        values. Transformers use their explicit attention path here, so attention patterns exist.
        """
        cache: dict[str, torch.Tensor] = {}
        with self._hooked(cache, names, hooks or {}):
            logits = self(idx, **forward_kwargs)
        return logits, cache

    def run_with_hooks(self, idx: torch.Tensor, hooks: dict[str, HookFn], **forward_kwargs) -> torch.Tensor:
        """Run the model with ``hooks = {name: fn}``; ``fn(activation)`` returns a replacement
        tensor of the same shape (or ``None`` after editing in place). Returns the logits.

        >>> def ablate_head_0(pattern):           # (batch, heads, seq, seq)
        ...     pattern = pattern.clone(); pattern[:, 0] = 0; return pattern
        >>> logits = model.run_with_hooks(idx, {"blocks.0.attn.pattern": ablate_head_0})
        """
        with self._hooked(None, None, hooks):
            return self(idx, **forward_kwargs)

    def _embedding_parameters(self) -> list[nn.Parameter]:
        return []

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (shared ones counted once); ``exclude_embeddings`` leaves out the
        token and position embeddings and the unembedding, as in scaling-law counts."""
        skip = {id(p) for p in self._embedding_parameters()} if exclude_embeddings else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)


# --- counting --------------------------------------------------------------------------------------

class NGramLM:
    """A counting n-gram language model over integer token ids.

    ``p(w | h)`` uses the previous ``n - 1`` tokens ``h``. Smoothing:

    * ``"add-k"``: ``(c(h, w) + k) / (c(h) + k V)`` at the top order only; ``k=0`` is the maximum
      likelihood estimate (an unseen context then gets the uniform distribution, by convention).
    * ``"jelinek-mercer"``: ``p_m = lambda_m p_ML(w | h_m) + (1 - lambda_m) p_{m-1}``, from the uniform
      distribution up to order ``n``; a context never seen at order ``m`` skips that order.
    * ``"kneser-ney"`` (default): interpolated Kneser-Ney with absolute discount ``D``; lower orders
      use continuation counts (how many different tokens precede), the unigram level is interpolated
      with the uniform distribution, so every token gets some probability.

    Every distribution sums to 1 over the ``vocab_size`` ids.

    ``bos_id``: when given, each sequence is padded on the left with ``n - 1`` copies before counting
    and scoring (and short contexts likewise), so the first tokens are predicted "at the start".
    Without it the first tokens of a sequence are predicted from the shorter history they have.

    ``counts[m]`` maps a context tuple of ``m - 1`` ids to a ``Counter`` of the tokens that followed it
    (``counts[n][(a, b)][c]`` is the count of the n-gram ``a b c``).
    """

    SMOOTHINGS = ("add-k", "jelinek-mercer", "kneser-ney")

    def __init__(self, n: int, vocab_size: int | None = None, smoothing: str = "kneser-ney", k: float = 1.0,
                 discount: float = 0.75, lambdas: float | Sequence[float] = 0.8, bos_id: int | None = None):
        _check_int("n", n, 1)
        if vocab_size is not None:
            _check_int("vocab_size", vocab_size, 1)
        _check_choice("smoothing", smoothing, self.SMOOTHINGS)
        _check_float("k", k, 0.0, math.inf)
        _check_float("discount", discount, 0.0, 1.0, low_open=True)
        lam = [lambdas] * n if isinstance(lambdas, (int, float)) and not isinstance(lambdas, bool) else list(lambdas)
        if len(lam) != n:
            raise ValueError(f"lambdas must be one number or {n} numbers (orders 1..{n}), got {lambdas!r}")
        for i, value in enumerate(lam):
            _check_float(f"lambdas[{i}]", value, 0.0, 1.0)
        if bos_id is not None:
            _check_int("bos_id", bos_id, 0)
        self.n, self.vocab_size, self.smoothing = int(n), vocab_size, smoothing
        self.k, self.discount, self.lambdas, self.bos_id = float(k), float(discount), lam, bos_id
        self.counts: dict[int, dict[tuple, Counter]] = {}
        self.continuation: dict[int, dict[tuple, Counter]] = {}

    causal = True

    @property
    def context_length(self) -> int:
        """How many previous tokens the model looks at (``n - 1``)."""
        return self.n - 1

    def __repr__(self) -> str:
        return (f"NGramLM(n={self.n}, vocab_size={self.vocab_size}, smoothing={self.smoothing!r}, "
                f"fitted={bool(self.counts)})")

    @staticmethod
    def _sequences(sequences) -> list[list[int]]:
        if isinstance(sequences, torch.Tensor):
            sequences = sequences.tolist()
        elif isinstance(sequences, np.ndarray):
            sequences = sequences.tolist()
        sequences = list(sequences)
        if sequences and isinstance(sequences[0], (int, np.integer)):
            sequences = [sequences]  # one flat sequence of ids
        out = []
        for s in sequences:
            s = s.tolist() if isinstance(s, (torch.Tensor, np.ndarray)) else list(s)
            if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in s):
                raise TypeError(f"sequences must hold integer token ids (encode text first), got {s[:5]!r}...")
            out.append([int(t) for t in s])
        return out

    def _pad(self, seq: list[int]) -> list[int]:
        return ([self.bos_id] * (self.n - 1) if self.bos_id is not None else []) + seq

    def fit(self, sequences) -> "NGramLM":
        """Count every m-gram (m = 1..n) in ``sequences`` (lists/arrays of ids, or one flat list).

        Returns ``self``. Refitting starts from zero.
        """
        seqs = self._sequences(sequences)
        top = max((max(s) for s in seqs if s), default=-1)
        if self.bos_id is not None:
            top = max(top, self.bos_id)
        if self.vocab_size is None:
            if top < 0:
                raise ValueError("no token ids to count: pass a non-empty list of sequences, or give vocab_size")
            self.vocab_size = top + 1
        elif top >= self.vocab_size:
            raise ValueError(f"token id {top} is out of range for vocab_size={self.vocab_size}")
        if any(t < 0 for s in seqs for t in s):
            raise ValueError("token ids must be >= 0")
        counts = {m: defaultdict(Counter) for m in range(1, self.n + 1)}
        start = self.n - 1 if self.bos_id is not None else 0
        for seq in seqs:
            s = self._pad(seq)
            for i in range(start, len(s)):
                for m in range(1, min(self.n, i + 1) + 1):
                    counts[m][tuple(s[i - m + 1:i])][s[i]] += 1
        self.counts = {m: dict(c) for m, c in counts.items()}
        # continuation counts for Kneser-Ney: N1+(. h w) = how many distinct tokens precede "h w"
        cont = {m: defaultdict(Counter) for m in range(1, self.n)}
        for m in range(2, self.n + 1):
            for ctx, nxt in self.counts[m].items():
                for w in nxt:
                    cont[m - 1][ctx[1:]][w] += 1
        self.continuation = {m: dict(c) for m, c in cont.items()}
        return self

    def count(self, *ngram: int) -> int:
        """Raw count of an n-gram given as ids, e.g. ``lm.count(3, 5, 7)``."""
        if not 1 <= len(ngram) <= self.n:
            raise ValueError(f"give 1 to {self.n} token ids, got {len(ngram)}")
        self._require_fit()
        ngram = tuple(checks.check_ids(ngram, "ngram", self.vocab_size))
        return self.counts[len(ngram)].get(tuple(ngram[:-1]), Counter())[ngram[-1]]

    def _require_fit(self) -> None:
        if not self.counts:
            raise ValueError("this NGramLM has not been fitted yet; call lm.fit(sequences) first")

    def _vector(self, counter: Counter | None) -> np.ndarray | None:
        if not counter:
            return None
        v = np.zeros(self.vocab_size)
        v[list(counter.keys())] = list(counter.values())
        return v

    def next_distribution(self, context: Sequence[int] = ()) -> np.ndarray:
        """``p(. | context)`` as an array ``(vocab,)`` summing to 1 (only the last ``n - 1`` ids matter)."""
        self._require_fit()
        if isinstance(context, (str, bytes)) or not hasattr(context, "__len__"):
            raise TypeError(f"context must be a sequence of int token ids, got {context!r:.60}")
        ctx = self._sequences([list(context)])[0] if len(context) else []
        if any(not 0 <= t < self.vocab_size for t in ctx):
            raise ValueError(f"context ids must be in [0, {self.vocab_size - 1}], got {ctx!r}")
        ctx = self._pad(ctx)[-(self.n - 1):] if self.n > 1 else []
        V = self.vocab_size
        top = len(ctx) + 1  # highest order this context allows
        if self.smoothing == "add-k":
            c = self._vector(self.counts[top].get(tuple(ctx)))
            if c is None or (self.k == 0 and c.sum() == 0):
                return np.full(V, 1.0 / V)
            return (c + self.k) / (c.sum() + self.k * V)
        p = np.full(V, 1.0 / V)
        for m in range(1, top + 1):
            h = tuple(ctx[len(ctx) - (m - 1):]) if m > 1 else ()
            if self.smoothing == "jelinek-mercer":
                c = self._vector(self.counts[m].get(h))
                if c is not None:
                    lam = self.lambdas[m - 1]
                    p = lam * c / c.sum() + (1 - lam) * p
            else:  # interpolated Kneser-Ney
                table = self.counts if m == top else self.continuation
                c = self._vector(table[m].get(h))
                if c is not None:
                    total, types, d = c.sum(), np.count_nonzero(c), self.discount
                    p = np.maximum(c - d, 0.0) / total + d * types / total * p
        return p

    def prob(self, token: int, context: Sequence[int] = ()) -> float:
        """``p(token | context)``."""
        self._require_fit()
        token = checks.check_id(token, "token", self.vocab_size)
        return float(self.next_distribution(context)[token])

    def token_logprobs(self, sequence: Sequence[int]) -> np.ndarray:
        """Natural log-probability of every token given the ones before it, ``(len(sequence),)``."""
        seq = self._sequences([list(sequence)])[0]
        out = np.empty(len(seq))
        with np.errstate(divide="ignore"):
            for i, tok in enumerate(seq):
                out[i] = np.log(self.prob(tok, seq[max(0, i - self.n + 1):i]))
        return out

    def logprob(self, sequence: Sequence[int]) -> float:
        """Natural log-probability of a whole sequence (``-inf`` if some token has probability 0)."""
        return float(self.token_logprobs(sequence).sum())

    def num_parameters(self) -> int:
        """How many numbers the model stores: the nonzero counts over all orders."""
        self._require_fit()
        return sum(len(c) for table in self.counts.values() for c in table.values())


# --- neural LMs before transformers -----------------------------------------------------------------

@dataclass
class MLPConfig:
    """Bengio et al. (2003) MLP LM: each prediction sees the ``window`` previous tokens.

    ``context_length`` is the longest sequence one call accepts (the model itself sees ``window``).
    ``pad_id`` fills the window before the first token: ``None`` adds a learned "before the start"
    embedding (id ``vocab_size``); an int reuses that token's embedding (e.g. the end-of-sentence id).
    ``direct`` adds the paper's direct connections from the embeddings to the output.
    """

    vocab_size: int
    window: int = 3
    d_embed: int = 32
    d_hidden: int = 128
    context_length: int = 128
    pad_id: int | None = None
    direct: bool = False
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("vocab_size", "window", "d_embed", "d_hidden", "context_length"):
            _check_int(name, getattr(self, name))
        if self.pad_id is not None:
            _check_int("pad_id", self.pad_id, 0)
            if self.pad_id >= self.vocab_size:
                raise ValueError(f"pad_id must be in [0, {self.vocab_size - 1}] or None, got {self.pad_id!r}")
        _check_bool("direct", self.direct)
        _check_float("dropout", self.dropout, 0.0, 1.0)


class MLPLM(Inspectable):
    """``logits[:, t] = U tanh(H x_t + d) (+ W x_t) + b`` where ``x_t`` concatenates the embeddings of
    tokens ``t - window + 1 .. t``. Hook names: ``embed (batch, seq, window*d_embed)``,
    ``hidden (batch, seq, d_hidden)``, ``logits``."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        if not isinstance(config, MLPConfig):
            raise TypeError(f"MLPLM needs an MLPConfig, got {type(config).__name__}")
        self.config = c = config
        self.pad_index = c.vocab_size if c.pad_id is None else c.pad_id
        self.wte = nn.Embedding(c.vocab_size + (c.pad_id is None), c.d_embed)
        self.fc = nn.Linear(c.window * c.d_embed, c.d_hidden)
        self.drop = nn.Dropout(c.dropout)
        self.out_proj = nn.Linear(c.d_hidden, c.vocab_size)
        self.direct = nn.Linear(c.window * c.d_embed, c.vocab_size, bias=False) if c.direct else None
        self.embed, self.hidden, self.logits = HookPoint(), HookPoint(), HookPoint()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx (batch, seq)`` -> ``logits (batch, seq, vocab)``; ``logits[:, t]`` predicts token ``t+1``."""
        c = self.config
        idx = _as_ids(idx, c.vocab_size)
        B, T = idx.shape
        if T > c.context_length:
            raise ValueError(f"sequence length {T} exceeds context_length {c.context_length}")
        padded = torch.cat([idx.new_full((B, c.window - 1), self.pad_index), idx], dim=1)
        windows = padded.unfold(1, c.window, 1)  # (batch, seq, window)
        x = self.embed(self.wte(windows).flatten(2))  # (batch, seq, window * d_embed)
        h = self.hidden(torch.tanh(self.fc(x)))
        logits = self.out_proj(self.drop(h))
        if self.direct is not None:
            logits = logits + self.direct(x)
        return self.logits(logits)

    def _embedding_parameters(self):
        return [self.wte.weight]


@dataclass
class RNNConfig:
    """A recurrent LM: ``cell`` is ``"gru"``, ``"lstm"`` or ``"rnn"`` (Elman, tanh).

    ``context_length`` is the longest sequence one call accepts."""

    vocab_size: int
    cell: str = "gru"
    d_embed: int = 32
    d_hidden: int = 128
    n_layer: int = 1
    dropout: float = 0.0
    context_length: int = 128

    def __post_init__(self):
        for name in ("vocab_size", "d_embed", "d_hidden", "n_layer", "context_length"):
            _check_int(name, getattr(self, name))
        _check_choice("cell", self.cell, ("gru", "lstm", "rnn"))
        _check_float("dropout", self.dropout, 0.0, 1.0)


class RNNLM(Inspectable):
    """Embeddings -> recurrent layers -> linear readout. Hook names: ``embed (batch, seq, d_embed)``,
    ``hidden (batch, seq, d_hidden)`` (the top layer's states), ``logits``."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        if not isinstance(config, RNNConfig):
            raise TypeError(f"RNNLM needs an RNNConfig, got {type(config).__name__}")
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_embed)
        rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[c.cell]
        self.rnn = rnn(c.d_embed, c.d_hidden, num_layers=c.n_layer, batch_first=True,
                       dropout=c.dropout if c.n_layer > 1 else 0.0)
        self.drop = nn.Dropout(c.dropout)
        self.out_proj = nn.Linear(c.d_hidden, c.vocab_size)
        self.embed, self.hidden, self.logits = HookPoint(), HookPoint(), HookPoint()

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """``idx (batch, seq)`` -> ``logits (batch, seq, vocab)``; ``logits[:, t]`` predicts token ``t+1``."""
        idx = _as_ids(idx, self.config.vocab_size)
        if idx.shape[1] > self.config.context_length:
            raise ValueError(f"sequence length {idx.shape[1]} exceeds context_length {self.config.context_length}")
        x = self.embed(self.wte(idx))
        h, _ = self.rnn(x)
        h = self.hidden(h)
        return self.logits(self.out_proj(self.drop(h)))

    def _embedding_parameters(self):
        return [self.wte.weight]


# --- the transformer ----------------------------------------------------------------------------------

@dataclass
class TransformerConfig:
    """Everything that defines a :class:`Transformer`.

    * ``d_ff``: feed-forward width (default ``4 * d_model``). GLU variants (``swiglu``, ``geglu``,
      ``reglu``) have three matrices instead of two, so a parameter-matched GLU uses about
      ``8/3 * d_model``.
    * ``activation``: ``relu``, ``gelu`` (exact), ``gelu_tanh`` (GPT-2's approximation), or a GLU
      variant ``act(x W_gate) * (x W_up)`` with act = SiLU / GELU / ReLU.
    * ``positions``: ``learned`` (a table), ``sinusoidal`` (Vaswani et al. 2017, fixed), ``rotary``
      (queries and keys rotated, Su et al.), ``none``.
    * ``norm``: ``pre`` (LayerNorm before each sublayer, a final LayerNorm; GPT-2) or ``post``
      (LayerNorm after each residual sum, no final LayerNorm; the original transformer and BERT).
    * ``attention_only``: blocks without feed-forward layers.
    * ``causal``: GPT-style decoder (True) or BERT-style bidirectional masked LM (False).
    * ``init_std``: weights start as N(0, init_std^2); residual projections use
      ``init_std / sqrt(2 * n_layer)`` (GPT-2).
    """

    vocab_size: int
    context_length: int = 64
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True
    activation: str = "gelu"
    positions: str = "learned"
    norm: str = "pre"
    tie_weights: bool = True
    attention_only: bool = False
    causal: bool = True
    init_std: float = 0.02
    layer_norm_eps: float = 1e-5
    rotary_base: float = 10000.0

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "n_layer", "n_head", "d_model"):
            _check_int(name, getattr(self, name))
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        _check_int("d_ff", self.d_ff)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}; "
                             f"pick n_head from the divisors of d_model, e.g. "
                             f"{[h for h in range(1, self.d_model + 1) if self.d_model % h == 0][:8]}")
        _check_float("dropout", self.dropout, 0.0, 1.0)
        for name in ("bias", "tie_weights", "attention_only", "causal"):
            _check_bool(name, getattr(self, name))
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("positions", self.positions, POSITIONS)
        _check_choice("norm", self.norm, NORMS)
        _check_float("init_std", self.init_std, 0.0, math.inf, low_open=True)
        _check_float("layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, low_open=True)
        _check_float("rotary_base", self.rotary_base, 1.0, math.inf, low_open=True)
        if self.positions == "rotary" and self.d_head % 2:
            raise ValueError(f"rotary positions need an even head width, got d_model/n_head = {self.d_head}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


# Named tiny presets (TransformerConfig fields without vocab_size). The gpt-* ones are GPT-2 compatible
# (tanh GELU, learned positions, pre-norm, biases, tied weights), so lmlab.hub.to_gpt2 converts them.
PRESETS: dict[str, dict] = {
    "gpt-tiny": dict(context_length=64, n_layer=2, n_head=4, d_model=64, d_ff=256, activation="gelu_tanh"),
    "gpt-small": dict(context_length=128, n_layer=4, n_head=4, d_model=128, d_ff=512, activation="gelu_tanh"),
    "bert-tiny": dict(context_length=64, n_layer=2, n_head=4, d_model=64, d_ff=256, causal=False),
    "bert-small": dict(context_length=128, n_layer=4, n_head=4, d_model=128, d_ff=512, causal=False),
    "attn-only-1l": dict(context_length=64, n_layer=1, n_head=4, d_model=64, attention_only=True),
    "attn-only-2l": dict(context_length=64, n_layer=2, n_head=4, d_model=64, attention_only=True),
    "gpt2-like": dict(context_length=32, n_layer=2, n_head=2, d_model=32, d_ff=128, activation="gelu_tanh",
                      positions="learned", norm="pre", bias=True, tie_weights=True, causal=True),
}


def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    """``(n_positions, d_model)``: ``PE[p, 2i] = sin(p / 10000^(2i/d))``, ``PE[p, 2i+1] = cos(...)``."""
    _check_int("n_positions", n_positions)
    _check_int("d_model", d_model)
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe.float()


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate each pair ``(x[..., 2i], x[..., 2i+1])`` of ``x (batch, heads, seq, d_head)`` by the angle
    ``position * base^(-2i/d_head)`` (RoFormer). Then ``<rot(q, m), rot(k, n)>`` depends on ``m - n``."""
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point or x.dim() < 1 or x.shape[-1] % 2:
        raise TypeError(f"x must be a float tensor (..., seq, d_head) with an even d_head, got "
                        f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(positions, torch.Tensor) or positions.dim() != 1 or positions.numel() != x.shape[-2]:
        raise TypeError(f"positions must be a 1-D tensor with one position per row of x (seq={x.shape[-2] if x.dim() > 1 else 1}), "
                        f"got {type(positions).__name__} {tuple(getattr(positions, 'shape', ()))}")
    base = checks.check_real(base, "base", 0, low_open=True)
    d = x.shape[-1]
    freq = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = positions.to(torch.float32)[:, None] * freq[None, :]  # (seq, d/2)
    cos, sin = angles.cos(), angles.sin()
    x1, x2 = x[..., 0::2].float(), x[..., 1::2].float()
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2).type_as(x)


class KVCache:
    """Keys and values of every layer from earlier calls, for fast causal generation.

    ``cache = model.new_kv_cache()``; each ``model(idx, kv_cache=cache)`` appends that call's keys and
    values and places its tokens at positions ``len(cache) ..``. ``keys[l]``/``values[l]`` are
    ``(batch, heads, cached, d_head)``; ``reorder(index)`` picks batch rows (beam search) and
    ``crop(length)`` forgets everything after ``length`` tokens.
    """

    def __init__(self, n_layer: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer
        self.mask: torch.Tensor | None = None  # (batch, cached) bool, only when a call had padding

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else self.keys[0].shape[2]

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"KVCache(layers={len(self.keys)}, length={self.length})"

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``k, v (batch, heads, new, d_head)`` for ``layer``; return all keys and values so far."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def _extend_mask(self, attention_mask: torch.Tensor | None, batch: int, new: int, device) -> torch.Tensor | None:
        if attention_mask is None and self.mask is None:
            return None
        old = self.mask if self.mask is not None else torch.ones(batch, self.length, dtype=torch.bool, device=device)
        add = attention_mask if attention_mask is not None else torch.ones(batch, new, dtype=torch.bool, device=device)
        self.mask = torch.cat([old, add], dim=1)
        return self.mask

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (a LongTensor), e.g. the surviving beams."""
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = t.index_select(0, index.to(t.device))
        if self.mask is not None:
            self.mask = self.mask.index_select(0, index.to(self.mask.device))

    def crop(self, length: int) -> None:
        """Forget cached positions from ``length`` on."""
        _check_int("length", length, 0)
        for store in (self.keys, self.values):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = t[:, :, :length] if length else None
        if self.mask is not None:
            self.mask = self.mask[:, :length] if length else None


class Attention(nn.Module):
    """Multi-head self-attention. Hook names (under ``blocks.{l}.attn.``): ``q``, ``k``, ``v``, ``z``
    ``(batch, heads, seq, d_head)`` (``q``/``k`` after rotary; ``z`` = pattern @ v, each head's output
    before the output projection), ``scores`` (scaled, masked with -inf) and ``pattern`` (softmax)
    ``(batch, heads, seq, keys)``, ``out (batch, seq, d_model)``. ``scores``/``pattern`` only exist on
    the explicit path (``run_with_cache`` and ``run_with_hooks`` use it)."""

    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        self.config, self.layer = config, layer
        d = config.d_model
        self.qkv = nn.Linear(d, 3 * d, bias=config.bias)
        self.proj = nn.Linear(d, d, bias=config.bias)
        self.attn_drop = nn.Dropout(config.dropout)
        self.resid_drop = nn.Dropout(config.dropout)
        self.q, self.k, self.v = HookPoint(), HookPoint(), HookPoint()
        self.scores, self.pattern, self.z, self.out = HookPoint(), HookPoint(), HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, is_causal: bool, positions: torch.Tensor,
                kv_cache: KVCache | None = None, explicit: bool = False) -> torch.Tensor:
        """``x (batch, seq, d_model)``; ``mask`` bool, True = may attend, broadcastable to
        ``(batch, heads, seq, keys)``; ``is_causal`` lets SDPA use its causal kernel instead of ``mask``."""
        c = self.config
        B, T, _ = x.shape
        q, k, v = (t.view(B, T, c.n_head, c.d_head).transpose(1, 2) for t in self.qkv(x).split(c.d_model, dim=2))
        if c.positions == "rotary":
            q, k = apply_rotary(q, positions, c.rotary_base), apply_rotary(k, positions, c.rotary_base)
        q, k, v = self.q(q), self.k(k), self.v(v)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        if explicit:
            scores = q @ k.transpose(-2, -1) / math.sqrt(c.d_head)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            scores = self.scores(scores)
            pattern = self.pattern(torch.softmax(scores, dim=-1))
            z = self.attn_drop(pattern) @ v
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=None if is_causal else mask,
                                               dropout_p=c.dropout if self.training else 0.0, is_causal=is_causal)
        z = self.z(z)
        y = z.transpose(1, 2).reshape(B, T, c.d_model)
        return self.out(self.resid_drop(self.proj(y)))


class MLP(nn.Module):
    """The feed-forward layer. Hook names (under ``blocks.{l}.mlp.``): ``hidden (batch, seq, d_ff)``
    (after the activation; for GLU variants the gated product), ``out (batch, seq, d_model)``."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.glu = config.activation in GLU_ACTIVATIONS
        self.act = _activation(GLU_ACTIVATIONS.get(config.activation, config.activation))
        self.fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)  # the "up" projection
        self.gate = nn.Linear(config.d_model, config.d_ff, bias=config.bias) if self.glu else None
        self.proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)
        self.hidden, self.out = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.gate(x)) * self.fc(x) if self.glu else self.act(self.fc(x))
        return self.out(self.drop(self.proj(self.hidden(h))))


class Block(nn.Module):
    """One transformer layer; causal or bidirectional through the mask it is given.

    pre-norm:  ``x = x + attn(ln1(x)); x = x + mlp(ln2(x))``
    post-norm: ``x = ln1(x + attn(x)); x = ln2(x + mlp(x))``

    Hook names (under ``blocks.{l}.``): ``resid_pre``, ``resid_mid`` (after attention),
    ``resid_post``, all ``(batch, seq, d_model)``."""

    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        self.pre_norm = config.norm == "pre"
        # modules are registered in forward order, so hook_names() lists activations in that order
        self.resid_pre = HookPoint()
        self.ln1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
        self.attn = Attention(config, layer)
        self.resid_mid = HookPoint()
        if config.attention_only:
            self.ln2, self.mlp = None, None
        else:
            self.ln2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps, bias=config.bias)
            self.mlp = MLP(config)
        self.resid_post = HookPoint()

    def forward(self, x, mask, is_causal, positions, kv_cache=None, explicit=False) -> torch.Tensor:
        x = self.resid_pre(x)
        if self.pre_norm:
            x = x + self.attn(self.ln1(x), mask, is_causal, positions, kv_cache, explicit)
        else:
            x = self.ln1(x + self.attn(x, mask, is_causal, positions, kv_cache, explicit))
        x = self.resid_mid(x)
        if self.mlp is not None:
            x = x + self.mlp(self.ln2(x)) if self.pre_norm else self.ln2(x + self.mlp(x))
        return self.resid_post(x)


class Transformer(Inspectable):
    """A GPT-style decoder (``config.causal``) or BERT-style masked LM built from :class:`Block`.

    ``forward(idx, kv_cache=None, attention_mask=None) -> logits (batch, seq, vocab)``.

    Hook names: ``embed`` (token embeddings), ``pos_embed`` (learned/sinusoidal positions only), then
    per layer ``blocks.{l}.resid_pre``, ``blocks.{l}.attn.{q,k,v,scores,pattern,z,out}``,
    ``blocks.{l}.resid_mid``, ``blocks.{l}.mlp.{hidden,out}``, ``blocks.{l}.resid_post``, and
    ``ln_final`` (after the final LayerNorm; the last ``resid_post`` itself for post-norm), ``logits``.

    ``attn_impl``: ``"sdpa"`` (``F.scaled_dot_product_attention``, the default for training) or
    ``"explicit"`` (softmax(QK^T/sqrt(d)) V, written out; records patterns). Both agree to ~1e-6.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"Transformer needs a TransformerConfig, got {type(config).__name__}")
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)
        self.embed = HookPoint()
        self.wpe = nn.Embedding(c.context_length, c.d_model) if c.positions == "learned" else None
        if c.positions == "sinusoidal":
            self.register_buffer("sinusoid", sinusoidal_positions(c.context_length, c.d_model), persistent=False)
        self.pos_embed = HookPoint() if c.positions in ("learned", "sinusoidal") else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList([Block(c, layer) for layer in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias) if c.norm == "pre" else nn.Identity()
        self.ln_final = HookPoint()
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.logits = HookPoint()
        self._attn_impl = "sdpa"
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.proj.weight"):
                nn.init.normal_(p, 0.0, c.init_std / math.sqrt(2 * c.n_layer))
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @classmethod
    def from_preset(cls, name: str, vocab_size: int, **overrides) -> "Transformer":
        """Build a named preset from :data:`PRESETS`, e.g. ``Transformer.from_preset("gpt-tiny", 50)``;
        ``overrides`` change single fields (``n_layer=3``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; allowed: {', '.join(repr(p) for p in PRESETS)}")
        allowed = {f.name for f in fields(TransformerConfig)} - {"vocab_size"}
        bad = sorted(set(overrides) - allowed)
        if bad:
            raise TypeError(f"unknown TransformerConfig field(s) {bad}; allowed: {sorted(allowed)}")
        return cls(TransformerConfig(vocab_size=vocab_size, **{**PRESETS[name], **overrides}))

    @property
    def causal(self) -> bool:
        return self.config.causal

    @property
    def attn_impl(self) -> str:
        return self._attn_impl

    @attn_impl.setter
    def attn_impl(self, value: str) -> None:
        _check_choice("attn_impl", value, ("sdpa", "explicit"))
        self._attn_impl = value

    @contextmanager
    def _inspecting(self):
        old, self._attn_impl = self._attn_impl, "explicit"
        try:
            yield
        finally:
            self._attn_impl = old

    def new_kv_cache(self) -> KVCache:
        """An empty key-value cache for ``model(idx, kv_cache=cache)`` (causal models only)."""
        if not self.config.causal:
            raise ValueError("a key-value cache only makes sense for causal models (config.causal=True); "
                             "a masked model recomputes every position from both sides")
        return KVCache(self.config.n_layer)

    def _embedding_parameters(self):
        return [self.wte.weight, self.lm_head.weight] + ([self.wpe.weight] if self.wpe is not None else [])

    def _mask(self, T: int, offset: int, key_mask: torch.Tensor | None, device) -> tuple[torch.Tensor | None, bool]:
        """The boolean attention mask (True = may attend) ``(batch|1, 1, seq, keys)`` and whether SDPA
        may use its causal kernel instead."""
        S = offset + T
        query_pos = torch.arange(offset, S, device=device)[:, None]
        key_pos = torch.arange(S, device=device)[None, :]
        allowed = (key_pos <= query_pos) if self.config.causal else None
        if key_mask is None:
            if allowed is None or T == 1:  # one new query sees every cached key
                return None, False
            return allowed[None, None], offset == 0
        keys = key_mask[:, None, None, :]
        allowed = keys if allowed is None else (allowed[None, None] & keys)
        # a query may always see itself, so a row is never empty (padding rows give junk, not NaN)
        return allowed | (key_pos == query_pos)[None, None], False

    def forward(self, idx: torch.Tensor, kv_cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``idx (batch, seq)`` -> ``logits (batch, seq, vocab)``.

        ``kv_cache``: append this call's keys and values; tokens sit at positions ``len(cache) ..``.
        ``attention_mask``: optional ``(batch, seq)`` bool (True = real token, False = padding) so
        padded batches work: no query attends to a padding key. Positions count from the first slot,
        so pad on the right.
        """
        c = self.config
        idx = env.to_model_device(self, _as_ids(idx, c.vocab_size))  # ids made on the CPU work on a GPU model
        if attention_mask is not None:
            attention_mask = env.to_model_device(self, attention_mask)
        B, T = idx.shape
        offset = 0
        if kv_cache is not None:
            if not c.causal:
                raise ValueError("kv_cache needs a causal model (config.causal=True)")
            if not isinstance(kv_cache, KVCache) or len(kv_cache.keys) != c.n_layer:
                raise TypeError(f"kv_cache must come from model.new_kv_cache(), got {kv_cache!r}")
            offset = kv_cache.length
        if offset + T > c.context_length:
            raise ValueError(f"sequence length {T}" + (f" after {offset} cached tokens" if offset else "")
                             + f" exceeds context_length {c.context_length}; keep only the last "
                             f"{c.context_length} tokens (idx[:, -{c.context_length}:])")
        if attention_mask is not None:
            if not isinstance(attention_mask, torch.Tensor) or tuple(attention_mask.shape) != (B, T):
                raise ValueError(f"attention_mask must be a bool tensor of shape {(B, T)} (True = real token), "
                                 f"got {getattr(attention_mask, 'shape', attention_mask)!r}")
            attention_mask = attention_mask.to(device=idx.device, dtype=torch.bool)
        key_mask = attention_mask
        if kv_cache is not None:
            key_mask = kv_cache._extend_mask(attention_mask, B, T, idx.device)
        positions = torch.arange(offset, offset + T, device=idx.device)
        x = self.embed(self.wte(idx))
        if c.positions == "learned":
            x = x + self.pos_embed(self.wpe(positions)[None].expand(B, T, c.d_model))
        elif c.positions == "sinusoidal":
            x = x + self.pos_embed(self.sinusoid[positions][None].expand(B, T, c.d_model))
        x = self.drop(x)
        mask, is_causal = self._mask(T, offset, key_mask, idx.device)
        explicit = self._attn_impl == "explicit"
        for block in self.blocks:
            x = block(x, mask, is_causal, positions, kv_cache, explicit)
        x = self.ln_final(self.ln_f(x))
        return self.logits(self.lm_head(x))

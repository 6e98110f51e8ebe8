"""Statistics of decoding and of generated text, measured against the toy language's exact answers.

Chapter 4 asks what a decoding strategy does to the distribution a model samples from, and to the text
that comes out. Because the toy language (:mod:`lmlab.corpus`) knows the true probability of every
next word and of every sentence, each effect is a number:

* **per step**, on the prefixes of held-out sentences: how far the strategy's next-word distribution is
  from the true one (:func:`total_variation`, :func:`kl_divergence`), how much probability it puts on
  words the language never allows there (:func:`impossible_mass`) and how much of the true distribution
  it can no longer produce (:func:`cut_mass`): :func:`step_stats`, from :func:`next_token_pairs`;
* **per sample**, on generated sentences: diversity (:func:`distinct_n`, distinct sentences), how many are
  sentences of the language at all and how probable they are (:func:`exact_logprobs`), and, on long
  generations, how much a text repeats itself (:func:`repetition_rate`): :func:`sample_stats`;
* both together for a list of strategies: :func:`compare_strategies`, returning two :class:`Table`\\ s;
* next-word versus masked prediction for the same slot: :func:`slot_comparison` and :func:`slot_figure`.

Distributions are ``dict[str, float]`` or arrays ``(..., vocab)``; texts are strings of words
separated by single spaces (``". the dog barks ."``) or lists of words.

The module also holds the checkers of two of the chapter's exercises, written like those of
:mod:`lmlab.exercises`: :func:`check_beam_search` and :func:`check_temperature_for_entropy`.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import generate as gen
from . import checks, env, viz
from .exercises import _call, _Failure, _run

__all__ = [
    "total_variation", "kl_divergence", "empirical_distribution", "impossible_mass", "cut_mass",
    "split_sentences", "ngrams", "distinct_n", "repetition_rate", "exact_logprobs",
    "SampleStats", "sample_stats", "StepStats", "strategy_distribution", "step_stats", "next_token_pairs",
    "Table", "Comparison", "DEFAULT_STRATEGIES", "compare_strategies", "tradeoff_figure",
    "SlotResult", "slot_comparison", "slot_summary", "slot_figure", "check_beam_search", "beam_search_reference",
    "check_temperature_for_entropy", "temperature_for_entropy_reference",
]

EOS = "."


# --- distributions --------------------------------------------------------------------------------

def _pair(p: Any, q: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two distributions as float arrays over the same support ``(..., vocab)``.

    Dicts are aligned on the union of their keys (a missing key has probability 0)."""
    if isinstance(p, Mapping) or isinstance(q, Mapping):
        if not (isinstance(p, Mapping) and isinstance(q, Mapping)):
            raise TypeError("pass two dicts (word -> probability) or two arrays of the same shape, "
                            f"got {type(p).__name__} and {type(q).__name__}")
        keys = list(dict.fromkeys([*p, *q]))
        a = np.array([float(p.get(k, 0.0)) for k in keys])
        b = np.array([float(q.get(k, 0.0)) for k in keys])
    else:
        a = (p.detach().cpu().double().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p, dtype=float))
        b = (q.detach().cpu().double().cpu().numpy() if isinstance(q, torch.Tensor) else np.asarray(q, dtype=float))
        if a.shape != b.shape or a.ndim == 0:
            raise ValueError(f"the two distributions must have the same shape (..., vocab), got {a.shape} and {b.shape}")
    for name, x in (("p", a), ("q", b)):
        if not np.isfinite(x).all() or (x < -1e-9).any():
            raise ValueError(f"{name} must hold probabilities (finite, >= 0)")
        total = x.sum(axis=-1)
        if np.any(np.abs(total - 1) > 1e-3):
            raise ValueError(f"{name} must sum to 1 over its last axis, sums to {np.round(total, 4).tolist()}")
    return np.clip(a, 0, None), np.clip(b, 0, None)


def total_variation(p: Any, q: Any) -> float | np.ndarray:
    """Total variation distance ``0.5 * sum |p - q|`` (0: identical, 1: disjoint supports).

    ``p``, ``q``: dicts ``word -> probability`` or arrays ``(..., vocab)``; arrays give one distance per
    row ``(...)``. It is the largest difference in probability the two give to any set of outcomes."""
    a, b = _pair(p, q)
    out = 0.5 * np.abs(a - b).sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def kl_divergence(p: Any, q: Any) -> float | np.ndarray:
    """KL divergence ``KL(p || q) = sum p log(p / q)`` in nats, with ``0 log 0 = 0``.

    Infinite where ``p`` gives probability to an outcome that ``q`` rules out: with ``p`` the truth and
    ``q`` a truncated sampler (top-k, top-p, greedy), KL is infinite as soon as the sampler can never
    produce something the language produces. Arrays ``(..., vocab)`` give one value per row."""
    a, b = _pair(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(a > 0, a * (np.log(a) - np.log(b)), 0.0)
    out = terms.sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def impossible_mass(probs: Any, true_probs: Any) -> float | np.ndarray:
    """Probability ``probs`` puts on outcomes the truth rules out (``true_probs == 0``), per row."""
    a, b = _pair(probs, true_probs)
    out = np.where(b > 0, 0.0, a).sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def cut_mass(probs: Any, true_probs: Any) -> float | np.ndarray:
    """True probability of the outcomes ``probs`` can never produce (``probs == 0``), per row."""
    a, b = _pair(probs, true_probs)
    out = np.where(a > 0, 0.0, b).sum(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def empirical_distribution(items: Sequence[Any]) -> dict[Any, float]:
    """Relative frequencies of ``items`` (hashable; lists are turned into tuples), most frequent first."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a list of outcomes, got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError("items is empty: pass at least one outcome")
    counts = Counter(tuple(x) if isinstance(x, list) else x for x in items)
    n = len(items)
    return {k: c / n for k, c in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


# --- generated text ----------------------------------------------------------------------------------

def _words(text: Any, name: str = "text") -> list[str]:
    if isinstance(text, str):
        return text.split()
    if isinstance(text, (list, tuple)) and all(isinstance(w, str) for w in text):
        return list(text)
    raise TypeError(f"{name} must be a string of space-separated words or a list of words, got {text!r:.60}")


def _texts(texts: Any) -> list[list[str]]:
    """A list of texts (strings or word lists) as word lists; one string is one text."""
    if isinstance(texts, str):
        return [_words(texts)]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a list of texts (strings or lists of words), got {type(texts).__name__}")
    return [_words(t, f"texts[{i}]") for i, t in enumerate(texts)]


def split_sentences(text: Any) -> tuple[list[list[str]], list[str]]:
    """Split a text at ``"."``: ``(complete sentences, unfinished tail)``.

    Each complete sentence ends with ``"."``; empty ones (a leading ``"."``, as in ``". the dog barks ."``)
    are dropped. ``split_sentences(". the dog barks . a cat")`` gives
    ``([["the", "dog", "barks", "."]], ["a", "cat"])``."""
    words = _words(text)
    done, current = [], []
    for w in words:
        current.append(w)
        if w == EOS:
            if len(current) > 1:
                done.append(current)
            current = []
    return done, current


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The ``n``-grams of a word list, in order: ``len(words) - n + 1`` tuples (none if it is shorter)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    words = _words(words, "words")
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Any, n: int = 2) -> float:
    """Distinct-n: the number of different ``n``-grams divided by the number of ``n``-grams, pooled over
    ``texts`` (n-grams do not cross from one text to the next). 1 means no n-gram occurs twice; a set of
    identical texts scores about ``1 / len(texts)``."""
    grams = [g for t in _texts(texts) for g in ngrams(t, n)]
    if not grams:
        raise ValueError(f"the texts hold no {n}-grams (every text is shorter than {n} words)")
    return len(set(grams)) / len(grams)


def repetition_rate(texts: Any, n: int = 4) -> float:
    """Share of a text's ``n``-grams that repeat an ``n``-gram seen earlier in the same text, averaged
    over ``texts`` (texts with no n-gram are skipped). 0: nothing repeats; near 1: a loop."""
    rates = []
    for t in _texts(texts):
        grams = ngrams(t, n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    if not rates:
        raise ValueError(f"the texts hold no {n}-grams (every text is shorter than {n} words)")
    return float(np.mean(rates))


def exact_logprobs(lang: Any, sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """Exact log-probability of each sentence under the toy language ``(n,)``; ``-inf`` for a word list
    the grammar cannot produce (an ungrammatical or unfinished sentence)."""
    out = np.empty(len(sentences))
    for i, s in enumerate(sentences):
        words = _words(s, f"sentences[{i}]")
        if not words or words[-1] != EOS or EOS in words[:-1]:
            out[i] = -math.inf
            continue
        try:
            out[i] = lang.sentence_logprob(words)
        except ValueError:
            out[i] = -math.inf
    return out


@dataclass
class SampleStats:
    """What :func:`sample_stats` measures on a set of generated sentences.

    ``grammatical``: share of samples that are complete sentences of the language (nonzero exact
    probability); ``mean_logprob``: mean exact log-probability (nats) of those; ``logprob_per_word``:
    their total exact log-probability divided by their total number of words; ``distinct_sentences``:
    how many different sentences; ``distinct_1``/``distinct_2``: :func:`distinct_n` over the samples;
    ``mean_length``: words per sample (``"."`` counted)."""

    n: int
    distinct_sentences: int
    distinct_1: float
    distinct_2: float
    grammatical: float
    mean_logprob: float
    logprob_per_word: float
    mean_length: float


def _first_sentence(text: Any) -> list[str]:
    done, tail = split_sentences(text)
    return done[0] if done else tail


def sample_stats(lang: Any, texts: Sequence[Any]) -> SampleStats:
    """Diversity and quality of generated samples, one sentence per text.

    Each text's first sentence is scored (``". the dog barks ."`` -> ``the dog barks .``); a text without
    a complete sentence counts as not grammatical."""
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise ValueError("texts must be a non-empty list of generated texts")
    sents = [_first_sentence(t) for t in texts]
    lps = exact_logprobs(lang, sents)
    ok = np.isfinite(lps)
    nonempty = [s for s in sents if s]
    return SampleStats(
        n=len(sents),
        distinct_sentences=len({tuple(s) for s in sents}),
        distinct_1=distinct_n(nonempty, 1) if nonempty else 0.0,
        distinct_2=distinct_n(nonempty, 2) if any(len(s) > 1 for s in nonempty) else 0.0,
        grammatical=float(ok.mean()),
        mean_logprob=float(lps[ok].mean()) if ok.any() else -math.inf,
        logprob_per_word=(float(lps[ok].sum() / sum(len(s) for s, g in zip(sents, ok) if g)) if ok.any()
                          else -math.inf),
        mean_length=float(np.mean([len(s) for s in sents])),
    )


# --- per-step distributions ----------------------------------------------------------------------------

def next_token_pairs(model: Any, tokenizer: Any, lang: Any, sentences: Sequence[Sequence[str]]) \
        -> tuple[torch.Tensor, np.ndarray, list[list[str]]]:
    """The model's next-word logits and the exact next-word distribution after every prefix of ``sentences``.

    Each sentence is read as ``". w1 w2 ... ."``; its prefixes are ``[]``, ``[w1]``, ... (every word is
    predicted once). Returns ``(logits (N, vocab), true_probs (N, vocab), prefixes)`` over the
    tokenizer's vocabulary (special tokens get true probability 0). Sentences longer than the model's
    context are skipped."""
    if not getattr(model, "causal", True):
        raise TypeError("next_token_pairs needs a causal (next-word) model")
    if isinstance(sentences, str) or not sentences:
        raise ValueError("sentences must be a non-empty list of sentences (lists of words)")
    context = int(model.config.context_length)
    vocab_ids = np.array([tokenizer.token_to_id(w) for w in lang.vocab])
    rows, prefixes, truth = [], [], []
    for s in sentences:
        words = _words(s, "sentence")
        if len(words) > context:
            continue
        rows.append(tokenizer.encode_tokens([EOS] + words[:-1]) if hasattr(tokenizer, "encode_tokens")
                    else tokenizer.encode(" ".join([EOS] + words[:-1])))
        for t in range(len(words)):
            prefixes.append(words[:t])
            full = np.zeros(tokenizer.vocab_size)
            full[vocab_ids] = lang.next_token_probs(words[:t])
            truth.append(full)
    if not rows:
        raise ValueError(f"every sentence is longer than the model's context ({context} tokens)")
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    idx = torch.tensor([r + [pad] * (width - len(r)) for r in rows], dtype=torch.long)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        logits = model(env.to_model_device(model, idx)).float()
    model.train(was_training)
    out = torch.cat([logits[i, :len(r)] for i, r in enumerate(rows)])  # causal: padding on the right is unseen
    return out, np.stack(truth), prefixes


def strategy_distribution(logits: torch.Tensor, strategy: str = "sample", temperature: float = 1.0,
                          top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """The next-token distribution a strategy draws from, ``(..., vocab)`` from logits ``(..., vocab)``.

    ``"sample"``: :func:`lmlab.generate.sampling_distribution` (temperature, then top-k, then top-p);
    ``"greedy"``: all the probability on the most probable token."""
    if not isinstance(logits, torch.Tensor):
        logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
    if strategy == "greedy":
        out = torch.zeros_like(logits, dtype=torch.float64)
        out.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        return out.cpu().numpy()
    if strategy != "sample":
        raise ValueError(f"strategy must be 'sample' or 'greedy' (beam search has no per-step distribution), "
                         f"got {strategy!r}")
    return gen.sampling_distribution(logits, temperature, top_k, top_p).double().cpu().numpy()


@dataclass
class StepStats:
    """Means over prefixes of :func:`total_variation`, :func:`kl_divergence` (truth to strategy, may be
    infinite), :func:`impossible_mass`, :func:`cut_mass`, and the mean number of tokens that can be drawn."""

    tv: float
    kl: float
    impossible: float
    cut: float
    kept: float


def step_stats(probs: Any, true_probs: Any) -> StepStats:
    """Compare per-prefix distributions ``probs`` ``(N, vocab)`` with the truth ``(N, vocab)``."""
    p, t = _pair(probs, true_probs)
    p, t = np.atleast_2d(p), np.atleast_2d(t)
    return StepStats(tv=float(np.mean(total_variation(p, t))), kl=float(np.mean(kl_divergence(t, p))),
                     impossible=float(np.mean(impossible_mass(p, t))), cut=float(np.mean(cut_mass(p, t))),
                     kept=float(np.mean((p > 0).sum(-1))))


# --- tables ----------------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        return f"{value:.{digits}f}".replace("-", "−")
    return str(value)


class Table:
    """A small table that prints as aligned text and shows as HTML in notebooks and the book.

    ``Table(columns, rows, caption=None, digits=3)``; ``rows`` are lists of values. Floats are shown
    with ``digits`` decimals (one number for every column, or one per column), ``inf`` as ∞, ``nan``
    as –; numbers are right-aligned, text left-aligned. ``table[name]`` is a column as a list,
    ``table.row(first_value)`` the row whose first cell is ``first_value``, as a dict."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None,
                 digits: int | Sequence[int] = 3):
        self.columns = [str(c) for c in columns]
        self.rows = [list(r) for r in rows]
        bad = [r for r in self.rows if len(r) != len(self.columns)]
        if bad:
            raise ValueError(f"every row needs {len(self.columns)} values ({self.columns}), got {bad[0]!r}")
        per_column = [digits] * len(self.columns) if isinstance(digits, int) else list(digits)
        if len(per_column) != len(self.columns) or not all(isinstance(d, int) and d >= 0 for d in per_column):
            raise ValueError(f"digits must be an int >= 0 or one per column ({len(self.columns)}), got {digits!r}")
        self.caption, self.digits = caption, per_column

    def __getitem__(self, name: str) -> list[Any]:
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {self.columns}")
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def row(self, first: Any) -> dict[str, Any]:
        for r in self.rows:
            if r[0] == first:
                return dict(zip(self.columns, r))
        raise KeyError(f"no row {first!r}; rows: {[r[0] for r in self.rows]}")

    def _cells(self) -> list[list[str]]:
        return [[_fmt(v, d) for v, d in zip(r, self.digits)] for r in self.rows]

    def _numeric(self) -> list[bool]:
        """Per column: does it hold numbers (right-aligned)?"""
        return [all(isinstance(r[i], (int, float, np.integer, np.floating)) and not isinstance(r[i], bool)
                    for r in self.rows) for i in range(len(self.columns))]

    def __repr__(self) -> str:
        cells, numeric = self._cells(), self._numeric()
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric))

        out = ([self.caption] if self.caption else []) + [line(self.columns), line(["-" * w for w in widths])]
        return "\n".join(out + [line(r) for r in cells])

    def _repr_html_(self) -> str:
        numeric = self._numeric()

        def style(i: int) -> str:
            return f'text-align:{"right" if numeric[i] else "left"}' + (";white-space:nowrap" if i == 0 else "")

        head = "".join(f'<th style="{style(i)}">{html.escape(c)}</th>' for i, c in enumerate(self.columns))
        body = "".join("<tr>" + "".join(f'<td style="{style(i)}">{html.escape(v)}</td>' for i, v in enumerate(r))
                       + "</tr>" for r in self._cells())
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<table class="table lmlab-table">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>")


# --- comparing strategies ------------------------------------------------------------------------------

#: The strategies the chapter compares: name -> keyword arguments of :func:`lmlab.generate.generate`.
DEFAULT_STRATEGIES: dict[str, dict] = {
    "T = 1": dict(strategy="sample", temperature=1.0),
    "T = 0.5": dict(strategy="sample", temperature=0.5),
    "T = 2": dict(strategy="sample", temperature=2.0),
    "top-k 5": dict(strategy="sample", top_k=5),
    "top-p 0.9": dict(strategy="sample", top_p=0.9),
    "greedy": dict(strategy="greedy"),
    "beam (4)": dict(strategy="beam", num_beams=4),
}
#: The name of the reference row: sentences sampled from the toy language itself.
LANGUAGE = "language"


@dataclass
class Comparison:
    """What :func:`compare_strategies` found: two tables and, per strategy, the raw results.

    ``steps``: per-step distances from the true next-word distribution; ``samples``: diversity and
    quality of sampled sentences and repetition in long generations. ``stats[name]`` holds the
    :class:`StepStats` (None for beam search and the language), :class:`SampleStats` and ``repetition``;
    ``texts[name]`` the sampled sentences, ``long_texts[name]`` the long generations; ``n_prefixes`` the
    number of prefixes the per-step table averages over."""

    steps: Table
    samples: Table
    stats: dict[str, dict[str, Any]] = field(repr=False)
    texts: dict[str, list[str]] = field(repr=False)
    long_texts: dict[str, list[str]] = field(repr=False)
    n_prefixes: int = 0


def _check_strategy(name: str, kwargs: Mapping) -> dict:
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"strategy {name!r}: pass a dict of generate() arguments, got {kwargs!r}")
    kind = kwargs.get("strategy", "sample")
    if kind not in ("sample", "greedy", "beam"):
        raise ValueError(f"strategy {name!r}: 'strategy' must be 'sample', 'greedy' or 'beam', got {kind!r}")
    allowed = {"strategy", "temperature", "top_k", "top_p", "num_beams"}
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise ValueError(f"strategy {name!r}: unknown argument(s) {bad}; allowed: {sorted(allowed)}")
    return {"strategy": kind, **kwargs}


def _generate_texts(model, tokenizer, prompt: str, kw: dict, n: int, max_new_tokens: int, seed: int,
                    stop_at: str | None) -> list[str]:
    """``n`` continuations of ``prompt``; deterministic strategies are run once and repeated."""
    if kw["strategy"] == "beam":
        best = gen.beam_search(model, prompt, tokenizer=tokenizer, num_beams=kw.get("num_beams", 4),
                               max_new_tokens=max_new_tokens, stop_at=stop_at)[0]
        return [best.text] * n
    if kw["strategy"] == "greedy":
        return [gen.generate(model, prompt, max_new_tokens, tokenizer=tokenizer, strategy="greedy",
                             stop_at=stop_at)] * n
    out = gen.generate(model, prompt, max_new_tokens, tokenizer=tokenizer, strategy="sample", num_samples=n,
                       seed=seed, stop_at=stop_at, temperature=kw.get("temperature", 1.0), top_k=kw.get("top_k"),
                       top_p=kw.get("top_p"))
    return [out] if isinstance(out, str) else list(out)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (the previous setting is restored afterwards)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compare_strategies(model: Any, tokenizer: Any, lang: Any, strategies: Mapping[str, Mapping] | None = None, *,
                       n_samples: int = 300, prefix_sentences: Sequence[Sequence[str]] | None = None,
                       long_tokens: int = 60, n_long: int = 10, seed: int = 0) -> Comparison:
    """Measure decoding strategies against the toy language; returns a :class:`Comparison`.

    * ``steps`` table, per strategy, averaged over every prefix of ``prefix_sentences`` (default: 60
      held-out sentences): total variation from the true next-word distribution, KL(truth || strategy),
      the probability of impossible words, the true probability cut away, tokens that can be drawn.
    * ``samples`` table: ``n_samples`` sentences generated from ``"."`` (a sentence start), scored by
      :func:`sample_stats`, and the :func:`repetition_rate` (4-grams) of ``n_long`` generations of
      ``long_tokens`` words from ``"."`` with no stop. Greedy and beam search are deterministic: they are
      run once and their one output counted ``n_samples`` times. A first row, "the language itself",
      scores sentences sampled from the toy language, the reference every strategy should match.

    The work is thousands of tiny steps (one word for a batch of sentences), so it runs on one torch
    thread: with more, thread synchronisation costs more than the arithmetic, and on a busy machine
    many times more.
    """
    strategies = DEFAULT_STRATEGIES if strategies is None else strategies
    if not isinstance(strategies, Mapping) or not strategies:
        raise ValueError("strategies must be a non-empty dict of name -> generate() arguments")
    specs = {str(name): _check_strategy(str(name), kw) for name, kw in strategies.items()}
    for name, value in (("n_samples", n_samples), ("long_tokens", long_tokens), ("n_long", n_long)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if prefix_sentences is None:
        from .zoo import held_out_sentences

        prefix_sentences = held_out_sentences(60)
    with _one_thread():
        return _compare(model, tokenizer, lang, specs, n_samples, prefix_sentences, long_tokens, n_long, seed)


def _compare(model, tokenizer, lang, specs: dict, n_samples: int, prefix_sentences, long_tokens: int, n_long: int,
             seed: int) -> Comparison:
    logits, truth, _ = next_token_pairs(model, tokenizer, lang, prefix_sentences)

    stats: dict[str, dict[str, Any]] = {}
    texts: dict[str, list[str]] = {}
    long_texts: dict[str, list[str]] = {}
    lang_sents = lang.sentences(n_samples, seed=seed + 7919)
    texts[LANGUAGE] = [" ".join(s) for s in lang_sents]
    stream = lang.token_stream(n_long * long_tokens, seed=seed + 104729)
    long_texts[LANGUAGE] = [" ".join(stream[i * long_tokens:(i + 1) * long_tokens]) for i in range(n_long)]
    stats[LANGUAGE] = {"step": step_stats(truth, truth), "sample": sample_stats(lang, texts[LANGUAGE]),
                       "repetition": repetition_rate(long_texts[LANGUAGE], 4)}
    context = int(model.config.context_length)
    for i, (name, kw) in enumerate(specs.items()):
        step = None
        if kw["strategy"] != "beam":
            step = step_stats(strategy_distribution(logits, kw["strategy"], kw.get("temperature", 1.0),
                                                    kw.get("top_k"), kw.get("top_p")), truth)
        texts[name] = _generate_texts(model, tokenizer, EOS, kw, n_samples, context - 1, seed + i, EOS)
        n = 1 if kw["strategy"] != "sample" else n_long
        longs = _generate_texts(model, tokenizer, EOS, kw, n, long_tokens, seed + 1000 + i, None)
        long_texts[name] = [" ".join(_words(t)[1:]) for t in longs]  # drop the prompt
        stats[name] = {"step": step, "sample": sample_stats(lang, texts[name]),
                       "repetition": repetition_rate(long_texts[name], 4)}

    nan = float("nan")
    step_rows, sample_rows = [], []
    for name, s in stats.items():
        st = s["step"]
        step_rows.append([name] + ([st.tv, st.kl, st.impossible, st.cut, st.kept] if st is not None else [nan] * 5))
        sm = s["sample"]
        sample_rows.append([name, sm.distinct_sentences, sm.distinct_2, sm.grammatical, sm.logprob_per_word,
                            sm.mean_length, s["repetition"]])
    n_prefixes = truth.shape[0]
    steps = Table(["strategy", "TV from truth", "KL(truth‖strategy)", "p(impossible word)", "true mass cut",
                   "tokens drawable"], step_rows,
                  caption=f"Per step, mean over {n_prefixes} prefixes of held-out sentences", digits=[0, 3, 3, 3, 3, 1])
    samples = Table(["strategy", f"distinct sentences (of {n_samples})", "distinct-2", "grammatical",
                     "log p per word", "mean length", "4-gram repetition"], sample_rows,
                    caption=f"{n_samples} sentences per strategy; repetition in {long_tokens}-word generations",
                    digits=[0, 0, 3, 3, 2, 1, 3])
    return Comparison(steps, samples, stats, texts, long_texts, n_prefixes)


def _label_position(x: float, y: float, n_chars: int, placed: list) -> str:
    """A text position for a point's label that covers as little as possible of the earlier labels and
    markers (approximate boxes in axis units: x spans about 1.1 over 560 px, y about 1.2 over 330 px);
    records the chosen box in ``placed``."""
    w, h, m = 0.0145 * n_chars + 0.01, 0.075, 0.03
    boxes = {"middle right": (x + m, y - h / 2, x + m + w, y + h / 2),
             "bottom right": (x, y - m - h, x + w, y - m),
             "top right": (x, y + m, x + w, y + m + h),
             "bottom center": (x - w / 2, y - m - h, x + w / 2, y - m),
             "top center": (x - w / 2, y + m, x + w / 2, y + m + h),
             "middle left": (x - m - w, y - h / 2, x - m, y + h / 2)}

    def overlap(b) -> float:
        area = sum(max(0.0, min(b[2], o[2]) - max(b[0], o[0])) * max(0.0, min(b[3], o[3]) - max(b[1], o[1]))
                   for o in placed)
        outside = max(0.0, -0.03 - b[0]) + max(0.0, b[3] - 1.12) + max(0.0, -0.06 - b[1])  # off the axes
        return area + outside

    choice = min(boxes, key=lambda k: overlap(boxes[k]))  # ties: the order above
    placed += [boxes[choice], (x - m, y - m, x + m, y + m)]
    return choice


def tradeoff_figure(comparison: Comparison, title: str | None = None) -> go.Figure:
    """Quality against diversity, one point per strategy: distinct-2 of the sampled sentences (x) and the
    share of them that are grammatical (y), with the language itself as the reference point (a star).
    Strategies that land on the same point (greedy and beam search often do) share one label."""
    if not isinstance(comparison, Comparison):
        raise TypeError(f"pass the result of compare_strategies, got {type(comparison).__name__}")
    fig = go.Figure()
    stats = {name: s["sample"] for name, s in comparison.stats.items()}
    groups: dict[tuple[float, float], list[str]] = {}
    for name, sm in stats.items():
        groups.setdefault((round(sm.distinct_2, 3), round(sm.grammatical, 3)), []).append(name)
    placed: list[tuple[float, float, float, float]] = []
    label_of = {}
    for name in sorted(stats, key=lambda n: n != LANGUAGE):  # the reference is placed first
        key = (round(stats[name].distinct_2, 3), round(stats[name].grammatical, 3))
        if groups[key][0] == name:
            text = " = ".join(groups[key])
            label_of[name] = (text, _label_position(stats[name].distinct_2, stats[name].grammatical, len(text),
                                                    placed))
    symbols = [s for s in viz.SYMBOLS if s != "star"]
    colors = [c for c in viz.COLORWAY if c != viz.OKABE_ITO["black"]]  # black marks the language
    points = []
    for i, (name, sm) in enumerate(stats.items()):
        x, y = sm.distinct_2, sm.grammatical
        points.append((name, x, y))
        is_ref = name == LANGUAGE
        text, position = label_of.get(name, ("", "middle right"))
        fig.add_trace(go.Scatter(
            x=[x], y=[y], mode="markers+text", name=name, text=[text], textposition=position,
            marker=dict(size=17 if is_ref else 12, symbol="star" if is_ref else symbols[i % len(symbols)],
                        color=viz.OKABE_ITO["black"] if is_ref else colors[(i - 1) % len(colors)]),
            hovertemplate=(f"<b>{html.escape(name)}</b><br>distinct-2: %{{x:.3f}}<br>grammatical: "
                           f"%{{y:.2f}}<br>distinct sentences: {sm.distinct_sentences} of {sm.n}<br>"
                           f"log p per word: {sm.logprob_per_word:.2f}<extra></extra>")))
    alt = ("Scatter plot of decoding strategies by diversity (distinct-2 of their sampled sentences, x) and quality "
           "(share of grammatical sentences, y): " + "; ".join(f"{n} {x:.2f}, {y:.2f}" for n, x, y in points) + ".")
    fig = viz.set_alt(fig, alt)
    fig.update_layout(title=dict(text=title if title is not None else "Diversity against grammaticality"),
                      showlegend=False, height=500,
                      xaxis=dict(title=dict(text="distinct-2 (diversity of word pairs)"),
                                 range=[-0.03, max(1.0, max(x for _, x, _ in points) + 0.25)]),
                      yaxis=dict(title=dict(text="share of grammatical sentences"), range=[-0.06, 1.12]))
    return fig


# --- next-word versus masked prediction -------------------------------------------------------------------

_SLOT = {"___", "[MASK]", "<mask>"}


def _dist(probs: torch.Tensor, tokenizer: Any) -> dict[str, float]:
    specials = {getattr(tokenizer, n, None) for n in ("pad_id", "unk_id", "mask_id", "bos_id")} - {None}
    out = {tokenizer.id_to_token(i): float(p) for i, p in enumerate(probs.tolist()) if i not in specials}
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class SlotResult:
    """Four distributions for one slot: exact and model, left context only and both sides.

    ``left``/``right``: the words around the slot; ``exact_left`` (the toy language's next-word
    distribution), ``causal`` (the next-word model's), ``exact_both`` (the language's masked
    distribution), ``masked`` (the masked model's); each ``dict[str, float]``, most probable first."""

    left: list[str]
    right: list[str]
    exact_left: dict[str, float]
    causal: dict[str, float]
    exact_both: dict[str, float]
    masked: dict[str, float]

    @property
    def sentence(self) -> str:
        return " ".join(self.left + ["___"] + self.right)

    def p(self, word: str) -> dict[str, float]:
        """The probability each of the four gives to ``word``."""
        return {k: getattr(self, k).get(word, 0.0) for k in ("exact_left", "causal", "exact_both", "masked")}

    def table(self, k: int = 5) -> Table:
        """The ``k`` most probable words of each distribution, side by side."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        cols = [self.exact_left, self.causal, self.exact_both, self.masked]
        rows = []
        for r in range(k):
            row: list[Any] = [r + 1]
            for d in cols:
                items = list(d.items())
                row += [items[r][0], items[r][1]] if r < len(items) else ["", float("nan")]
            rows.append(row)
        return Table(["rank", "exact, left only", "p", "next-word model", "p", "exact, both sides", "p",
                      "masked model", "p"], rows, caption=f"The slot in '{self.sentence}'")


def slot_comparison(lang: Any, causal_model: Any, causal_tokenizer: Any, masked_model: Any, masked_tokenizer: Any,
                    sentence: str | Sequence[str]) -> SlotResult:
    """Predict the slot ``___`` (or ``[MASK]``) of ``sentence`` four ways (see :class:`SlotResult`).

    ``sentence`` is one sentence of the toy language with one slot, e.g. ``"the world is ___ that is the
    case ."``. The next-word model reads ``". " + left context``; the masked model reads the whole
    sentence with its mask token in the slot, after a ``"."`` as in training."""
    words = _words(sentence, "sentence")
    slots = [i for i, w in enumerate(words) if w in _SLOT]
    if len(slots) != 1:
        raise ValueError(f"sentence must hold exactly one slot '___', got {' '.join(words)!r}")
    i = slots[0]
    left, right = words[:i], words[i + 1:]
    if EOS in left:
        raise ValueError("pass one sentence: the left context holds a '.'")
    exact_left = lang.next_token_distribution(left)
    exact_both = lang.masked_distribution(left + ["[MASK]"] + right)
    causal = gen.next_token_distribution(causal_model, causal_tokenizer.encode_tokens([EOS] + left))
    mask_token = masked_tokenizer.id_to_token(masked_tokenizer.mask_id)
    ids = masked_tokenizer.encode_tokens([EOS] + left + [mask_token] + right)
    masked = gen.fill_mask(masked_model, ids, mask_id=masked_tokenizer.mask_id)[0]
    return SlotResult(left, right, exact_left, _dist(causal, causal_tokenizer), exact_both,
                      _dist(masked, masked_tokenizer))


def slot_summary(lang: Any, causal_model: Any, causal_tokenizer: Any, masked_model: Any, masked_tokenizer: Any,
                 sentences: Sequence[str]) -> Table:
    """One row per slot sentence: the words that fit the slot given both sides (the support of the exact
    masked distribution) and the probability each predictor gives to that set: the exact next-word
    distribution (left context only), the next-word model, the masked model. (Given both sides, the
    exact probability of the set is 1.)"""
    if isinstance(sentences, str) or not sentences:
        raise ValueError("sentences must be a non-empty list of sentences, each with one slot '___'")
    rows = []
    for sentence in sentences:
        r = slot_comparison(lang, causal_model, causal_tokenizer, masked_model, masked_tokenizer, sentence)
        fits = list(r.exact_both)
        shown = ", ".join(fits[:3]) + (f" (+{len(fits) - 3})" if len(fits) > 3 else "")
        rows.append([r.sentence, shown] + [sum(d.get(w, 0.0) for w in fits)
                                           for d in (r.exact_left, r.causal, r.masked)])
    return Table(["slot", "words that fit", "exact, left only", "next-word model", "masked model"], rows,
                 caption="Probability given to the words that fit the slot (given both sides, exactly 1)")


def slot_figure(result: SlotResult, k: int = 6, title: str | None = None) -> go.Figure:
    """Two panels of bars for one slot: left context only (exact vs next-word model) and both sides
    (exact vs masked model); each panel shows the ``k`` words most probable under either of its two."""
    if not isinstance(result, SlotResult):
        raise TypeError(f"pass the result of slot_comparison, got {type(result).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=("left context only", "both sides"))
    notes = []
    panels = ((result.exact_left, result.causal, "next-word model", viz.OKABE_ITO["blue"]),
              (result.exact_both, result.masked, "masked model", viz.OKABE_ITO["bluish_green"]))
    for col, (truth, model, model_name, model_color) in enumerate(panels, start=1):
        keys = list(dict.fromkeys(list(truth) + list(model)))
        words = sorted(keys, key=lambda w: -max(truth.get(w, 0.0), model.get(w, 0.0)))[:k]
        for name, dist, color, pattern in (("exact", truth, viz.OKABE_ITO["orange"], "/"),
                                            (model_name, model, model_color, "")):
            fig.add_trace(go.Bar(
                x=words, y=[dist.get(w, 0.0) for w in words], name=name, legendgroup=name,
                showlegend=not (name == "exact" and col == 2),
                marker=dict(color=color, pattern=dict(shape=pattern)), customdata=words,
                hovertemplate=f"<b>%{{customdata}}</b><br>{name}: p = %{{y:.3f}}<extra></extra>"), row=1, col=col)
        notes.append(f"{'left context only' if col == 1 else 'both sides'}: "
                     + ", ".join(f"{w} exact {truth.get(w, 0.0):.2f} vs model {model.get(w, 0.0):.2f}" for w in words[:4]))
    fig.update_yaxes(range=[0, 1.05], title=dict(text="probability"), col=1)
    fig.update_yaxes(range=[0, 1.05], col=2)
    fig.update_xaxes(type="category", tickangle=-30)
    fig.update_layout(barmode="group", height=480, margin=dict(t=90, b=140),
                      title=dict(text=title if title is not None else f"Filling the slot: {result.sentence}"),
                      legend=dict(orientation="h", y=-0.32, yanchor="top", x=0.5, xanchor="center"))
    return viz.set_alt(fig, f"Two bar charts for the slot in '{result.sentence}'. " + ". ".join(notes) + ".")


# --- the beam-search exercise -------------------------------------------------------------------------------

def beam_search_reference(next_logprobs: Callable[[list[str]], Mapping[str, float]], prompt: Sequence[str],
                          num_beams: int, steps: int) -> list[str]:
    """Beam search over a function ``tokens -> {token: log p}``: the ``steps`` new tokens of the best
    hypothesis (highest summed log-probability) among the ``num_beams`` kept at every step."""
    beams: list[tuple[list[str], float]] = [([], 0.0)]
    for _ in range(steps):
        candidates = [(seq + [tok], lp + float(l)) for seq, lp in beams
                      for tok, l in next_logprobs(list(prompt) + seq).items()]
        candidates.sort(key=lambda c: -c[1])
        beams = candidates[:num_beams]
    return beams[0][0]


def _tree(seed: int, branching: int = 3, depth: int = 3) -> dict[tuple[str, ...], dict[str, float]]:
    """A random tree language: prefix (after the prompt) -> {token: log p}."""
    rng = np.random.default_rng(seed)
    letters = "abcdefgh"[:branching]
    tree: dict[tuple[str, ...], dict[str, float]] = {}

    def grow(prefix: tuple[str, ...]) -> None:
        if len(prefix) == depth:
            return
        p = rng.dirichlet(np.full(branching, 0.6))
        tree[prefix] = {f"{letters[i]}{len(prefix) + 1}": float(np.log(p[i])) for i in range(branching)}
        for tok in tree[prefix]:
            grow(prefix + (tok,))

    grow(())
    return tree


def _model(tree: dict, prompt: Sequence[str]) -> Callable[[list[str]], dict[str, float]]:
    n = len(prompt)

    def next_logprobs(tokens: list[str]) -> dict[str, float]:
        if list(tokens[:n]) != list(prompt):
            raise ValueError(f"next_logprobs got {tokens!r}, which does not start with the prompt {list(prompt)!r}")
        key = tuple(tokens[n:])
        if key not in tree:
            raise ValueError(f"next_logprobs got {tokens!r}: that is past the last step of this test")
        return dict(tree[key])

    return next_logprobs


def _exhaustive(tree: dict, steps: int) -> list[str]:
    best, best_lp = None, -math.inf

    def walk(prefix, lp):
        nonlocal best, best_lp
        if len(prefix) == steps:
            if lp > best_lp:
                best, best_lp = list(prefix), lp
            return
        for tok, l in tree[tuple(prefix)].items():
            walk(prefix + [tok], lp + l)

    walk([], 0.0)
    return best


def _per_beam_best(model, prompt, num_beams, steps):
    """A typical mistake: keep the first step's best num_beams, then extend each by its own best token."""
    first = sorted(model(list(prompt)).items(), key=lambda kv: -kv[1])[:num_beams]
    beams = [([t], l) for t, l in first]
    for _ in range(steps - 1):
        beams = [(seq + [max(model(list(prompt) + seq).items(), key=lambda kv: kv[1])[0]],
                  lp + max(model(list(prompt) + seq).values())) for seq, lp in beams]
    return max(beams, key=lambda b: b[1])[0]


def _last_only(model, prompt, num_beams, steps):
    """A typical mistake: rank hypotheses by the last token's log-probability only."""
    beams = [([], 0.0)]
    for _ in range(steps):
        cands = [(seq + [t], l) for seq, _ in beams for t, l in model(list(prompt) + seq).items()]
        cands.sort(key=lambda c: -c[1])
        beams = cands[:num_beams]
    return beams[0][0]


def _worst(model, prompt, num_beams, steps):
    """A typical mistake: sorting ascending keeps the least probable hypotheses."""
    beams = [([], 0.0)]
    for _ in range(steps):
        cands = [(seq + [t], lp + l) for seq, lp in beams for t, l in model(list(prompt) + seq).items()]
        cands.sort(key=lambda c: c[1])
        beams = cands[:num_beams]
    return beams[0][0]


# (seed, words per step, steps, num_beams). In the first two, greedy, beam, exhaustive search and the
# typical mistakes all give different answers; then greedy (1 beam) and a beam wide enough to keep all.
_BEAM_CASES = [(233, 4, 4, 3), (2, 3, 3, 2), (5, 3, 3, 1), (7, 3, 3, 9)]


from .exercises import check_beam_search  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


# --- the temperature exercise ---------------------------------------------------------------------------------

def _entropy_at(logits: torch.Tensor, temperature: float, base: float = math.e, times: bool = False) -> float:
    """Entropy of softmax(logits / T) (or of softmax(logits * T) with ``times``), in nats (or another base)."""
    z = logits.double() * temperature if times else logits.double() / temperature
    p = torch.softmax(z, dim=-1)
    nz = p[p > 0]
    return float(-(nz * torch.log(nz)).sum()) / math.log(base)


def temperature_for_entropy_reference(logits: torch.Tensor, target: float) -> float:
    """The temperature T > 0 at which softmax(logits / T) has entropy ``target`` nats, by bisection on
    log T (the entropy grows with T from that of the argmax to log V, for logits that are not all equal)."""
    lo, hi = 1e-4, 1e4
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if _entropy_at(logits, mid) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


from .exercises import check_temperature_for_entropy  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

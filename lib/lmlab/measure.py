"""Measuring language models: sparsity, Zipf's law, tokenization lengths, surprise and the comparison table.

Chapter 1's analysis code. Everything here takes plain inputs (token lists, id sequences, lmlab
models and tokenizers) and returns numbers, small dataclasses or plotly figures in the house style
(:mod:`lmlab.viz`).

Counting
    :func:`fit_ngrams` fits n-gram models of several orders from one count (the tables of the highest
    order contain every lower one); :func:`with_counts` gives a model of another order or smoothing
    that shares those counts; :func:`unseen_rates` measures sparsity: the share of held-out
    positions whose context (or whole n-gram) never occurs in the training text;
    :func:`unseen_context_mask` marks, token by token, which held-out contexts were never seen.
Zipf
    :func:`rank_frequency`, :func:`fit_zipf` (least squares on log frequency against log rank),
    :func:`zipf_figure`.
Tokens
    :func:`tokenization_lengths`: vocabulary size against sequence length; :func:`tokenization_figure`.
Distributions
    :func:`next_word_distribution` (any n-gram or neural model, as ``{word: p}``) and
    :func:`distribution_bars` (several distributions side by side).
Surprise, cross-entropy and perplexity
    :func:`evaluate` scores every held-out token with its whole sentence in context (through
    :func:`lmlab.data.evaluate_sentences`; n-gram models are memoised per context, which makes them
    fast); :func:`exact_score` does the same for the toy language's exact probabilities. A
    :class:`Score` holds the cross-entropy (mean surprise, nats per token or word), the perplexity
    ``exp(cross-entropy)`` and a standard error with sentences as the independent units.
    :func:`comparison_table` puts scores side by side with the entropy floor.
Figures
    :func:`sampling_figure` (the distribution at each step of a sampled sentence, with a slider),
    :func:`surprisal_figure`, :func:`sparsity_figure`, :func:`order_figure` (loss against the n-gram
    order), :func:`comparison_figure`.
Exercise
    :func:`check_ngram_perplexity` checks ``ngram_perplexity(n, train, test, vocab_size) -> float``.
"""
from __future__ import annotations

import html
import math
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import checks, viz
from .models import NGramLM

__all__ = [
    "fit_ngrams", "with_counts", "unseen_rates", "unseen_context_mask", "sparsity_figure",
    "RankFrequency", "ZipfFit", "rank_frequency", "fit_zipf", "zipf_figure",
    "tokenization_lengths", "tokenization_figure",
    "next_word_distribution", "distribution_bars", "sampling_figure", "surprisal_figure",
    "Score", "score_nll", "evaluate", "exact_score", "perplexity", "ComparisonTable", "comparison_table",
    "comparison_figure", "order_figure", "LEGEND_PLACES", "check_ngram_perplexity",
]


# --- argument checks ------------------------------------------------------------------------------

def _orders(orders: Iterable[int]) -> list[int]:
    items = checks.check_nonempty(orders, "orders", "int >= 1 (e.g. [1, 2, 3])")
    return [checks.check_int(n, f"orders[{i}]", 1) for i, n in enumerate(items)]


def _id_list(ids: Any, name: str) -> list[int]:
    return checks.check_ids(ids, name)


def _rows(rows: Any, name: str) -> list[list[int]]:
    if hasattr(rows, "tolist"):
        rows = rows.tolist()
    rows = list(rows)
    if rows and isinstance(rows[0], (int, np.integer)):
        raise TypeError(f"{name} must be a list of id sequences (one per sentence), got one flat sequence; "
                        "wrap it in a list")
    return [_id_list(r, name) for r in rows]


LEGEND_PLACES = {
    "upper right": dict(x=0.98, xanchor="right", y=0.98, yanchor="top"),
    "upper center": dict(x=0.5, xanchor="center", y=0.98, yanchor="top"),
    "upper left": dict(x=0.02, xanchor="left", y=0.98, yanchor="top"),
    "lower right": dict(x=0.98, xanchor="right", y=0.08, yanchor="bottom"),
    "lower left": dict(x=0.02, xanchor="left", y=0.08, yanchor="bottom"),
}


# --- counting: n-grams and sparsity ---------------------------------------------------------------

def fit_ngrams(sequences: Any, orders: Iterable[int], vocab_size: int | None = None,
               smoothing: str = "kneser-ney", **kwargs: Any) -> dict[int, NGramLM]:
    """Fit :class:`~lmlab.models.NGramLM` models of every order in ``orders`` with one count.

    Counting the highest order also counts every lower one (``counts[m]`` for ``m <= n``), so the
    lower-order models share those tables instead of counting again; each is exactly the model
    ``NGramLM(n, ...).fit(sequences)`` would give. ``kwargs`` go to ``NGramLM`` (``k``, ``discount``...).
    Returns ``{n: model}``.
    """
    ns = sorted(set(_orders(orders)))
    top = NGramLM(ns[-1], vocab_size=vocab_size, smoothing=smoothing, **kwargs).fit(sequences)
    return {n: top if n == top.n else with_counts(top, n=n) for n in ns}


def with_counts(lm: NGramLM, n: int | None = None, smoothing: str | None = None, **kwargs: Any) -> NGramLM:
    """A new :class:`~lmlab.models.NGramLM` that shares ``lm``'s counts: of order ``n <= lm.n`` (default
    ``lm.n``) and with another ``smoothing`` and its settings (``k``, ``discount``, ``lambdas``), without
    counting again. Equal to fitting ``NGramLM(n, smoothing=..., **kwargs)`` on the same data."""
    if not isinstance(lm, NGramLM) or not lm.counts:
        raise TypeError(f"lm must be a fitted NGramLM, got {lm!r}")
    n = lm.n if n is None else checks.check_int(n, "n", 1, lm.n, hint="at most the fitted model's order")
    settings = {"k": lm.k, "discount": lm.discount, "bos_id": lm.bos_id}
    if smoothing is None or smoothing == lm.smoothing:
        settings["lambdas"] = lm.lambdas[:n]
    settings.update(kwargs)
    out = NGramLM(n, vocab_size=lm.vocab_size, smoothing=smoothing or lm.smoothing, **settings)
    out.counts = {m: lm.counts[m] for m in range(1, n + 1)}
    out.continuation = {m: lm.continuation[m] for m in range(1, n)}
    return out


def _ngrams(ids: list[int], n: int) -> set[tuple[int, ...]]:
    return set(zip(*(ids[i:] for i in range(n)))) if n > 0 else {()}


def unseen_rates(train_ids: Any, test_ids: Any, orders: Iterable[int]) -> list[dict]:
    """How sparse counts are: for each order ``n``, what share of the test text was never seen.

    ``train_ids`` and ``test_ids`` are flat token streams ``(N,)``. For every test position ``t >= n - 1``
    the context is the ``n - 1`` tokens before it and the n-gram is the context plus the token.
    Returns one dict per order: ``n``, ``unseen_context`` (share of positions whose context never
    occurs in the training text), ``unseen_ngram`` (share whose whole n-gram never occurs: a counting
    model without smoothing gives those tokens probability 0), ``distinct_contexts`` (how many
    different contexts the training text has) and ``positions`` (how many test positions were looked at).
    """
    train, test = _id_list(train_ids, "train_ids"), _id_list(test_ids, "test_ids")
    out = []
    for n in _orders(orders):
        if len(test) < n:
            raise ValueError(f"the test stream has {len(test)} tokens, fewer than n={n}")
        ctx_seen, ngram_seen = _ngrams(train, n - 1), _ngrams(train, n)
        grams = list(zip(*(test[i:] for i in range(n))))
        unseen_ctx = sum(g[:-1] not in ctx_seen for g in grams)
        unseen_gram = sum(g not in ngram_seen for g in grams)
        out.append({"n": n, "unseen_context": unseen_ctx / len(grams), "unseen_ngram": unseen_gram / len(grams),
                    "distinct_contexts": len(ctx_seen), "positions": len(grams)})
    return out


def unseen_context_mask(train_ids: Any, rows: Any, size: int) -> list[np.ndarray]:
    """For each scored token of sentence-aligned ``rows``, whether its context was never seen in training.

    ``rows`` are id sequences whose first id is context only (e.g. ``"."`` + sentence, as
    :func:`lmlab.data.evaluate_sentences` feeds them); token ``t >= 1`` has the context
    ``row[max(0, t - size):t]`` (shorter at the start of a row). Returns one bool array per row,
    aligned with the scored tokens ``row[1:]``: True where that context never occurs in ``train_ids``.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size (the number of context tokens) must be an int >= 1, got {size!r}")
    train = _id_list(train_ids, "train_ids")
    seen: dict[int, set] = {}
    out = []
    for row in _rows(rows, "rows"):
        mask = np.zeros(max(0, len(row) - 1), dtype=bool)
        for t in range(1, len(row)):
            ctx = tuple(row[max(0, t - size):t])
            if len(ctx) not in seen:
                seen[len(ctx)] = _ngrams(train, len(ctx))
            mask[t - 1] = ctx not in seen[len(ctx)]
        out.append(mask)
    return out


def sparsity_figure(rates: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "unseen_context",
                    title: str | None = None) -> go.Figure:
    """Lines of the unseen share against ``n``, one per training-set size.

    ``rates`` maps a label (e.g. ``"20,000 tokens"``) to the output of :func:`unseen_rates`;
    ``metric`` is ``"unseen_context"`` or ``"unseen_ngram"``.
    """
    if metric not in ("unseen_context", "unseen_ngram"):
        raise ValueError(f"metric must be 'unseen_context' or 'unseen_ngram', got {metric!r}")
    if not isinstance(rates, Mapping) or not rates:
        raise ValueError("rates must be a non-empty dict {label: unseen_rates(...)}")
    what = "context" if metric == "unseen_context" else "n-gram"
    fig = go.Figure()
    parts = []
    for i, (label, rows) in enumerate(rates.items()):
        ns = [int(r["n"]) for r in rows]
        ys = [100 * float(r[metric]) for r in rows]
        fig.add_trace(go.Scatter(
            x=ns, y=ys, name=str(label), mode="lines+markers",
            line=dict(color=viz.COLORWAY[i % len(viz.COLORWAY)], width=2),
            marker=dict(symbol=viz.SYMBOLS[i % len(viz.SYMBOLS)], size=8),
            hovertemplate=f"{label}<br>n = %{{x}}<br>{what} never seen: %{{y:.1f}}%<extra></extra>"))
        parts.append(f"{label}: " + ", ".join(f"n={n} {y:.0f}%" for n, y in zip(ns, ys)))
    alt = (f"Line chart of the share of held-out positions whose {what} never occurs in the training text, "
           f"against the n-gram order n, one line per training-set size. " + "; ".join(parts) + ".")
    return viz._finish(fig, alt, title if title is not None else f"Held-out {what}s never seen in training",
                       xaxis=dict(title=dict(text="n (the model looks at n − 1 previous tokens)"), dtick=1),
                       yaxis=dict(title=dict(text=f"{what}s never seen (%)"), range=[-3, 103]),
                       legend=dict(x=0.02, xanchor="left", y=0.98, yanchor="top"))


# --- Zipf's law -----------------------------------------------------------------------------------

@dataclass
class RankFrequency:
    """Token types sorted by frequency: ``tokens[r - 1]`` has rank ``r`` and occurs ``counts[r - 1]`` times."""

    tokens: list[str]
    counts: np.ndarray

    @property
    def ranks(self) -> np.ndarray:
        return np.arange(1, len(self.tokens) + 1)

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def rank_frequency(tokens: Iterable[Any]) -> RankFrequency:
    """Count the tokens and sort the types by count (ties alphabetically); tokens may be words or ids."""
    if isinstance(tokens, str):
        raise TypeError("tokens must be a list of tokens, got one string; split it first (text.split())")
    counts = Counter(tokens)
    if not counts:
        raise ValueError("tokens is empty: pass a list of tokens to count")
    order = sorted(counts, key=lambda t: (-counts[t], str(t)))
    return RankFrequency([str(t) for t in order], np.array([counts[t] for t in order], dtype=np.int64))


@dataclass
class ZipfFit:
    """``log frequency = intercept + slope * log rank`` over ranks ``min_rank..max_rank`` (natural logs).

    Zipf's law says ``slope`` is close to -1; ``r2`` says how straight the log-log line is.
    """

    slope: float
    intercept: float
    r2: float
    min_rank: int
    max_rank: int

    def predict(self, ranks: Any) -> np.ndarray:
        """Fitted counts at ``ranks``."""
        return np.exp(self.intercept + self.slope * np.log(np.asarray(ranks, dtype=float)))


def fit_zipf(rf: RankFrequency, min_rank: int = 1, max_rank: int | None = None) -> ZipfFit:
    """Least-squares line through ``(log rank, log count)`` for ranks ``min_rank..max_rank``."""
    if not isinstance(rf, RankFrequency):
        raise TypeError(f"pass the output of rank_frequency(tokens), got {type(rf).__name__}")
    n = len(rf.tokens)
    max_rank = n if max_rank is None else max_rank
    if not (isinstance(min_rank, int) and isinstance(max_rank, int) and 1 <= min_rank < max_rank <= n):
        raise ValueError(f"need 1 <= min_rank < max_rank <= {n} (the number of types), "
                         f"got min_rank={min_rank!r}, max_rank={max_rank!r}")
    x = np.log(rf.ranks[min_rank - 1:max_rank].astype(float))
    y = np.log(rf.counts[min_rank - 1:max_rank].astype(float))
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return ZipfFit(float(slope), float(intercept), r2, min_rank, max_rank)


def zipf_figure(rf: RankFrequency, fit: ZipfFit | None = None, title: str | None = None) -> go.Figure:
    """Rank against frequency on log-log axes, each point a token type, with the fitted line if given."""
    if not isinstance(rf, RankFrequency):
        raise TypeError(f"pass the output of rank_frequency(tokens), got {type(rf).__name__}")
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=rf.ranks, y=rf.counts, mode="markers", name="token types", customdata=rf.tokens,
        marker=dict(color=viz.OKABE_ITO["blue"], size=6, opacity=0.8),
        hovertemplate="<b>%{customdata}</b><br>rank %{x}<br>count %{y:,}<extra></extra>"))
    alt = (f"Log-log scatter of the counts of {len(rf.tokens)} token types against their frequency rank; "
           f"the most frequent are {viz._short_list(rf.tokens, 5)}.")
    if fit is not None:
        xs = np.array([fit.min_rank, fit.max_rank])
        fig.add_trace(go.Scatter(
            x=xs, y=fit.predict(xs), mode="lines", name=f"fit: slope {fit.slope:.2f}",
            line=dict(color=viz.OKABE_ITO["vermillion"], dash="dash", width=2),
            hovertemplate=f"fitted line, slope {fit.slope:.2f}<extra></extra>"))
        alt += f" A dashed least-squares line over ranks {fit.min_rank} to {fit.max_rank} has slope {fit.slope:.2f}."
    return viz._finish(fig, alt, title if title is not None else "Rank against frequency (log-log)",
                       xaxis=dict(title=dict(text="rank (1 = most frequent)"), type="log", dtick=1),
                       yaxis=dict(title=dict(text="count"), type="log", dtick=1),
                       legend=dict(x=0.98, xanchor="right", y=0.98, yanchor="top"))


# --- tokens ---------------------------------------------------------------------------------------

def tokenization_lengths(tokenizers: Mapping[str, Any], sentences: Sequence[Any]) -> list[dict]:
    """Vocabulary size against sequence length: encode the same sentences with each tokenizer.

    ``tokenizers`` maps a name to an lmlab tokenizer; ``sentences`` are strings or lists of words.
    Returns one dict per tokenizer: ``name``, ``vocab_size``, ``tokens`` (in all), ``words``,
    ``tokens_per_word`` and ``tokens_per_sentence``, and ``unknown`` (how many tokens are ``<unk>``).
    """
    from .data import sentence_tokens

    if not isinstance(tokenizers, Mapping) or not tokenizers:
        raise ValueError("tokenizers must be a non-empty dict {name: tokenizer}")
    toks = sentence_tokens(sentences)
    texts = [" ".join(s) for s in toks]
    n_words = sum(len(s) for s in toks)
    out = []
    for name, tok in tokenizers.items():
        if not hasattr(tok, "encode") or not hasattr(tok, "vocab_size"):
            raise TypeError(f"tokenizer {name!r} must be an lmlab tokenizer, got {type(tok).__name__}")
        ids = [tok.encode(t) for t in texts]
        n = sum(len(i) for i in ids)
        out.append({"name": str(name), "vocab_size": int(tok.vocab_size), "tokens": n, "words": n_words,
                    "tokens_per_word": n / n_words, "tokens_per_sentence": n / len(texts),
                    "unknown": sum(i.count(tok.unk_id) for i in ids)})
    return out


def tokenization_figure(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> go.Figure:
    """Tokens per sentence against vocabulary size (log x), one labelled point per tokenizer."""
    if not rows:
        raise ValueError("rows is empty: pass the output of tokenization_lengths(...)")
    rows = sorted(rows, key=lambda r: r["vocab_size"])
    fig = go.Figure(go.Scatter(
        x=[r["vocab_size"] for r in rows], y=[r["tokens_per_sentence"] for r in rows],
        mode="lines+markers+text", text=[r["name"] for r in rows], textposition="top right",
        customdata=[[r["name"], r["tokens_per_word"]] for r in rows], line=dict(color=viz.OKABE_ITO["blue"]),
        marker=dict(size=9), cliponaxis=False,
        hovertemplate="<b>%{customdata[0]}</b><br>vocabulary %{x:,}<br>%{y:.1f} tokens per sentence"
                      "<br>%{customdata[1]:.2f} tokens per word<extra></extra>"))
    alt = ("Line chart of the mean number of tokens per sentence against vocabulary size (log scale): "
           + "; ".join(f"{r['name']} {r['vocab_size']} types, {r['tokens_per_sentence']:.1f} tokens" for r in rows)
           + ". Larger vocabularies give shorter sequences.")
    lo, hi = rows[0]["vocab_size"], rows[-1]["vocab_size"]
    ticks = [t for t in (10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)
             if lo / 1.5 <= t <= hi * 1.5]
    return viz._finish(fig, alt, title if title is not None else "Vocabulary size against sequence length",
                       xaxis=dict(title=dict(text="vocabulary size (log scale)"), type="log", tickvals=ticks,
                                  ticktext=[f"{t:,}" for t in ticks]),
                       yaxis=dict(title=dict(text="tokens per sentence"), rangemode="tozero"),
                       showlegend=False, margin=dict(r=110))


# --- next-word distributions of any model ---------------------------------------------------------

def next_word_distribution(model: Any, tokenizer: Any, context: str | Sequence[str]) -> dict[str, float]:
    """A model's distribution of the next token after ``context`` as ``{token: probability}``, most
    probable first. ``model`` is an :class:`~lmlab.models.NGramLM` or an lmlab causal neural model;
    ``context`` is text or a list of words (a word tokenizer's tokens)."""
    import torch

    words = context.split() if isinstance(context, str) else list(context)
    if not words:
        raise ValueError("context is empty: give at least one word (e.g. '.' for a sentence start)")
    ids = (tokenizer.encode_tokens(words) if hasattr(tokenizer, "encode_tokens")
           else tokenizer.encode(" ".join(words)))
    if isinstance(model, NGramLM):
        probs = np.asarray(model.next_distribution(ids), dtype=np.float64)
    elif isinstance(model, torch.nn.Module):
        from .generate import next_token_distribution

        probs = next_token_distribution(model, list(ids)).double().cpu().numpy()
    else:
        raise TypeError(f"model must be an NGramLM or an lmlab neural model, got {type(model).__name__}")
    order = np.argsort(-probs, kind="stable")
    return {tokenizer.id_to_token(int(i)): float(probs[i]) for i in order if probs[i] > 0}


def distribution_bars(distributions: Mapping[str, Mapping[str, float]], k: int = 8, context: str | None = None,
                      title: str | None = None) -> go.Figure:
    """Grouped bars of several next-word distributions (``{name: {word: p}}``) over the ``k`` words that
    are most probable under any of them, in the order of the last one (e.g. the exact distribution)."""
    if not isinstance(distributions, Mapping) or not distributions:
        raise ValueError("distributions must be a non-empty dict {name: {word: probability}}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    for name, dist in distributions.items():
        if not isinstance(dist, Mapping):
            raise TypeError(f"distribution {name!r} must be a dict {{word: probability}}, got {type(dist).__name__}")
    best: dict[str, float] = {}
    for dist in distributions.values():
        for w, p in dist.items():
            best[w] = max(best.get(w, 0.0), float(p))
    ref = list(distributions.values())[-1]
    words = sorted(best, key=lambda w: (-best[w], w))[:k]
    words.sort(key=lambda w: (-float(ref.get(w, 0.0)), -best[w], w))
    fig = go.Figure()
    parts = []
    for i, (name, dist) in enumerate(distributions.items()):
        ys = [float(dist.get(w, 0.0)) for w in words]
        fig.add_trace(go.Bar(
            name=str(name), x=[viz._label(w) for w in words], y=ys, customdata=words,
            marker=dict(color=viz.COLORWAY[i % len(viz.COLORWAY)], pattern=dict(shape=["", "/", "x", "."][i % 4])),
            hovertemplate=f"{name}<br><b>%{{customdata}}</b>: p = %{{y:.3f}}<extra></extra>"))
        parts.append(f"{name}: " + ", ".join(f"{w} {y:.2f}" for w, y in zip(words, ys)))
    after = f" after “{context}”" if context else ""
    alt = f"Grouped bar chart of next-word probabilities{after}. " + "; ".join(parts) + "."
    return viz._finish(fig, alt, title if title is not None else f"Next word{after}", barmode="group",
                       xaxis=dict(title=dict(text="next word"), type="category"),
                       yaxis=dict(title=dict(text="probability"), rangemode="tozero"),
                       legend=dict(x=0.98, xanchor="right", y=0.98, yanchor="top"))


# --- sampling, token by token ---------------------------------------------------------------------

def sampling_figure(steps: Sequence[tuple[Sequence[str], Mapping[str, float], str]], k: int = 8) -> go.Figure:
    """The next-token distribution at each step of a sampled sentence, one step per slider position.

    ``steps`` is a list of ``(prefix, distribution, chosen)``: the words so far, the distribution of
    the next word (``dict[str, float]``) and the word that was drawn. Each step shows the ``k`` most
    probable words (and the chosen one if it is rarer), the chosen word highlighted. The slider
    restyles one bar trace (no animation frames), so the figure opens on step 1, also in static HTML.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not steps:
        raise ValueError("steps is empty: pass [(prefix, distribution, chosen), ...]")
    views, ymax = [], 0.0
    for i, step in enumerate(steps):
        try:
            prefix, dist, chosen = step
        except (TypeError, ValueError):
            raise TypeError(f"step {i} must be (prefix, distribution, chosen), got {step!r:.80}") from None
        if not isinstance(dist, Mapping) or chosen not in dist:
            raise ValueError(f"step {i}: the chosen word {chosen!r} is not in its distribution")
        words = sorted(dist, key=lambda w: (-dist[w], w))[:k]
        if chosen not in words:
            words[-1] = chosen
        probs = [float(dist[w]) for w in words]
        ymax = max(ymax, max(probs))
        colors = [viz.OKABE_ITO["vermillion"] if w == chosen else viz.OKABE_ITO["sky_blue"] for w in words]
        prefix = list(prefix)
        shown = " ".join(prefix[-4:]) if prefix else "(start)"
        shown = ("… " if len(prefix) > 4 else "") + shown
        title = f"Step {i + 1}: after “{shown}” it drew “{chosen}” (p = {dist[chosen]:.2f})"
        views.append(dict(x=[viz._label(w) for w in words], y=probs, colors=colors, words=words, title=title))

    first = views[0]
    fig = go.Figure(go.Bar(x=first["x"], y=first["y"], marker_color=first["colors"], customdata=first["words"],
                           hovertemplate="<b>%{customdata}</b><br>p = %{y:.3f}<extra></extra>"))
    slider = dict(active=0, currentvalue=dict(prefix="step "), pad=dict(t=50), steps=[
        dict(label=str(i + 1), method="update",
             args=[{"x": [v["x"]], "y": [v["y"]], "marker.color": [v["colors"]], "customdata": [v["words"]]},
                   {"title.text": v["title"]}])
        for i, v in enumerate(views)])
    sentence = " ".join(s[2] for s in steps)
    alt = (f"Bar chart with a slider over the {len(views)} steps of sampling the sentence '{sentence}'. "
           "Each step shows the most probable next words, the drawn word highlighted: "
           + "; ".join(f"{s[2]} (p = {s[1][s[2]]:.2f})" for s in steps) + ".")
    return viz._finish(fig, alt, first["title"], sliders=[slider],
                       xaxis=dict(title=dict(text="next word"), type="category"),
                       yaxis=dict(title=dict(text="probability"), range=[0, 1.05 * ymax]),
                       showlegend=False, height=500, margin=dict(b=40))


# --- surprise -------------------------------------------------------------------------------------

def surprisal_figure(tokens: Sequence[str], nll: Mapping[str, Any], title: str | None = None,
                     legend: str = "upper left") -> go.Figure:
    """Grouped bars of the surprise ``-log p`` (nats) of each token under one or more models.

    ``tokens`` is the sentence; ``nll`` maps a model name to its per-token values ``(len(tokens),)``.
    The legend (placed as in :data:`LEGEND_PLACES`; a sentence's first words are usually the least
    surprising, hence upper left) gives each model's mean: its cross-entropy on this sentence.
    """
    if legend not in LEGEND_PLACES:
        raise ValueError(f"legend must be one of {sorted(LEGEND_PLACES)}, got {legend!r}")
    words = viz._tokens(tokens)
    if not isinstance(nll, Mapping) or not nll:
        raise ValueError("nll must be a non-empty dict {model name: per-token surprise}")
    fig = go.Figure()
    parts = []
    for i, (name, values) in enumerate(nll.items()):
        v = viz._array(values, f"nll[{name!r}]", 1)
        if len(v) != len(words):
            raise ValueError(f"nll[{name!r}] has {len(v)} values for {len(words)} tokens")
        fig.add_trace(go.Bar(
            x=list(range(len(words))), y=v, name=f"{name} (mean {v.mean():.2f})", customdata=words,
            marker=dict(color=viz.COLORWAY[i % len(viz.COLORWAY)],
                        pattern=dict(shape=["", "/", "x", "."][i % 4])),
            hovertemplate=f"{name}<br><b>%{{customdata}}</b>: surprise %{{y:.2f}} nats<extra></extra>"))
        parts.append(f"{name}: " + ", ".join(f"{w} {x:.1f}" for w, x in zip(words, v)))
    alt = "Grouped bar chart of each word's surprise in nats. " + "; ".join(parts) + "."
    return viz._finish(fig, alt, title if title is not None else "Surprise, word by word", barmode="group",
                       xaxis=dict(title=dict(text="word"), **viz._token_axis(words)),
                       yaxis=dict(title=dict(text="surprise −log p (nats)"), rangemode="tozero"),
                       legend=LEGEND_PLACES[legend])


# --- cross-entropy, perplexity and the comparison table --------------------------------------------

def perplexity(cross_entropy: float) -> float:
    """``exp(cross_entropy)``: the number of equally likely choices that would be as surprising."""
    if not checks.is_real(cross_entropy):
        raise TypeError(f"cross_entropy must be a number >= 0 (nats per token; inf for a zero-probability "
                        f"token), got {cross_entropy!r}")
    cross_entropy = float(cross_entropy)
    if math.isnan(cross_entropy) or cross_entropy < 0:
        raise ValueError(f"cross_entropy must be a number >= 0 (nats per token; inf for a zero-probability "
                         f"token), got {cross_entropy}")
    return math.exp(cross_entropy) if cross_entropy < 700 else math.inf


@dataclass
class Score:
    """A model's held-out loss. ``cross_entropy`` is the mean surprise in nats per token (``inf`` if some
    token got probability 0), ``perplexity = exp(cross_entropy)``; ``se`` is the standard error of the
    cross-entropy with sentences as the independent units; ``zeros`` counts tokens given probability 0."""

    name: str
    cross_entropy: float
    perplexity: float
    n_tokens: int
    n_sentences: int
    se: float
    zeros: int
    token_nll: list[np.ndarray] = field(repr=False)
    unit: str = "token"

    def __str__(self) -> str:
        return (f"{self.name}: cross-entropy {self.cross_entropy:.3f} nats per {self.unit}, "
                f"perplexity {self.perplexity:.2f} ({self.n_tokens:,} {self.unit}s)")


def score_nll(token_nll: Sequence[Any], name: str = "model", unit: str = "token") -> Score:
    """A :class:`Score` from per-token surprises, one array per sentence (nats); ``unit`` names what one
    entry is (``"token"``, ``"word"``, ``"character"``)."""
    if not isinstance(unit, str) or not unit:
        raise ValueError(f"unit must be a non-empty string such as 'token' or 'word', got {unit!r}")
    arrays = [np.asarray(a, dtype=np.float64).reshape(-1) for a in token_nll]
    if not arrays or not any(len(a) for a in arrays):
        raise ValueError("token_nll is empty: pass one array of surprises per sentence")
    if any(np.isnan(a).any() or (a < -1e-9).any() for a in arrays):
        raise ValueError("surprises must be >= 0 and not NaN (they are -log p)")
    sums = np.array([a.sum() for a in arrays])
    lens = np.array([len(a) for a in arrays], dtype=np.float64)
    n = int(lens.sum())
    ce = float(sums.sum() / n)
    s = len(arrays)
    if math.isfinite(ce) and s > 1:
        se = math.sqrt(float(((sums - ce * lens) ** 2).sum()) / (s * (s - 1))) / float(lens.mean())
    else:
        se = math.nan
    zeros = int(sum(np.isinf(a).sum() for a in arrays))
    return Score(str(name), ce, perplexity(ce) if math.isfinite(ce) else math.inf, n, s, se, zeros, arrays, unit)


class _MemoNGram:
    """An NGramLM seen through a cache of its distributions, keyed by the last ``n - 1`` ids."""

    causal = True

    def __init__(self, lm: NGramLM):
        self.lm, self.cache, self.key = lm, {}, _settings(lm)

    def next_distribution(self, context: Sequence[int]) -> np.ndarray:
        key = tuple(context[-(self.lm.n - 1):]) if self.lm.n > 1 else ()
        if key not in self.cache:
            self.cache[key] = self.lm.next_distribution(list(key))
        return self.cache[key]


def _settings(lm: NGramLM) -> tuple:
    """What an NGramLM's distributions depend on (the count tables by identity: fit() replaces them)."""
    return (id(lm.counts), id(lm.continuation), lm.n, lm.vocab_size, lm.smoothing, lm.k, lm.discount,
            tuple(lm.lambdas), lm.bos_id)


_MEMOS: "weakref.WeakKeyDictionary[NGramLM, _MemoNGram]" = weakref.WeakKeyDictionary()


def _memo(lm: NGramLM) -> _MemoNGram:
    """The cached view of ``lm``, rebuilt when the model was refitted or its settings changed."""
    memo = _MEMOS.get(lm)
    if memo is None or memo.key != _settings(lm):
        memo = _MEMOS[lm] = _MemoNGram(lm)
    return memo


def evaluate(model: Any, tokenizer: Any, sentences: Sequence[Any], name: str | None = None,
             per: str = "word", **kwargs: Any) -> Score:
    """Score every token of held-out ``sentences`` with its whole sentence in context.

    ``model`` is an lmlab neural model or an :class:`~lmlab.models.NGramLM` (its distributions are
    cached per context, so scoring is fast). Each sentence is fed after the end of the previous one
    (``"."``), as :func:`lmlab.data.evaluate_sentences` does; ``per="word"`` gives one surprise per
    word (a character or BPE model's pieces summed), ``per="token"`` one per model token. ``kwargs``
    go to ``evaluate_sentences``.
    """
    from .data import evaluate_sentences

    from .data import _check_tokenizer, _check_vocab

    _check_tokenizer(tokenizer)
    _check_vocab(model, tokenizer)
    checks.check_str(name, "name", allow_none=True)
    scored = _memo(model) if isinstance(model, NGramLM) else model
    nll = evaluate_sentences(scored, tokenizer, sentences, per=per, **kwargs)
    return score_nll(nll, name if name is not None else type(model).__name__, unit=per)


def exact_score(lang: Any, sentences: Sequence[Any], name: str = "exact (the grammar)") -> Score:
    """The toy language's own probabilities as a model: every word scored given its sentence so far."""
    from .data import exact_token_nll

    return score_nll(exact_token_nll(lang, sentences), name, unit="word")


@dataclass
class ComparisonTable:
    """Held-out scores side by side with the entropy floor. ``rows``: one dict per model with ``model``,
    ``cross_entropy``, ``perplexity``, ``gap`` (cross-entropy minus the floor, nats per token) and ``se``."""

    rows: list[dict]
    floor: float
    n_tokens: int
    n_sentences: int
    unit: str = "token"

    def row(self, model: str) -> dict:
        for r in self.rows:
            if r["model"] == model:
                return r
        raise KeyError(f"no row {model!r}; the rows are {[r['model'] for r in self.rows]}")

    def __str__(self) -> str:
        head = f"{'model':<24}{'cross-entropy':>15}{'perplexity':>12}{'gap to floor':>14}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['model']:<24}{r['cross_entropy']:>15.3f}{r['perplexity']:>12.2f}{r['gap']:>+14.3f}")
        lines.append(f"{'entropy floor':<24}{self.floor:>15.3f}{math.exp(self.floor):>12.2f}{0:>+14.3f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        num = 'style="text-align: right"'
        cells = []
        for r in self.rows:
            cells.append(f"<tr><td>{html.escape(r['model'])}</td><td {num}>{r['cross_entropy']:.3f}</td>"
                         f"<td {num}>{r['perplexity']:.2f}</td><td {num}>{r['gap']:+.3f}</td></tr>")
        cells.append(f"<tr><td><em>entropy floor</em></td><td {num}><em>{self.floor:.3f}</em></td>"
                     f"<td {num}><em>{math.exp(self.floor):.2f}</em></td><td {num}><em>0</em></td></tr>")
        return (f'<table class="table lmlab-table"><caption>Held-out cross-entropy (nats per {self.unit}), '
                f"perplexity and gap to the entropy floor, on {self.n_tokens:,} {self.unit}s in "
                f"{self.n_sentences:,} sentences</caption><thead><tr><th>model</th><th {num}>cross-entropy</th>"
                f"<th {num}>perplexity</th><th {num}>gap to floor</th></tr></thead><tbody>"
                + "".join(cells) + "</tbody></table>")


def comparison_table(scores: Sequence[Score], floor: float) -> ComparisonTable:
    """Put held-out scores beside the entropy floor (nats per token); all must be on the same tokens."""
    scores = list(scores.values()) if isinstance(scores, Mapping) else list(scores)
    if not scores or not all(isinstance(s, Score) for s in scores):
        raise TypeError("scores must be a non-empty list of Score objects (from evaluate / exact_score)")
    if not (isinstance(floor, (int, float)) and math.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be the entropy rate, a number >= 0, got {floor!r}")
    sizes = {(s.n_tokens, s.n_sentences) for s in scores}
    if len(sizes) != 1:
        raise ValueError(f"the scores were measured on different texts (tokens, sentences): {sorted(sizes)}; "
                         "score every model on the same held-out sentences, per word")
    units = {s.unit for s in scores}
    if len(units) != 1:
        raise ValueError(f"the scores are in different units {sorted(units)}: cross-entropies per word and per "
                         "token do not compare; score every model per word (evaluate(..., per='word'))")
    rows = [{"model": s.name, "cross_entropy": s.cross_entropy, "perplexity": s.perplexity,
             "gap": s.cross_entropy - floor, "se": s.se} for s in scores]
    n_tokens, n_sentences = sizes.pop()
    return ComparisonTable(rows, float(floor), n_tokens, n_sentences, units.pop())


def comparison_figure(table: ComparisonTable, title: str | None = None) -> go.Figure:
    """Bars of each model's held-out cross-entropy with the entropy floor as a dashed line."""
    if not isinstance(table, ComparisonTable):
        raise TypeError(f"pass the output of comparison_table(...), got {type(table).__name__}")
    names = [r["model"] for r in table.rows]
    ce = [r["cross_entropy"] for r in table.rows]
    fig = go.Figure(go.Bar(
        x=names, y=ce, marker_color=viz.OKABE_ITO["blue"], showlegend=False,
        error_y=dict(type="data", array=[1.96 * r["se"] for r in table.rows], visible=True, color=viz.TEXT),
        customdata=[[r["perplexity"], r["gap"]] for r in table.rows],
        hovertemplate="<b>%{x}</b><br>cross-entropy %{y:.3f} nats<br>perplexity %{customdata[0]:.2f}"
                      "<br>gap to floor %{customdata[1]:+.3f}<extra></extra>"))
    floor_line = dict(color=viz.TEXT, dash="dash", width=1.5)
    fig.add_hline(y=table.floor, line=floor_line)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=floor_line,  # names the line in the legend
                             name=f"entropy floor {table.floor:.3f}"))
    alt = (f"Bar chart of held-out cross-entropy in nats per {table.unit}: "
           + ", ".join(f"{n} {c:.3f}" for n, c in zip(names, ce))
           + f". A dashed line marks the entropy floor at {table.floor:.3f}.")
    return viz._finish(fig, alt, title if title is not None else "Held-out cross-entropy against the floor",
                       xaxis=dict(title=dict(text="model"), type="category"),
                       yaxis=dict(title=dict(text=f"cross-entropy (nats per {table.unit})"), rangemode="tozero"),
                       showlegend=True, legend=LEGEND_PLACES["upper right"])




def order_figure(curves: Mapping[str, Sequence[float]], orders: Sequence[int] | None = None, *,
                 floor: float | None = None, title: str | None = None,
                 y_title: str = "held-out cross-entropy (nats per word)", legend: str = "upper right") -> go.Figure:
    """Cross-entropy against the n-gram order, one line per curve, with the entropy floor if given.

    ``curves`` maps a name to one value per order; ``orders`` defaults to ``1, 2, ...``. Drawn with
    :func:`lmlab.viz.loss_curves`; ``legend`` is one of :data:`LEGEND_PLACES` (put it where the lines are not).
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty dict {name: [value for each order]}")
    if legend not in LEGEND_PLACES:
        raise ValueError(f"legend must be one of {sorted(LEGEND_PLACES)}, got {legend!r}")
    runs = {}
    for name, values in curves.items():
        values = [float(v) for v in values]
        xs = list(range(1, len(values) + 1)) if orders is None else [int(n) for n in orders]
        if len(xs) != len(values):
            raise ValueError(f"curve {name!r} has {len(values)} values for {len(xs)} orders")
        runs[str(name)] = (xs, values)
    fig = viz.loss_curves(runs, entropy_floor=floor, title=title, x_title="n (the n-gram order)", y_title=y_title)
    return fig.update_layout(xaxis=dict(dtick=1), legend=LEGEND_PLACES[legend])


# --- exercise: held-out perplexity of an n-gram model ----------------------------------------------

def _ngram_ppl_ref(n, train, test, vocab_size, on=None, smoothing="kneser-ney", stream=False, per_sentence=False,
                   log=False, total=False):
    """The reference, and (through its switches) the typical mistakes."""
    data = [t for s in train for t in s] if stream else train
    lm = NGramLM(n, vocab_size=vocab_size, smoothing=smoothing).fit(data)
    scored = test if on is None else on
    lps = [lm.token_logprobs(s) for s in scored]
    if per_sentence:
        return float(np.mean([math.exp(-lp.mean()) for lp in lps]))
    lp = np.concatenate(lps)
    if total:
        return perplexity(float(-lp.sum()))
    ce = float(-lp.mean())
    return ce if log else math.exp(ce)


from .exercises import check_ngram_perplexity  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

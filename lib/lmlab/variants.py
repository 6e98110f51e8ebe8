"""Beyond the lecture (chapter 6): architectural variants compared fairly, in-context copying, fine-tuning.

Comparing variants
    :func:`compare` trains one tiny transformer per (variant, seed) on the same budget (:class:`Budget`:
    the same data, steps, batch and learning rate; only the named field of the
    :class:`~lmlab.models.TransformerConfig` changes) and measures each on held-out toy sentences: its
    gap to the exact loss (``lmlab.data``'s sentence-aligned evaluation against the toy language's exact
    answers) and any probes you pass. The result, a :class:`Comparison`, is tidy: one :class:`Run` per
    (label, seed), :meth:`Comparison.summary` gives mean, standard deviation, minimum and maximum over
    seeds, :meth:`Comparison.figure` draws every seed and the mean with its spread. GLU activations get
    two thirds of the feed-forward width, so every activation has the same number of parameters
    (Shazeer, 2020).

Probes (``probes={"order": order_probe(60)}`` in :func:`compare`)
    :func:`order_accuracy`: how often a model scores a held-out sentence above the same words shuffled
    (:func:`shuffled_sentences`); a masked model without positions ties on every pair (0.5 exactly).
    :func:`agreement_pairs` / :func:`agreement_accuracy`: minimal pairs such as "the dog near the dogs ___"
    and "the dogs near the dog ___", made of the same words in a different order. A model that cannot
    see word order gives both the same prediction, so it is right on exactly half of them.
    :func:`order_probe` and :func:`agreement_probe` fix the pairs once and return probe functions.

Copying from context
    :func:`copy_probe`: the toy language's copy sentences "the code is X Y Z , X Y Z ." The first
    three syllables are random; the repeat can only be predicted by copying from the context
    (:func:`random_codes` with ``exclude=training_codes()`` gives codes a zoo model never saw).
    :func:`induction_scores` finds the head that attends to the syllable to be copied;
    :func:`attention_by_offset` shows how far back a head looks. Figures: :func:`copy_figure`,
    :func:`offset_figure`.

Fine-tuning
    :func:`finetune` adapts a copy of a trained model to ``toy("shifted")`` and records its gap on both
    languages as it goes; :func:`finetune_comparison` does it over seeds, beside models trained from
    scratch on the same budget.

Inside the model
    :func:`activation_figure`: the feed-forward activations (ReLU, GELU, SiLU, sigmoid).
    :func:`logit_attribution`: the logit of a token, split exactly into what the embeddings and each
    attention and feed-forward layer wrote into the residual stream (pre-norm models).
    :func:`hf_tokenizer`: a ``transformers`` tokenizer for a word-level lmlab tokenizer, so a model
    converted with :func:`lmlab.hub.to_gpt2` can be used through the ``transformers`` API.

Exercises
    :func:`check_sinusoidal_positions`, :func:`check_rotary`, :func:`check_swiglu`,
    :func:`check_prenorm_block`.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import html
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from . import checks, env
from .exercises import _array, _call, _catalogue, _close, _randn, _run, _shape, _wrong_values

__all__ = [
    "BASE", "SEEDS", "Budget", "Run", "Comparison", "model_config", "train_variant", "compare", "compare_configs",
    "agreement_pairs", "agreement_accuracy", "shuffled_sentences", "order_accuracy", "verb_number_preference",
    "CopyResult", "copy_probe",
    "random_codes", "training_codes", "FinetuneRun", "finetune", "finetune_comparison", "finetune_curves",
    "logit_attribution", "attribution_figure", "hf_tokenizer", "comparison_figure",
    "order_probe", "agreement_probe", "copy_prompt", "copy_figure", "induction_scores", "activation_figure",
    "attention_by_offset", "offset_figure",
    "held_out_gap", "Probe",
    "check_sinusoidal_positions", "check_rotary", "check_swiglu", "check_prenorm_block",
]

#: The tiny transformer every comparison starts from (TransformerConfig fields, vocab_size added later).
#: Its context (18) holds the longest held-out sentence of either language with the "." before it.
BASE: dict[str, Any] = dict(context_length=18, n_layer=2, n_head=4, d_model=32, d_ff=128, activation="gelu",
                            positions="learned", norm="pre")
#: Seeds of the comparisons (weights and batch order); three is the least that shows a spread.
SEEDS: tuple[int, ...] = (0, 1, 2)
EVAL_SEED = 12345  # the held-out sentences (lmlab.zoo's): no training stream here uses this seed
GLU = ("swiglu", "geglu", "reglu")


# --- the budget -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """What every run of a comparison gets: the same data, steps, batch and learning-rate schedule.

    ``train_sentences`` toy sentences drawn with ``data_seed`` form the training stream (the same for
    every run); the gap is measured on ``eval_sentences`` held-out sentences. ``threads`` sets torch's
    thread count during the runs (one thread is fastest for models this small; None leaves it alone).
    """

    steps: int = 300
    batch_size: int = 32
    lr: float = 1e-2
    warmup_steps: int = 30
    weight_decay: float = 0.1
    mask_prob: float = 0.15
    train_sentences: int = 10_000
    eval_sentences: int = 300
    data_seed: int = 6000
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "train_sentences", "eval_sentences"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Budget.{name} must be an int >= 1, got {value!r}")
        for name in ("warmup_steps", "data_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Budget.{name} must be an int >= 0, got {value!r}")
        if self.data_seed in (EVAL_SEED, EVAL_SEED - 1):
            raise ValueError(f"Budget.data_seed={self.data_seed} would train on the held-out sentences; pick another")
        checks.check_real(self.lr, "Budget.lr", 0, low_open=True)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"Budget.threads must be an int >= 1 or None, got {self.threads!r}")

    def train_config(self, seed: int):
        """The :class:`lmlab.train.TrainConfig` of one run."""
        from .train import TrainConfig

        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           weight_decay=self.weight_decay, mask_prob=self.mask_prob, eval_batches=0, seed=seed,
                           device="cpu")


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --- data (deterministic, so memoised) --------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _tokenizer(variant: str = "standard"):
    from .corpus import toy
    from .tokenizers import WordTokenizer

    return WordTokenizer.for_toy(toy(variant))


def _train_stream(variant: str, n_sentences: int, seed: int) -> torch.Tensor:
    """The training stream drawn with ``seed`` plus the seed offset (cached by the seed actually used)."""
    return _train_stream_exact(variant, n_sentences, checks.seed_of(seed, "data_seed"))


@functools.lru_cache(maxsize=8)
def _train_stream_exact(variant: str, n_sentences: int, seed: int) -> torch.Tensor:
    from . import data
    from .corpus import toy

    with env.fixed_seeds():  # ``seed`` already holds the offset
        return data.stream_ids(toy(variant).sentences(n_sentences, seed=seed), _tokenizer(variant))


@functools.lru_cache(maxsize=8)
def _held_out(variant: str, n: int) -> tuple[tuple[str, ...], ...]:
    from .corpus import toy

    with env.fixed_seeds():  # the held-out sentences are fixed (lmlab.zoo's), whatever the seed offset
        return tuple(tuple(s) for s in toy(variant).sentences(n, seed=EVAL_SEED))


@functools.lru_cache(maxsize=8)
def _exact_nll(variant: str, n: int, masked: bool) -> float:
    """Mean exact NLL (nats per word) of the held-out sentences: next-word, or each word given the rest."""
    from . import data
    from .corpus import toy

    nll = data.exact_token_nll(toy(variant), [list(s) for s in _held_out(variant, n)], masked=masked)
    return float(sum(v.sum() for v in nll) / sum(len(v) for v in nll))


def held_out_gap(model, tokenizer=None, variant: str = "standard", n_sentences: int = 300) -> dict[str, float]:
    """``{"gap", "nll", "exact_nll"}`` of a word-level model on ``n_sentences`` held-out sentences.

    Causal models: mean -log q(word | its sentence so far), against the exact next-word values; masked
    models: each word masked alone and predicted from the rest of its sentence (pseudo-log-likelihood),
    against the exact masked values. Nats per word, ``"."`` included.
    """
    from . import data

    tokenizer = tokenizer or _tokenizer(variant)
    sentences = [list(s) for s in _held_out(variant, n_sentences)]
    per_sentence = data.evaluate_sentences(model, tokenizer, sentences)
    nll = float(sum(v.sum() for v in per_sentence) / sum(len(v) for v in per_sentence))
    exact = _exact_nll(variant, n_sentences, not getattr(model, "causal", True))
    return {"gap": nll - exact, "nll": nll, "exact_nll": exact}


# --- one run ----------------------------------------------------------------------------------------

def model_config(vocab_size: int, causal: bool = True, base: Mapping[str, Any] | None = None, **changes):
    """A :class:`~lmlab.models.TransformerConfig`: :data:`BASE` updated by ``base`` then ``changes``.

    A GLU activation (``swiglu``, ``geglu``, ``reglu``) has a third weight matrix, so unless ``d_ff`` is
    given explicitly its width becomes two thirds of the base width: every activation then has the same
    number of parameters, as in Shazeer (2020).
    """
    from .models import TransformerConfig

    merged = {**BASE, **(base or {})}
    explicit_d_ff = "d_ff" in changes
    merged.update(changes)
    if merged.get("activation") in GLU and not explicit_d_ff:
        merged["d_ff"] = int(round(2 * merged["d_ff"] / 3))
    bad = sorted(set(merged) - {f.name for f in fields(TransformerConfig)})
    if bad:
        raise TypeError(f"unknown TransformerConfig field(s) {bad}; see lmlab.models.TransformerConfig")
    return TransformerConfig(vocab_size=vocab_size, causal=causal, **merged)


def train_variant(changes: Mapping[str, Any] | None = None, seed: int = 0, *, causal: bool = True,
                  budget: Budget | None = None, base: Mapping[str, Any] | None = None, variant: str = "standard"):
    """Train one tiny transformer (``BASE`` + ``base`` + ``changes``) on the budget; returns ``(model, history)``.

    ``seed`` seeds the initial weights and the batch order; the training data are the same for every seed.
    """
    from .models import Transformer
    from .train import train

    budget = budget or Budget()
    checks.check_seed(seed)  # offset where it is used (env.seed_everything, train)
    tok = _tokenizer(variant)
    ids = _train_stream(variant, budget.train_sentences, budget.data_seed)
    with _threads(budget.threads):
        env.seed_everything(seed)
        model = Transformer(model_config(tok.vocab_size, causal, base, **dict(changes or {})))
        history = train(model, ids, None, budget.train_config(seed), tokenizer=tok, progress=False)
    return model.eval(), history


# --- comparisons ------------------------------------------------------------------------------------

@dataclass
class Run:
    """One trained model of a comparison: its label, seed, metrics and (kept for inspection) the model."""

    label: str
    seed: int
    metrics: dict[str, float]
    model: Any = field(default=None, repr=False)
    history: Any = field(default=None, repr=False)


@dataclass
class Comparison:
    """Runs of several variants over seeds. ``labels`` keeps the order the variants were given in.

    ``higher_is_better`` names metrics where larger is better (accuracies); for the rest (gaps, losses)
    lower is better.
    """

    name: str
    runs: list[Run]
    labels: list[str]
    higher_is_better: tuple[str, ...] = ()

    @property
    def metrics(self) -> list[str]:
        names: list[str] = []
        for run in self.runs:
            names += [m for m in run.metrics if m not in names]
        return names

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    def _check(self, label: str | None = None, metric: str | None = None) -> None:
        if label is not None and label not in self.labels:
            raise ValueError(f"unknown label {label!r}; this comparison has {self.labels}")
        if metric is not None and metric not in self.metrics:
            raise ValueError(f"unknown metric {metric!r}; this comparison has {self.metrics}")

    def values(self, label: str, metric: str = "gap") -> np.ndarray:
        """The metric of every seed of ``label``, in seed order ``(n_seeds,)``."""
        self._check(label, metric)
        runs = sorted((r for r in self.runs if r.label == label and metric in r.metrics), key=lambda r: r.seed)
        return np.array([r.metrics[metric] for r in runs], dtype=float)

    def value(self, label: str, seed: int, metric: str = "gap") -> float:
        """The metric of one run."""
        self._check(label, metric)
        for r in self.runs:
            if r.label == label and r.seed == seed:
                return float(r.metrics[metric])
        raise ValueError(f"no run of {label!r} with seed {seed}; seeds: {self.seeds}")

    def run(self, label: str, seed: int) -> Run:
        """The :class:`Run` of ``label`` with ``seed`` (its model is in ``.model``)."""
        self._check(label)
        for r in self.runs:
            if r.label == label and r.seed == seed:
                return r
        raise ValueError(f"no run of {label!r} with seed {seed}; seeds: {self.seeds}")

    def mean(self, label: str, metric: str = "gap") -> float:
        return float(self.values(label, metric).mean())

    def std(self, label: str, metric: str = "gap") -> float:
        """Sample standard deviation over seeds (0 for a single run)."""
        v = self.values(label, metric)
        return float(v.std(ddof=1)) if len(v) > 1 else 0.0

    def summary(self, metric: str = "gap") -> list[dict[str, Any]]:
        """One row per label: ``label, mean, std, min, max, n, per_seed``."""
        rows = []
        for label in self.labels:
            v = self.values(label, metric)
            rows.append(dict(label=label, mean=float(v.mean()), std=self.std(label, metric), min=float(v.min()),
                             max=float(v.max()), n=len(v), per_seed=[float(x) for x in v]))
        return rows

    def ranking(self, metric: str = "gap", seed: int | None = None) -> list[str]:
        """Labels from best to worst, by the mean over seeds or by one ``seed``'s value."""
        key = (lambda l: self.value(l, seed, metric)) if seed is not None else (lambda l: self.mean(l, metric))
        return sorted(self.labels, key=key, reverse=metric in self.higher_is_better)

    def best(self, metric: str = "gap", seed: int | None = None) -> str:
        return self.ranking(metric, seed)[0]

    def spread(self, metric: str = "gap") -> float:
        """The largest standard deviation over seeds among the labels (the noise in one variant)."""
        return max(self.std(l, metric) for l in self.labels)

    def range_of_means(self, metric: str = "gap") -> float:
        """Best mean minus worst mean, as a positive number (the signal between variants)."""
        means = [self.mean(l, metric) for l in self.labels]
        return float(max(means) - min(means))

    def table(self, metrics: Sequence[str] | str | None = None, digits: int = 3) -> str:
        """A plain-text table: one row per label, ``mean ± std`` and the per-seed values of each metric."""
        metrics = [metrics] if isinstance(metrics, str) else list(metrics or self.metrics)
        head = ["variant"] + [f"{m} (mean ± sd)" for m in metrics] + [f"{m} per seed" for m in metrics]
        rows = [head]
        for label in self.labels:
            row = [label]
            row += [f"{self.mean(label, m):.{digits}f} ± {self.std(label, m):.{digits}f}" for m in metrics]
            row += [" ".join(f"{x:.{digits}f}" for x in self.values(label, m)) for m in metrics]
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)

    def __repr__(self) -> str:
        return f"Comparison({self.name!r}, {len(self.labels)} variants x {len(self.seeds)} seeds)\n" + self.table()

    def _repr_html_(self) -> str:
        metrics = self.metrics
        head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
        body = ""
        for label in self.labels:
            cells = "".join(
                f"<td>{self.mean(label, m):.3f} ± {self.std(label, m):.3f}"
                f"<br><small>{' '.join(f'{x:.3f}' for x in self.values(label, m))}</small></td>" for m in metrics)
            body += f"<tr><th>{html.escape(label)}</th>{cells}</tr>"
        return (f"<table><caption>{html.escape(self.name)}: mean ± standard deviation over seeds "
                f"{', '.join(map(str, self.seeds))} (per-seed values below)</caption>"
                f"<thead><tr><th>variant</th>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, metrics: Sequence[str] | str = "gap", **kwargs) -> go.Figure:
        """:func:`comparison_figure` of this comparison."""
        return comparison_figure(self, metrics, **kwargs)


Probe = Callable[[Any, Any], float]


def compare_configs(variants: Mapping[str, Mapping[str, Any]], seeds: Sequence[int] = SEEDS, *,
                    causal: bool = True, budget: Budget | None = None, base: Mapping[str, Any] | None = None,
                    probes: Mapping[str, Probe] | None = None, name: str = "variants",
                    higher_is_better: Sequence[str] = (), keep_models: bool = True,
                    desc: str | None = None) -> Comparison:
    """Train every ``{label: config changes}`` variant with every seed on one budget and measure it.

    Metrics of each run: ``gap`` (held-out loss minus the exact loss, nats per word), ``nll``,
    ``train_loss`` (the mean over the last logged steps) and one entry per probe, ``probe(model,
    tokenizer) -> float``. Shows one progress bar over all runs.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise TypeError(f"variants must be a non-empty dict {{label: {{field: value}}}}, got {variants!r}")
    seeds = checks.check_seeds(seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be different from each other, got {seeds!r}")
    budget = budget or Budget()
    probes = dict(probes or {})
    tok = _tokenizer("standard")
    runs: list[Run] = []
    jobs = [(label, changes, seed) for label, changes in variants.items() for seed in seeds]
    bar = env.progress(total=len(jobs), desc=desc or f"{name}: {len(variants)} variants x {len(seeds)} seeds")
    try:
        for label, changes, seed in jobs:
            model, history = train_variant(changes, seed, causal=causal, budget=budget, base=base)
            with _threads(budget.threads), torch.no_grad():
                metrics = held_out_gap(model, tok, n_sentences=budget.eval_sentences)
                metrics = {"gap": metrics["gap"], "nll": metrics["nll"], "train_loss": history.final_train_loss}
                for pname, probe in probes.items():
                    metrics[pname] = float(probe(model, tok))
            runs.append(Run(str(label), seed, metrics, model if keep_models else None, history))
            bar.update(1)
    finally:
        bar.close()
    return Comparison(name, runs, [str(l) for l in variants], tuple(higher_is_better))


def compare(field_name: str, values: Sequence[Any], seeds: Sequence[int] = SEEDS, **kwargs) -> Comparison:
    """Compare values of one :class:`~lmlab.models.TransformerConfig` field, e.g.
    ``compare("positions", ["none", "learned", "sinusoidal", "rotary"], causal=False)``.

    Everything else is :func:`compare_configs`'s (``causal``, ``budget``, ``base``, ``probes`` ...).
    """
    from .models import TransformerConfig

    names = {f.name for f in fields(TransformerConfig)} - {"vocab_size", "causal"}
    if field_name not in names:
        raise ValueError(f"unknown TransformerConfig field {field_name!r}; allowed: {sorted(names)}")
    values = list(values)
    if not values:
        raise ValueError("values is empty: give at least one value to compare")
    kwargs.setdefault("name", field_name)
    return compare_configs({str(v): {field_name: v} for v in values}, seeds, **kwargs)


# --- the comparison figure -------------------------------------------------------------------------

METRIC_TITLES = {
    "gap": "gap to the exact loss",
    "nll": "held-out loss",
    "train_loss": "training loss",
    "agreement": "agreement (minimal pairs)",
    "order": "prefers the real order",
    "gap_standard": "gap, standard language",
    "gap_shifted": "gap, shifted language",
}
METRIC_UNITS = {"gap": "nats per word", "nll": "nats per word", "train_loss": "nats per token",
                "gap_standard": "nats per word", "gap_shifted": "nats per word", "agreement": "share right",
                "order": "share of pairs"}


def comparison_figure(comparison: Comparison, metrics: Sequence[str] | str = "gap", *, title: str | None = None,
                      reference: Mapping[str, float] | None = None, metric_titles: Mapping[str, str] | None = None,
                      x_title: str = "") -> go.Figure:
    """Every seed of every variant as a dot, and the mean over seeds with its standard deviation.

    One panel per metric. ``reference`` draws a dashed line per metric (e.g. chance accuracy, 0.5).
    Losses and gaps are in nats per word; metrics in ``comparison.higher_is_better`` whose values lie in
    [0, 1] (accuracies) are drawn on a 0 to 1 axis.
    """
    from .viz import COLORWAY, SYMBOLS, TEMPLATE, TEXT, set_alt

    if not isinstance(comparison, Comparison):
        raise TypeError(f"comparison must be a Comparison (from lmlab.variants.compare), "
                        f"got {type(comparison).__name__}")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    for m in metrics:
        comparison._check(metric=m)
    titles = {**METRIC_TITLES, **(metric_titles or {})}
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[titles.get(m, m) for m in metrics],
                        horizontal_spacing=0.12)
    seeds = comparison.seeds
    n = len(comparison.labels)
    offsets = {s: (i - (len(seeds) - 1) / 2) * 0.12 for i, s in enumerate(seeds)}
    alt_parts = []
    crowded = sum(len(l) for l in comparison.labels) * len(metrics) > 40  # tick labels would collide
    for col, metric in enumerate(metrics, start=1):
        for i, seed in enumerate(seeds):
            xs, ys, names = [], [], []
            for j, label in enumerate(comparison.labels):
                try:
                    ys.append(comparison.value(label, seed, metric))
                except ValueError:
                    continue
                xs.append(j + offsets[seed])
                names.append(label)
            fig.add_trace(go.Scatter(
                x=xs, y=ys, mode="markers", name=f"seed {seed}", legendgroup=f"seed {seed}", showlegend=col == 1,
                marker=dict(color=COLORWAY[i % len(COLORWAY)], symbol=SYMBOLS[i % len(SYMBOLS)], size=9, opacity=0.85),
                customdata=names,
                hovertemplate=f"<b>%{{customdata}}</b>, seed {seed}<br>{metric} = %{{y:.4f}}<extra></extra>"),
                row=1, col=col)
        means = [comparison.mean(l, metric) for l in comparison.labels]
        stds = [comparison.std(l, metric) for l in comparison.labels]
        fig.add_trace(go.Scatter(
            x=list(range(n)), y=means, mode="markers", name="mean ± sd", legendgroup="mean", showlegend=col == 1,
            marker=dict(color=TEXT, symbol="line-ew-open", size=26, line=dict(width=3)),
            error_y=dict(type="data", array=stds, visible=True, color=TEXT, thickness=1.5, width=10),
            customdata=list(zip(comparison.labels, stds)),
            hovertemplate=f"<b>%{{customdata[0]}}</b><br>mean {metric} = %{{y:.4f}}"
                          f"<br>sd over seeds = %{{customdata[1]:.4f}}<extra></extra>"),
            row=1, col=col)
        if reference and metric in reference:
            fig.add_hline(y=float(reference[metric]), line=dict(color=TEXT, dash="dash", width=1), row=1, col=col)
        fig.update_xaxes(tickmode="array", tickvals=list(range(n)), ticktext=comparison.labels,
                         range=[-0.6, n - 0.4], showgrid=False, title=dict(text=x_title),
                         tickangle=-30 if crowded else 0, row=1, col=col)
        unit = METRIC_UNITS.get(metric, "")
        if unit:
            fig.update_yaxes(title=dict(text=unit, font=dict(size=12)), row=1, col=col)
        values = [r.metrics[metric] for r in comparison.runs if metric in r.metrics]
        if metric in comparison.higher_is_better and 0 <= min(values) and max(values) <= 1:
            fig.update_yaxes(range=[-0.04, 1.06], row=1, col=col)
        best = comparison.best(metric)
        alt_parts.append(f"{titles.get(m := metric, m)}: " + ", ".join(
            f"{l} {comparison.mean(l, metric):.3f} (sd {comparison.std(l, metric):.3f})" for l in comparison.labels)
            + f"; best mean: {best}")
    fig.update_layout(template=TEMPLATE, title=dict(text=title or f"{comparison.name}: every seed and the mean"),
                      legend=dict(orientation="h", yanchor="top", y=-0.3 if crowded else -0.12, x=0.0),
                      height=470, margin=dict(b=120, t=90))
    for ann in fig.layout.annotations:  # subplot titles a little smaller than the figure title
        ann.font = dict(size=13)
    alt = (f"Dot plot comparing {n} variants ({', '.join(comparison.labels)}) over {len(seeds)} seeds; each dot is "
           f"one seed, a bar marks the mean with one standard deviation. " + ". ".join(alt_parts) + ".")
    return set_alt(fig, alt)


def activation_figure(x_range: tuple[float, float] = (-4.0, 3.0)) -> go.Figure:
    """The activation functions of the feed-forward layer: ReLU, GELU (exact and tanh), and SiLU (Swish),
    the gate of SwiGLU. A GLU multiplies such a gate by a second, linear projection."""
    from .viz import COLORWAY, TEMPLATE, set_alt

    x = torch.linspace(float(x_range[0]), float(x_range[1]), 281)
    curves = {"ReLU": F.relu(x), "GELU": F.gelu(x), "GELU (tanh approximation)": F.gelu(x, approximate="tanh"),
              "SiLU = Swish (SwiGLU's gate)": F.silu(x), "sigmoid (the original GLU's gate)": torch.sigmoid(x)}
    fig = go.Figure()
    dashes = ["solid", "solid", "dot", "dash", "dashdot"]
    for i, (name, y) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=x.tolist(), y=y.tolist(), mode="lines", name=name,
                                 line=dict(color=COLORWAY[i], dash=dashes[i], width=2.5 if i != 2 else 2),
                                 hovertemplate=f"{name}<br>x = %{{x:.2f}}<br>f(x) = %{{y:.3f}}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=dict(text="Activation functions of the feed-forward layer"),
                      xaxis=dict(title=dict(text="input x"), zeroline=True),
                      yaxis=dict(title=dict(text="output f(x)"), zeroline=True),
                      legend=dict(x=0.02, xanchor="left", y=0.98, yanchor="top"))
    alt = ("Line chart of five functions of x from -4 to 3: ReLU is 0 for negative x and x after; GELU and its tanh "
           "approximation follow ReLU but bend smoothly near 0 and dip slightly below 0 for negative x; SiLU (Swish) "
           "is similar with a deeper dip; the sigmoid rises from 0 to 1.")
    return set_alt(fig, alt)


# --- probes: word order ----------------------------------------------------------------------------

def _verb_forms() -> tuple[set[str], set[str]]:
    from .corpus import VERBS

    sg = {v[0] for v in VERBS} | {"is"}
    pl = {v[1] for v in VERBS} | {"are"}
    return sg, pl


def agreement_pairs(n: int = 40, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """``n`` minimal pairs ``(a, b)`` of prefixes such as ``the dog near the dogs`` / ``the dogs near the dog``.

    Both prefixes hold the same words; only the order says which noun is the subject, and so whether the
    verb that comes next is singular (``a``: the first noun is singular) or plural (``b``).
    """
    from .corpus import ANIMATE, NOUNS

    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    candidates = []
    for cls in ANIMATE:
        nouns = NOUNS[cls]
        for s1, _ in nouns:
            for _, p2 in nouns:
                for prep in ("near", "behind", "with"):
                    candidates.append((s1, prep, p2))
    rng = random.Random(checks.seed_of(seed))
    picked = rng.sample(candidates, min(n, len(candidates)))
    return [(["the", s, prep, "the", p], ["the", p, prep, "the", s]) for s, prep, p in picked]


def verb_number_preference(model, tokenizer, prefix: Sequence[str]) -> tuple[float, float]:
    """``(p_singular, p_plural)``: the model's probability mass on singular and on plural verb forms in the
    slot after ``prefix`` (a list of words). Causal models predict the next word after ``". " + prefix``;
    masked models fill ``". " + prefix + " <mask> ."``.
    """
    sg, pl = _verb_forms()
    words = ["."] + list(prefix)
    causal = getattr(model, "causal", True)
    ids = tokenizer.encode_tokens(words) + ([] if causal else [tokenizer.mask_id, tokenizer.token_to_id(".")])
    x = env.to_model_device(model, torch.tensor([ids]))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(x)[0, len(words) - 1 if causal else len(words)].double(), dim=-1).cpu()
    model.train(was_training)
    vocab = tokenizer.vocab
    p_sg = float(sum(probs[i] for i, t in enumerate(vocab) if t in sg))
    p_pl = float(sum(probs[i] for i, t in enumerate(vocab) if t in pl))
    return p_sg, p_pl


def agreement_accuracy(model, tokenizer, pairs: Sequence[tuple[Sequence[str], Sequence[str]]] | None = None) -> float:
    """Share of the prefixes of :func:`agreement_pairs` after which the model puts more probability on
    verbs of the right number (singular after ``a``, plural after ``b``). A model blind to word order
    gives both prefixes of a pair the same prediction, so it scores exactly 0.5 (ties count as wrong)."""
    pairs = agreement_pairs() if pairs is None else pairs
    right = 0
    for a, b in pairs:
        sg_a, pl_a = verb_number_preference(model, tokenizer, a)
        sg_b, pl_b = verb_number_preference(model, tokenizer, b)
        right += int(sg_a > pl_a) + int(pl_b > sg_b)
    return right / (2 * len(pairs))


def shuffled_sentences(n: int = 100, seed: int = 0, variant: str = "standard") -> list[tuple[list[str], list[str]]]:
    """``n`` pairs ``(sentence, the same words in another order)`` from the held-out sentences.

    The final ``"."`` stays last; sentences whose words cannot be put in another order are skipped.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    rng = random.Random(checks.seed_of(seed))
    pairs = []
    for s in _held_out(variant, max(300, 2 * n)):
        words = list(s[:-1])
        if len(set(words)) < 2:
            continue
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        pairs.append((list(s), shuffled + [s[-1]]))
        if len(pairs) == n:
            break
    return pairs


def order_accuracy(model, tokenizer, pairs: Sequence[tuple[Sequence[str], Sequence[str]]] | None = None,
                   tol: float = 1e-4) -> float:
    """How often the model scores a sentence above the same words shuffled (:func:`shuffled_sentences`).

    Causal models compare log p(sentence); masked models the pseudo-log-likelihood (each word masked
    alone). A score within ``tol`` nats of the other counts as a tie, worth one half. A masked model
    without positions sees each word's context as a bag of words, the same bag in both orders, so it
    ties on every pair (up to rounding) and scores exactly 0.5.
    """
    from . import data

    pairs = shuffled_sentences() if pairs is None else pairs
    originals = data.evaluate_sentences(model, tokenizer, [list(a) for a, _ in pairs])
    shuffled = data.evaluate_sentences(model, tokenizer, [list(b) for _, b in pairs])
    score = 0.0
    for a, b in zip(originals, shuffled):
        diff = float(b.sum() - a.sum())  # NLL of the shuffled minus the original: > 0 means the original wins
        score += 0.5 if abs(diff) <= tol else float(diff > 0)
    return score / len(pairs)


def order_probe(n: int = 60, seed: int = 0) -> Probe:
    """A probe for :func:`compare`: ``order_probe(60)(model, tokenizer)`` is :func:`order_accuracy` on
    ``n`` fixed :func:`shuffled_sentences` pairs."""
    pairs = shuffled_sentences(n, seed)
    return functools.partial(_order_probe, pairs=pairs)


def _order_probe(model, tokenizer, pairs):
    return order_accuracy(model, tokenizer, pairs)


def agreement_probe(n: int = 40, seed: int = 0) -> Probe:
    """A probe for :func:`compare`: :func:`agreement_accuracy` on ``n`` fixed :func:`agreement_pairs`."""
    pairs = agreement_pairs(n, seed)
    return functools.partial(_agreement_probe, pairs=pairs)


def _agreement_probe(model, tokenizer, pairs):
    return agreement_accuracy(model, tokenizer, pairs)


# --- probes: copying from context ------------------------------------------------------------------

def random_codes(n: int, length: int = 3, seed: int = 0,
                 exclude: Sequence[Sequence[str]] = ()) -> list[tuple[str, ...]]:
    """``n`` different random codes of ``length`` syllables (the toy language's), none of them in ``exclude``."""
    from .corpus import SYLLABLES

    length = checks.check_int(length, "length", 1)
    excluded = {tuple(c) for c in exclude}
    total = len(SYLLABLES) ** length - sum(1 for c in excluded if len(c) == length)
    n = checks.check_int(n, "n", 1, total, hint="the codes available")
    rng = random.Random(checks.seed_of(seed))
    out: list[tuple[str, ...]] = []
    seen = set(excluded)
    while len(out) < n:
        code = tuple(rng.choice(SYLLABLES) for _ in range(length))
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


@functools.lru_cache(maxsize=4)
def training_codes(name: str = "toy-gpt") -> frozenset[tuple[str, ...]]:
    """Every code that occurs in the training sentences of the zoo model ``name`` (re-drawn from its spec)."""
    from .corpus import toy
    from .zoo import SPECS

    if name not in SPECS:
        raise ValueError(f"unknown zoo model {name!r}; available: {sorted(SPECS)}")
    spec = SPECS[name]
    codes = set()
    with env.fixed_seeds():  # the zoo model's own training sentences, as lmlab.zoo drew them
        sentences = toy(spec.variant).sentences(spec.train_sentences, seed=spec.data_seed)
    for s in sentences:
        if s[:3] == ["the", "code", "is"]:
            codes.add(tuple(s[3:s.index(",")]))
    return frozenset(codes)


@dataclass
class CopyResult:
    """How well a model continues ``the code is X Y Z , X Y Z .`` for codes it is shown.

    ``first_accuracy``: share of the first-half syllables predicted (greedy, given everything before):
    these are random, so the best possible is chance, 1/12. ``repeat_accuracy``: the same for the repeat,
    which copying from context predicts perfectly. ``per_position`` is the repeat accuracy of each
    position; ``first_prob``/``repeat_prob`` the mean probability given to the right syllable.
    """

    length: int
    n: int
    first_accuracy: float
    repeat_accuracy: float
    per_position: list[float]
    first_prob: float
    repeat_prob: float
    first_per_position: list[float] = field(default_factory=list)


def copy_prompt(code: Sequence[str]) -> list[str]:
    """The words of a copy sentence with the ``"."`` before it: ``. the code is X Y Z , X Y Z .``"""
    return [".", "the", "code", "is", *code, ",", *code, "."]


def copy_probe(model, tokenizer, codes: Sequence[Sequence[str]]) -> CopyResult:
    """Teacher-forced predictions of every syllable of :func:`copy_prompt` for each code (same length)."""
    codes = [tuple(c) for c in codes]
    if not codes:
        raise ValueError("codes is empty: pass e.g. lmlab.variants.random_codes(100)")
    lengths = {len(c) for c in codes}
    if len(lengths) != 1:
        raise ValueError(f"all codes must have the same length, got lengths {sorted(lengths)}")
    L = lengths.pop()
    ids = torch.tensor([tokenizer.encode_tokens(copy_prompt(c)) for c in codes])
    limit = model.config.context_length if hasattr(model, "config") else ids.size(1)
    if ids.size(1) > limit:
        raise ValueError(f"codes of length {L} make prompts of {ids.size(1)} tokens, more than the model's "
                         f"context of {limit}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(env.to_model_device(model, ids)).double(), dim=-1).cpu()
    model.train(was_training)
    first = list(range(4, 4 + L))                 # positions of X Y Z (first time)
    repeat = list(range(5 + L, 5 + 2 * L))        # positions of the repeat
    pred = probs.argmax(-1)

    def hits(positions):  # predicted at position t - 1
        return torch.stack([(pred[:, t - 1] == ids[:, t]).double() for t in positions], dim=1)

    def p_right(positions):
        return torch.stack([probs[torch.arange(len(codes)), t - 1, ids[:, t]] for t in positions], dim=1)

    first_hits, repeat_hits = hits(first), hits(repeat)
    return CopyResult(length=L, n=len(codes), first_accuracy=float(first_hits.mean()),
                      repeat_accuracy=float(repeat_hits.mean()), per_position=repeat_hits.mean(0).tolist(),
                      first_prob=float(p_right(first).mean()), repeat_prob=float(p_right(repeat).mean()),
                      first_per_position=first_hits.mean(0).tolist())


def copy_figure(results: Sequence[CopyResult], *, chance: float | None = None, title: str | None = None) -> go.Figure:
    """Accuracy at every syllable of the copy sentence: the mean over ``results`` (e.g. one per set of
    codes) as bars, each set as a dot; a dashed line at ``chance`` (default 1/12, one syllable in twelve)."""
    from .corpus import SYLLABLES
    from .viz import COLORWAY, OKABE_ITO, TEMPLATE, TEXT, set_alt

    results = list(results)
    if not results or not all(isinstance(r, CopyResult) for r in results):
        raise TypeError("results must be a non-empty list of CopyResult (from copy_probe)")
    L = results[0].length
    if any(r.length != L for r in results):
        raise ValueError("all results must be for codes of the same length")
    chance = 1 / len(SYLLABLES) if chance is None else chance
    labels = [f"X{i + 1}" for i in range(L)] + [f"X{i + 1} again" for i in range(L)]
    per = np.array([r.first_per_position + r.per_position for r in results])  # (sets, 2L)
    colours = [OKABE_ITO["sky_blue"]] * L + [OKABE_ITO["blue"]] * L
    fig = go.Figure(go.Bar(x=labels, y=per.mean(0), marker_color=colours, name="mean",
                           error_y=dict(type="data", array=per.std(0, ddof=1) if len(per) > 1 else None,
                                        visible=len(per) > 1, color=TEXT),
                           hovertemplate="%{x}<br>mean accuracy %{y:.3f}<extra></extra>"))
    for i, row in enumerate(per):
        fig.add_trace(go.Scatter(x=labels, y=row, mode="markers", name=f"codes set {i + 1}",
                                 marker=dict(color=COLORWAY[(i + 3) % len(COLORWAY)], size=7, symbol="diamond"),
                                 hovertemplate=f"set {i + 1}<br>%{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.add_hline(y=chance, line=dict(color=TEXT, dash="dash", width=1),
                  annotation=dict(text=f"chance {chance:.3f}"), annotation_position="top left")
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Copying from context: accuracy at each syllable"),
                      xaxis=dict(title=dict(text="the syllable being predicted"), type="category"),
                      yaxis=dict(title=dict(text="share predicted right (greedy)"), range=[0, 1.05]),
                      legend=dict(orientation="h", y=-0.25, x=0))
    m = per.mean(0)
    alt = (f"Bar chart of the accuracy at each syllable of 'the code is X1 ... , X1 ... .' over {len(results)} sets of "
           f"{results[0].n} codes: first time {', '.join(f'{v:.2f}' for v in m[:L])}; repeated "
           f"{', '.join(f'{v:.2f}' for v in m[L:])}; chance is {chance:.3f}.")
    return set_alt(fig, alt)


def induction_scores(model, tokenizer, codes: Sequence[Sequence[str]]) -> np.ndarray:
    """``(layers, heads)``: how much each head attends, while the repeat is predicted, to the syllable that
    comes next in the first copy (the key ``L`` places back): the attention of an "induction head"."""
    codes = [tuple(c) for c in codes]
    if not codes or len({len(c) for c in codes}) != 1:
        raise ValueError("codes must be a non-empty list of codes of one length")
    L = len(codes[0])
    ids = torch.tensor([tokenizer.encode_tokens(copy_prompt(c)) for c in codes])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(env.to_model_device(model, ids))
    model.train(was_training)
    queries = list(range(4 + L, 4 + 2 * L))  # the comma and the repeat, each predicting the next repeat syllable
    out = np.zeros((model.config.n_layer, model.config.n_head))
    for l in range(model.config.n_layer):
        pattern = cache[f"blocks.{l}.attn.pattern"].cpu()  # (batch, heads, seq, seq)
        out[l] = torch.stack([pattern[:, :, q, q - L] for q in queries], dim=-1).mean(dim=(0, 2)).cpu().numpy()
    return out


def attention_by_offset(model, tokenizer, codes: Sequence[Sequence[str]], layer: int, head: int,
                        max_offset: int = 6) -> np.ndarray:
    """``(max_offset,)``: the mean attention of one head, while the repeat of a copy sentence is predicted,
    on the word ``k = 1 .. max_offset`` places back. Copying a code of ``L`` syllables needs the word ``L``
    places back (the syllable that comes next in the first copy)."""
    codes = [tuple(c) for c in codes]
    if not codes or len({len(c) for c in codes}) != 1:
        raise ValueError("codes must be a non-empty list of codes of one length")
    c = model.config
    if not (0 <= layer < c.n_layer and 0 <= head < c.n_head):
        raise ValueError(f"layer must be in [0, {c.n_layer - 1}] and head in [0, {c.n_head - 1}], got {layer}, {head}")
    L = len(codes[0])
    ids = torch.tensor([tokenizer.encode_tokens(copy_prompt(x)) for x in codes])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        _, cache = model.run_with_cache(env.to_model_device(model, ids), names=[f"blocks.{layer}.attn.pattern"])
    model.train(was_training)
    pattern = cache[f"blocks.{layer}.attn.pattern"][:, head].cpu()  # (batch, seq, seq)
    queries = range(4 + L, 4 + 2 * L)
    return np.array([float(torch.stack([pattern[:, q, q - k] for q in queries]).mean()) if k <= 4 + L else 0.0
                     for k in range(1, max_offset + 1)])


def offset_figure(profiles: Mapping[int, Sequence[float]], *, layer: int | None = None, head: int | None = None,
                  title: str | None = None) -> go.Figure:
    """Lines of :func:`attention_by_offset` for codes of several lengths (``{length: profile}``); a marker
    shows, for each length, the offset that copying needs."""
    from .viz import COLORWAY, TEMPLATE, set_alt

    if not profiles:
        raise ValueError("profiles is empty: pass {code length: attention_by_offset(...)}")
    fig = go.Figure()
    for i, (L, prof) in enumerate(sorted(profiles.items())):
        prof = [float(v) for v in prof]
        ks = list(range(1, len(prof) + 1))
        colour = COLORWAY[i % len(COLORWAY)]
        fig.add_trace(go.Scatter(x=ks, y=prof, mode="lines+markers", name=f"codes of {L} syllables",
                                 line=dict(color=colour, width=2),
                                 hovertemplate=f"codes of {L}<br>%{{x}} words back: attention %{{y:.2f}}"
                                               "<extra></extra>"))
        if L <= len(prof):
            fig.add_trace(go.Scatter(x=[L], y=[prof[L - 1]], mode="markers", showlegend=False,
                                     marker=dict(color=colour, size=16, symbol="circle-open", line=dict(width=2)),
                                     hovertemplate=f"codes of {L}: copying needs {L} back<extra></extra>"))
    which = ", ".join(x for x in (f"layer {layer}" if layer is not None else "",
                                  f"head {head}" if head is not None else "") if x)
    default_title = "How far back the copying head looks" + (f" ({which})" if which else "")
    fig.update_layout(template=TEMPLATE, title=dict(text=title or default_title),
                      xaxis=dict(title=dict(text="words back from the word being read"), dtick=1),
                      yaxis=dict(title=dict(text="mean attention weight"), range=[0, 1.05]),
                      legend=dict(x=0.98, xanchor="right", y=0.98, yanchor="top"))
    peaks = ", ".join(f"codes of {L}: peak {int(np.argmax(p)) + 1} back (needed {L})"
                      for L, p in sorted(profiles.items()))
    return set_alt(fig, f"Line chart of attention weight against distance back, one line per code length; {peaks}. "
                        "Open circles mark the distance copying needs.")


# --- fine-tuning ------------------------------------------------------------------------------------

@dataclass
class FinetuneRun:
    """A model trained on the shifted language, and its gaps on both languages as training went on.

    ``steps[i]`` is the number of steps done when ``gap_standard[i]`` and ``gap_shifted[i]`` were measured
    (``steps[0] == 0``: the starting point).
    """

    label: str
    seed: int
    steps: list[int]
    gap_standard: list[float]
    gap_shifted: list[float]
    model: Any = field(default=None, repr=False)
    history: Any = field(default=None, repr=False)


def finetune(model, tokenizer=None, *, steps: int = 200, lr: float = 1e-3, seed: int = 0, batch_size: int = 32,
             warmup_steps: int = 0, variant: str = "shifted", train_sentences: int = 10_000, data_seed: int = 7000,
             eval_every: int = 50, eval_sentences: int = 300, label: str = "fine-tuned",
             threads: int | None = 1, copy_model: bool = True) -> FinetuneRun:
    """Train (a copy of) ``model`` on ``toy(variant)`` and measure its gap on both languages every ``eval_every`` steps.

    The model's own weights are left alone unless ``copy_model=False``. ``seed`` sets the batch order.
    """
    from .train import TrainConfig, train

    if variant != "shifted" and variant != "standard":
        raise ValueError(f"variant must be 'shifted' or 'standard', got {variant!r}")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be an int >= 1, got {eval_every!r}")
    tokenizer = tokenizer or _tokenizer(variant)
    target = copy.deepcopy(model) if copy_model else model
    ids = _train_stream(variant, train_sentences, data_seed)
    out = FinetuneRun(label, seed, [], [], [], target)

    def measure(done: int) -> None:
        with torch.no_grad():
            out.steps.append(done)
            out.gap_standard.append(held_out_gap(target, tokenizer, "standard", eval_sentences)["gap"])
            out.gap_shifted.append(held_out_gap(target, tokenizer, "shifted", eval_sentences)["gap"])

    def callback(done: int, info: dict) -> None:
        if done % eval_every == 0 or done == steps:
            measure(done)

    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=warmup_steps,
                         eval_batches=0, seed=seed, device="cpu")
    with _threads(threads):
        measure(0)
        out.history = train(target, ids, None, config, tokenizer=tokenizer, progress=False, callback=callback)
    target.eval()
    return out


def finetune_comparison(model, tokenizer=None, seeds: Sequence[int] = SEEDS, *, steps: int = 200, lr: float = 1e-3,
                        scratch_lr: float = 4e-3, scratch: bool = True,
                        **kwargs) -> tuple[Comparison, list[FinetuneRun]]:
    """Fine-tune ``model`` on the shifted language with each seed, and (``scratch=True``) train fresh models
    of the same architecture on the same budget (same steps, data and batches; ``scratch_lr``, with a
    short warmup, since a fresh model needs a larger learning rate).

    Returns a :class:`Comparison` with labels ``"before"`` (the model itself, one run), ``"fine-tuned"`` and
    ``"from scratch"``, metrics ``gap_standard`` and ``gap_shifted``, and the list of :class:`FinetuneRun`.
    """
    from .models import Transformer

    seeds = checks.check_seeds(seeds)
    runs: list[FinetuneRun] = []
    jobs = [("fine-tuned", s) for s in seeds] + ([("from scratch", s) for s in seeds] if scratch else [])
    bar = env.progress(total=len(jobs), desc=f"fine-tuning: {len(jobs)} runs")
    try:
        for label, seed in jobs:
            if label == "fine-tuned":
                run = finetune(model, tokenizer, steps=steps, lr=lr, seed=seed, label=label, **kwargs)
            else:
                env.seed_everything(seed)
                fresh = Transformer(replace(model.config))
                run = finetune(fresh, tokenizer, steps=steps, lr=scratch_lr, seed=seed, label=label,
                               copy_model=False, **{"warmup_steps": max(1, steps // 10), **kwargs})
            runs.append(run)
            bar.update(1)
    finally:
        bar.close()
    first = runs[0]
    table = [Run("before", 0, {"gap_standard": first.gap_standard[0], "gap_shifted": first.gap_shifted[0]})]
    table += [Run(r.label, r.seed, {"gap_standard": r.gap_standard[-1], "gap_shifted": r.gap_shifted[-1]}, r.model,
                  r.history) for r in runs]
    labels = ["before", "fine-tuned"] + (["from scratch"] if scratch else [])
    return Comparison("fine-tuning on the shifted language", table, labels), runs


def finetune_curves(runs: Sequence[FinetuneRun], *, title: str | None = None) -> go.Figure:
    """The gap on both languages against fine-tuning steps: one line per run, colour by language."""
    from .viz import OKABE_ITO, TEMPLATE, set_alt

    if not runs:
        raise ValueError("runs is empty: pass the FinetuneRun list from finetune_comparison")
    fig = go.Figure()
    colours = {"standard": OKABE_ITO["blue"], "shifted": OKABE_ITO["vermillion"]}
    dashes = {"fine-tuned": "solid", "from scratch": "dot"}
    shown = set()
    for r in runs:
        for lang, ys in (("standard", r.gap_standard), ("shifted", r.gap_shifted)):
            name = f"{r.label}, gap on {lang}"
            fig.add_trace(go.Scatter(
                x=r.steps, y=ys, mode="lines+markers", name=name, legendgroup=name, showlegend=name not in shown,
                line=dict(color=colours[lang], dash=dashes.get(r.label, "dash"), width=2), marker=dict(size=6),
                hovertemplate=f"{r.label} (seed {r.seed})<br>step %{{x}}<br>gap on {lang} %{{y:.3f}}<extra></extra>"))
            shown.add(name)
    ft = [r for r in runs if r.label == "fine-tuned"]
    alt = "Line chart of the gap to the exact loss on the standard and the shifted language against fine-tuning steps"
    if ft:
        alt += (f"; fine-tuned runs go from {ft[0].gap_shifted[0]:.2f} to about "
                f"{np.mean([r.gap_shifted[-1] for r in ft]):.2f} on the shifted language and from "
                f"{ft[0].gap_standard[0]:.2f} to about {np.mean([r.gap_standard[-1] for r in ft]):.2f} "
                "on the standard one")
    ticks = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]
    fig.update_layout(template=TEMPLATE, title=dict(text=title or "Fine-tuning: gap on both languages"),
                      xaxis=dict(title=dict(text="fine-tuning step")),
                      yaxis=dict(title=dict(text="gap (nats per word, log scale)"), type="log",
                                 tickmode="array", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks]),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, x=0.0), height=480, margin=dict(b=130))
    return set_alt(fig, alt + ".")


# --- the residual stream ------------------------------------------------------------------------------

def logit_attribution(model, idx: torch.Tensor, position: int = -1,
                      token: int | None = None) -> list[tuple[str, float]]:
    """Split the logit of ``token`` at ``position`` exactly into what each part of the residual stream wrote.

    The residual stream of a pre-norm model is a sum: token embedding + position embedding + every
    attention and feed-forward output. The final LayerNorm subtracts the mean (linear) and divides by one
    number for the whole vector, so the logit is a sum of one term per part, plus the LayerNorm's bias
    term. Returns ``[(part, contribution)]`` whose contributions add up to the logit; ``token`` defaults to
    the model's top prediction. ``idx``: ``(1, seq)`` or ``(seq,)``.
    """
    from .models import Transformer

    if not isinstance(model, Transformer):
        raise TypeError(f"model must be an lmlab Transformer, got {type(model).__name__}")
    if model.config.norm != "pre":
        raise ValueError("logit_attribution needs a pre-norm model (config.norm='pre'): in a post-norm model each "
                         "LayerNorm rescales the stream in between, so it is not a plain sum")
    idx = torch.as_tensor(idx, dtype=torch.long)
    idx = idx[None] if idx.dim() == 1 else idx
    if idx.size(0) != 1:
        raise ValueError(f"idx must hold one sequence, (1, seq) or (seq,), got shape {tuple(idx.shape)}")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits, cache = model.run_with_cache(env.to_model_device(model, idx))
    model.train(was_training)
    pos = position if position >= 0 else idx.size(1) + position
    if not 0 <= pos < idx.size(1):
        raise ValueError(f"position {position} is out of range for a sequence of {idx.size(1)} tokens")
    token = int(logits[0, pos].argmax()) if token is None else int(token)
    with torch.no_grad():
        return _attribute(model, cache, pos, token)


def _attribute(model, cache: dict, pos: int, token: int) -> list[tuple[str, float]]:
    c = model.config
    parts = [("token embedding", cache["embed"][0, pos])]
    if "pos_embed" in cache:
        parts.append(("position embedding", cache["pos_embed"][0, pos]))
    for l in range(c.n_layer):
        parts.append((f"attention {l}", cache[f"blocks.{l}.attn.out"][0, pos]))
        if not c.attention_only:
            parts.append((f"feed-forward {l}", cache[f"blocks.{l}.mlp.out"][0, pos]))
    total = cache[f"blocks.{c.n_layer - 1}.resid_post"][0, pos].double()
    ln = model.ln_f
    centred = total - total.mean()
    scale = torch.sqrt(centred.pow(2).mean() + ln.eps)
    w_u = model.lm_head.weight[token].double()
    gain = ln.weight.double() if ln.weight is not None else torch.ones_like(total)
    out = []
    for name, vec in parts:
        v = vec.double()
        out.append((name, float(((v - v.mean()) / scale * gain) @ w_u)))
    bias = float(ln.bias.double() @ w_u) if ln.bias is not None else 0.0
    out.append(("final LayerNorm bias", bias))
    if model.lm_head.bias is not None:
        out.append(("unembedding bias", float(model.lm_head.bias[token])))
    return out


def attribution_figure(parts: Sequence[tuple[str, float]], *, token: str = "the predicted word",
                       context: str | None = None, title: str | None = None) -> go.Figure:
    """Bars of :func:`logit_attribution`'s parts and a final bar for their sum (the logit)."""
    from .viz import OKABE_ITO, TEMPLATE, TEXT, set_alt

    parts = list(parts)
    if not parts:
        raise ValueError("parts is empty: pass the list from logit_attribution")
    names = [p[0] for p in parts] + ["logit (the sum)"]
    values = [float(p[1]) for p in parts]
    total = sum(values)
    colours = [OKABE_ITO["blue"] if v >= 0 else OKABE_ITO["vermillion"] for v in values] + [TEXT]
    fig = go.Figure(go.Bar(x=names, y=values + [total], marker_color=colours,
                           hovertemplate="%{x}<br>contribution %{y:+.3f}<extra></extra>"))
    after = f" after '{context}'" if context else ""
    fig.update_layout(template=TEMPLATE, title=dict(text=title or f"Who wrote the logit of '{token}'{after}"),
                      xaxis=dict(title=dict(text="part of the residual stream"), tickangle=-30),
                      yaxis=dict(title=dict(text="contribution to the logit")), showlegend=False)
    biggest = max(parts, key=lambda p: abs(p[1]))
    alt = (f"Bar chart splitting the logit of '{token}'{after} ({total:.2f}) into the contributions of "
           f"{len(parts)} parts: " + ", ".join(f"{n} {v:+.2f}" for n, v in parts)
           + f". The largest is {biggest[0]}.")
    return set_alt(fig, alt)


# --- transformers ------------------------------------------------------------------------------------

def hf_tokenizer(tokenizer):
    """A ``transformers.PreTrainedTokenizerFast`` with the same ids as a word-level lmlab tokenizer.

    It splits on whitespace and looks each word up (unknown words become ``<unk>``), so a model converted
    with :func:`lmlab.hub.to_gpt2` can be used through ``transformers`` alone: ``hf_tok("the dog barks",
    return_tensors="pt")``, ``model.generate(...)``, ``hf_tok.decode(ids)``.
    """
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .tokenizers import WordTokenizer

    if not isinstance(tokenizer, WordTokenizer):
        raise TypeError(f"hf_tokenizer converts an lmlab WordTokenizer, got {type(tokenizer).__name__}")
    vocab = {t: i for i, t in enumerate(tokenizer.vocab)}
    raw = RawTokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   bos_token="<bos>", eos_token=tokenizer.eos_token)


# --- exercises -----------------------------------------------------------------------------------------

def _sinusoidal_ref(n, d, swap=False, halves=False, exponent="2i", start=0):
    pos = torch.arange(start, start + n, dtype=torch.float64)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float64) if exponent == "2i" else torch.arange(d // 2, dtype=torch.float64)
    angle = pos * 10000.0 ** (-i / d)
    a, b = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
    if halves:
        return torch.cat([a, b], dim=1)
    out = torch.zeros(n, d, dtype=torch.float64)
    out[:, 0::2], out[:, 1::2] = a, b
    return out


from .exercises import check_sinusoidal_positions  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


def _rotary_ref(x, positions, base=10000.0, sign=1.0, halves=False, exponent="2i", ignore_positions=False):
    x = x.double()
    d = x.shape[-1]
    i = torch.arange(0, d, 2, dtype=torch.float64) if exponent == "2i" else torch.arange(d // 2, dtype=torch.float64)
    pos = torch.zeros_like(positions, dtype=torch.float64) if ignore_positions else positions.double()
    angle = sign * pos[:, None] * base ** (-i / d)
    cos, sin = angle.cos(), angle.sin()
    if halves:
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


from .exercises import check_rotary  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


def _swiglu_ref(x, w_gate, w_up, w_down, act=F.silu, swap=False, gated=True):
    x, w_gate, w_up, w_down = (t.double() for t in (x, w_gate, w_up, w_down))
    g, u = (x @ w_up, x @ w_gate) if swap else (x @ w_gate, x @ w_up)
    h = act(g) * u if gated else act(g)
    return h @ w_down


from .exercises import check_swiglu  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


class _Affine(torch.nn.Module):
    """A fixed random map standing in for attention / the feed-forward layer / a LayerNorm in the checker."""

    def __init__(self, d: int, seed: int, kind: str):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.kind = kind
        self.w = torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5
        self.b = torch.randn(d, generator=g, dtype=torch.float64) * 0.3

    def forward(self, x):
        x = x.double()
        if self.kind == "norm":
            return F.layer_norm(x, x.shape[-1:]) * (1 + self.b) + self.b
        return torch.tanh(x @ self.w) + self.b


def _block_ref(x, attn, mlp, ln1, ln2, kind="pre"):
    if kind == "pre":
        x = x + attn(ln1(x))
        return x + mlp(ln2(x))
    if kind == "post":
        x = ln1(x + attn(x))
        return ln2(x + mlp(x))
    if kind == "parallel":
        return x + attn(ln1(x)) + mlp(ln2(x))
    if kind == "no_residual":
        x = attn(ln1(x))
        return mlp(ln2(x))
    if kind == "normed_residual":
        x = ln1(x) + attn(ln1(x))
        return ln2(x) + mlp(ln2(x))
    if kind == "no_mlp":
        return x + attn(ln1(x))
    raise ValueError(kind)


from .exercises import check_prenorm_block  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

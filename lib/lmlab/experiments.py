"""Chapter 5's experiments on training, each a small readable function.

* Batches and the loss: :func:`training_rows` (sentence-aligned rows, so the loss can reach the
  language's entropy rate), :func:`batch_table` (inputs and targets side by side),
  :func:`loss_decomposition` (cross-entropy = entropy + KL divergence).
* Backpropagation by hand: :class:`TinyNet`, :func:`backprop_by_hand` (a two-layer tanh network, every
  gradient written out) and :func:`autograd_gradients` (the same from ``torch.autograd``).
* Not a blank slate: :func:`untrained_report` (how uniform an untrained transformer's attention and
  outputs are) and :func:`train_seeds` (one configuration, several seeds).
* Undertrained models: :func:`compute_sweep` trains models of several widths on a fixed compute
  budget (parameters x tokens) and :func:`sweep_figure` plots the result.
* The lottery ticket (Frankle & Carbin): :func:`magnitude_masks`, :func:`prune_and_rewind`,
  :func:`train_with_masks`, :func:`lottery_ticket` and :func:`lottery_figure`.
* Learning that is not gradual: :func:`copy_sentence` and :func:`copy_enriched_sentences` (the toy
  language's "the code is X Y Z , X Y Z ." sentences, only predictable by copying),
  :func:`copy_probe`, :func:`repeat_loss`, :func:`copy_scores` and :class:`CopyTracker` (the loss on
  the repeated tokens and each head's attention to the earlier copy, during training) and
  :func:`emergence_figure`.
* Exercise checkers: :func:`check_relu_backprop`, :func:`check_gradient_descent`,
  :func:`check_prune_and_rewind` (the pattern of :mod:`lmlab.exercises`).

Everything is sized for a CPU: models of a few thousand to about a hundred thousand parameters,
a few hundred steps.
"""
from __future__ import annotations

import contextlib
import io
import math
import random
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from plotly.subplots import make_subplots

from . import corpus as _corpus
from . import data as _data
from . import checks, env, viz
from .models import Transformer, TransformerConfig
from .train import History, TrainConfig, train

__all__ = [
    "training_rows", "batch_table", "loss_decomposition",
    "TinyNet", "backprop_by_hand", "autograd_gradients",
    "untrained_report", "tiny_transformer", "Run", "train_seeds", "rows_loss", "mean_curve", "mean_and_spread", "final_losses",
    "SweepPoint", "compute_sweep", "sweep_summary", "sweep_figure",
    "prunable_weights", "magnitude_masks", "prune_and_rewind", "apply_masks", "train_with_masks",
    "LotteryResult", "lottery_ticket", "lottery_figure",
    "copy_sentence", "copy_enriched_sentences", "CopyProbe", "copy_probe", "repeat_loss", "copy_scores",
    "CopyTracker", "emergence_figure", "head_scores_figure",
    "descend", "check_relu_backprop", "check_gradient_descent", "check_prune_and_rewind",
]


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    return checks.check_int(value, name, minimum)


def _check_fraction(name: str, value: Any, low: float = 0.0, high: float = 1.0) -> float:
    return checks.check_real(value, name, low, high, high_open=True)


def _train(model: torch.nn.Module, train_data: Any, val_data: Any, config: TrainConfig, progress: bool = False,
           **kwargs: Any) -> History:
    """:func:`lmlab.train.train` with its progress bar on or off.

    In book builds lmlab's plain-text progress bar cannot be switched off (``progress=False`` raises in
    ``PlainBar.close``), so there a silent run keeps the bar and drops the line it prints.
    """
    if progress or not env.in_book_build():
        return train(model, train_data, val_data, config, progress=progress, **kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        return train(model, train_data, val_data, config, progress=True, **kwargs)


# --- data --------------------------------------------------------------------------------------------

def training_rows(sentences: Sequence[Any], tokenizer: Any, context: int) -> torch.Tensor:
    """Sentence-aligned training rows: ``"."`` then whole sentences packed up to ``context`` tokens.

    Every predicted token sees its whole sentence (the toy language's sentences are independent), so
    a perfect model's mean loss on these rows is the language's entropy rate. Returns a LongTensor
    ``(rows, context + 1)`` padded with ``tokenizer.pad_id``: ``row[:-1]`` is the input and
    ``row[1:]`` the targets (:func:`lmlab.train.train` takes such rows directly).
    """
    _check_int("context", context)
    rows = _data.sentence_rows(sentences, tokenizer, max_len=context)
    if rows.size(1) < context:  # every row shorter than context: pad to the full width
        pad = torch.full((rows.size(0), context - rows.size(1)), tokenizer.pad_id, dtype=torch.long)
        rows = torch.cat([rows, pad], dim=1)
    start = torch.full((rows.size(0), 1), tokenizer.token_to_id(_corpus.EOS), dtype=torch.long)
    return torch.cat([start, rows], dim=1)


def batch_table(inputs: torch.Tensor, targets: torch.Tensor, tokenizer: Any, row: int = 0,
                width: int | None = None, original: torch.Tensor | None = None) -> str:
    """One row of a batch as a text table: position, input token, target token (``-`` = not scored).

    ``inputs``/``targets`` are ``(batch, seq)``; ``original`` (optional, same shape) adds the
    uncorrupted tokens (for a masked batch). ``width`` keeps only the first positions.
    """
    if inputs.shape != targets.shape or inputs.dim() != 2:
        raise ValueError(f"inputs and targets must both be (batch, seq), got {tuple(inputs.shape)} and "
                         f"{tuple(targets.shape)}")
    if not 0 <= row < inputs.size(0):
        raise ValueError(f"row must be in 0..{inputs.size(0) - 1}, got {row}")
    n = inputs.size(1) if width is None else min(_check_int("width", width), inputs.size(1))
    word = tokenizer.id_to_token
    cols = [("position", [str(t) for t in range(n)])]
    if original is not None:
        cols.append(("original", [word(int(i)) for i in original[row, :n]]))
    cols.append(("input", [word(int(i)) for i in inputs[row, :n]]))
    cols.append(("target", [word(int(i)) if int(i) != _data.IGNORE_INDEX else "-" for i in targets[row, :n]]))
    widths = [max(len(h), *(len(v) for v in vals)) for h, vals in cols]
    lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, widths)).rstrip()]
    for t in range(n):
        lines.append("  ".join(vals[t].ljust(w) for (_, vals), w in zip(cols, widths)).rstrip())
    return "\n".join(lines)


def loss_decomposition(true_probs: Mapping[str, float], model_probs: torch.Tensor | np.ndarray,
                       vocab: Sequence[str]) -> dict[str, float]:
    """Cross-entropy of the model against the true next-token distribution, split in two.

    ``H(p, q) = -sum_w p(w) log q(w) = H(p) + KL(p || q)``: the entropy of the truth (no model can go
    below it) plus the Kullback-Leibler divergence (what the model gets wrong). ``true_probs`` maps
    words to p(w) (e.g. ``lang.next_token_distribution(prefix)``); ``model_probs`` is ``(vocab,)``.
    Returns ``{"cross_entropy", "entropy", "kl"}`` in nats.
    """
    q = np.asarray(model_probs.detach().cpu() if isinstance(model_probs, torch.Tensor) else model_probs, dtype=float)
    if q.ndim != 1 or len(q) != len(vocab):
        raise ValueError(f"model_probs must be (vocab,) = ({len(vocab)},), got shape {q.shape}")
    index = {w: i for i, w in enumerate(vocab)}
    unknown = [w for w in true_probs if w not in index]
    if unknown:
        raise ValueError(f"true_probs has words outside the vocabulary: {unknown[:5]}")
    ce = entropy = 0.0
    for w, p in true_probs.items():
        if p > 0:
            ce -= p * math.log(max(q[index[w]], 1e-300))
            entropy -= p * math.log(p)
    return {"cross_entropy": ce, "entropy": entropy, "kl": ce - entropy}


# --- backpropagation by hand -------------------------------------------------------------------------

@dataclass
class TinyNet:
    """A two-layer network: ``logits = tanh(x @ W1 + b1) @ W2 + b2``.

    ``W1 (d_in, hidden)``, ``b1 (hidden,)``, ``W2 (hidden, classes)``, ``b2 (classes,)``, float64.
    """

    W1: torch.Tensor
    b1: torch.Tensor
    W2: torch.Tensor
    b2: torch.Tensor

    @classmethod
    def create(cls, d_in: int = 3, hidden: int = 4, classes: int = 3, seed: int = 0) -> "TinyNet":
        for name, value in (("d_in", d_in), ("hidden", hidden), ("classes", classes)):
            checks.check_int(value, name, 1)
        g = torch.Generator().manual_seed(checks.seed_of(seed))
        return cls(W1=torch.randn(d_in, hidden, generator=g, dtype=torch.float64) * 0.5,
                   b1=torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1,
                   W2=torch.randn(hidden, classes, generator=g, dtype=torch.float64) * 0.5,
                   b2=torch.randn(classes, generator=g, dtype=torch.float64) * 0.1)

    def parameters(self) -> dict[str, torch.Tensor]:
        return {"W1": self.W1, "b1": self.b1, "W2": self.W2, "b2": self.b2}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters().values())


def backprop_by_hand(net: TinyNet, x: torch.Tensor, y: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    """The mean cross-entropy of ``net`` on ``x (N, d_in)``, labels ``y (N,)``, and its gradients, by hand.

    Forward: ``a = x W1 + b1``, ``h = tanh(a)``, ``z = h W2 + b2``, ``p = softmax(z)``,
    ``loss = -mean log p[y]``. Backward, the chain rule one step at a time:
    ``dz = (p - onehot(y)) / N``; ``dW2 = h^T dz``; ``db2 = sum dz``; ``dh = dz W2^T``;
    ``da = dh * (1 - h^2)``; ``dW1 = x^T da``; ``db1 = sum da``.
    """
    N = x.shape[0]
    a = x @ net.W1 + net.b1                     # (N, hidden)
    h = torch.tanh(a)                           # (N, hidden)
    z = h @ net.W2 + net.b2                     # (N, classes)
    p = torch.softmax(z, dim=-1)                # (N, classes)
    loss = -torch.log(p[torch.arange(N), y]).mean()
    dz = (p - F.one_hot(y, p.shape[-1]).to(p.dtype)) / N   # d loss / d z
    grads = {"W2": h.T @ dz, "b2": dz.sum(0)}
    dh = dz @ net.W2.T                          # back through z = h W2 + b2
    da = dh * (1 - h ** 2)                      # back through tanh: tanh' = 1 - tanh^2
    grads.update({"W1": x.T @ da, "b1": da.sum(0)})
    return float(loss), {k: grads[k] for k in ("W1", "b1", "W2", "b2")}


def autograd_gradients(net: TinyNet, x: torch.Tensor, y: torch.Tensor,
                       activation: str = "tanh") -> tuple[float, dict[str, torch.Tensor]]:
    """The same loss and gradients as :func:`backprop_by_hand`, computed by ``torch.autograd``.

    ``activation`` is ``"tanh"`` or ``"relu"`` (the exercise's network).
    """
    act = {"tanh": torch.tanh, "relu": torch.relu}.get(activation)
    if act is None:
        raise ValueError(f"activation must be 'tanh' or 'relu', got {activation!r}")
    params = {k: v.detach().clone().requires_grad_(True) for k, v in net.parameters().items()}
    logits = act(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    loss = F.cross_entropy(logits, y)
    loss.backward()
    return float(loss.detach()), {k: p.grad for k, p in params.items()}


# --- not a blank slate: an untrained transformer -------------------------------------------------------

def tiny_transformer(vocab_size: int, d_model: int = 32, n_layer: int = 2, n_head: int = 4, context: int = 20,
                     seed: int = 0, **overrides: Any) -> Transformer:
    """A small GPT-style :class:`~lmlab.models.Transformer` with weights drawn from ``seed``.

    ``overrides`` are further :class:`~lmlab.models.TransformerConfig` fields (``init_std=0.2``, ...).
    """
    config = TransformerConfig(vocab_size=vocab_size, context_length=context, n_layer=n_layer, n_head=n_head,
                               d_model=d_model, **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(checks.seed_of(seed))
        model = Transformer(config)
    return model.eval()


@torch.no_grad()
def untrained_report(model: Transformer, idx: torch.Tensor) -> dict[str, float]:
    """How close a (typically untrained) causal model is to uniform, on ``idx (batch, seq)``.

    Returns, in nats: ``output_entropy`` (mean entropy of the next-token distributions) against
    ``uniform_output`` (log vocab_size); ``attention_entropy`` (mean entropy of the attention rows,
    over every layer, head and query) against ``uniform_attention`` (the same for attention spread
    evenly over the allowed keys: query ``t`` may see ``t + 1`` keys); ``attention_max`` (the mean
    largest weight in a row) against ``uniform_max`` (mean ``1 / (t + 1)``); ``future_weight``
    (total weight on later tokens, 0 by the causal mask).
    """
    was_training = model.training
    model.eval()
    logits, cache = model.run_with_cache(env.to_model_device(model, idx))
    model.train(was_training)
    logp = torch.log_softmax(logits.double(), -1)
    out_entropy = float(-(logp.exp() * logp).sum(-1).mean())
    T = idx.shape[1]
    allowed = torch.arange(1, T + 1, dtype=torch.float64)
    ent, mx, future = [], [], 0.0
    for l in range(model.config.n_layer):
        p = cache[f"blocks.{l}.attn.pattern"].double()          # (batch, heads, seq, seq)
        ent.append(float(-(p * torch.log(p.clamp_min(1e-300))).sum(-1).mean()))
        mx.append(float(p.max(-1).values.mean()))
        future += float(torch.triu(p, diagonal=1).sum())
    return {"output_entropy": out_entropy, "uniform_output": math.log(model.config.vocab_size),
            "attention_entropy": float(np.mean(ent)), "uniform_attention": float(torch.log(allowed).mean()),
            "attention_max": float(np.mean(mx)), "uniform_max": float((1 / allowed).mean()),
            "future_weight": future}


@dataclass
class Run:
    """One training run: the seed, the trained model, its weights before training, and its history."""

    seed: int
    model: torch.nn.Module
    initial: dict[str, torch.Tensor] = field(repr=False)
    history: History = field(repr=False)
    final_loss: float = float("nan")


def train_seeds(make_model: Callable[[int], torch.nn.Module], seeds: Sequence[int], train_data: Any, val_data: Any,
                config: TrainConfig, **train_kwargs: Any) -> list[Run]:
    """Train ``make_model(seed)`` once per seed (``config.seed`` set to the same seed).

    Returns one :class:`Run` per seed; ``final_loss`` is :func:`rows_loss` on ``val_data`` (padded rows,
    which needs ``tokenizer=`` in ``train_kwargs``) or the last validation loss of the history.
    ``train_kwargs`` go to :func:`lmlab.train.train` (e.g. ``tokenizer=tok, progress=False``).
    """
    seeds = checks.check_seeds(seeds)  # each seed is offset where it is used (make_model, train)
    if not callable(make_model):
        raise TypeError(f"make_model must be a function seed -> model, got {type(make_model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    runs = []
    for seed in seeds:
        model = make_model(int(seed))
        initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
        cfg = TrainConfig(**{**config.__dict__, "seed": int(seed)})
        history = _train(model, train_data, val_data, cfg, **train_kwargs)
        runs.append(Run(int(seed), model, initial, history, _final_loss(model, history, val_data,
                                                                         train_kwargs.get("tokenizer"))))
    return runs


@torch.no_grad()
def rows_loss(model: torch.nn.Module, rows: torch.Tensor, pad_id: int, batch_size: int = 256) -> float:
    """Mean next-token cross-entropy (nats) over every non-padding target of ``rows (n, seq)``
    (``row[:-1]`` predicts ``row[1:]``, as in :func:`training_rows`): deterministic, every row once."""
    if not isinstance(rows, torch.Tensor) or rows.dim() != 2:
        raise ValueError(f"rows must be a LongTensor (n, seq), got {getattr(rows, 'shape', type(rows).__name__)}")
    was_training = model.training
    model.eval()
    device = env.model_device(model)
    total, count = 0.0, 0
    for start in range(0, rows.size(0), batch_size):
        chunk = rows[start:start + batch_size].to(device)
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(x)
        keep = y != pad_id
        total += float(F.cross_entropy(logits[keep].double(), y[keep], reduction="sum"))
        count += int(keep.sum())
    model.train(was_training)
    return total / max(count, 1)


def _final_loss(model: torch.nn.Module, history: History, val_data: Any, tokenizer: Any) -> float:
    if isinstance(val_data, torch.Tensor) and val_data.dim() == 2 and tokenizer is not None:
        return rows_loss(model, val_data, tokenizer.pad_id)
    if history.final_val_loss is not None:
        return history.final_val_loss
    return history.final_train_loss if history.final_train_loss is not None else float("nan")


def mean_curve(runs: Sequence[Run], which: str = "train") -> tuple[list[int], list[float]]:
    """The mean loss curve of several runs (same config): ``(steps, mean losses)``.

    ``which`` is ``"train"`` (the logged training loss) or ``"validation"``.
    """
    if not runs:
        raise ValueError("runs is empty")
    if which not in ("train", "validation"):
        raise ValueError(f"which must be 'train' or 'validation', got {which!r}")
    curves = [r.history.as_curves().get(which) for r in runs]
    if any(c is None for c in curves):
        raise ValueError(f"some runs have no {which} curve (set eval_every in the TrainConfig)")
    steps = curves[0][0]
    if any(list(c[0]) != list(steps) for c in curves):
        raise ValueError("the runs were logged at different steps; average runs of one config")
    return list(steps), [float(v) for v in np.mean([c[1] for c in curves], axis=0)]


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("values is empty")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def final_losses(runs: Sequence[Run]) -> list[float]:
    """The final loss of each :class:`Run`."""
    return [r.final_loss for r in runs]


# --- undertrained models: a compute budget -------------------------------------------------------------

@dataclass
class SweepPoint:
    """One run of :func:`compute_sweep`: a model of ``n_params`` parameters trained on ``tokens`` tokens.

    ``curve`` is ``(tokens_seen, validation_loss)`` at each evaluation during the run.
    """

    d_model: int
    n_params: int
    steps: int
    tokens: int
    seed: int
    val_loss: float
    curve: tuple[list[int], list[float]] = field(default_factory=lambda: ([], []), repr=False)


def compute_sweep(train_rows: torch.Tensor, val_rows: torch.Tensor, tokenizer: Any, budget: float,
                  widths: Sequence[int], seeds: Sequence[int] = (0, 1, 2), n_layer: int = 2,
                  n_head: int | Mapping[int, int] = 2, batch_size: int = 32, lr: float = 1e-2,
                  evals: int = 8, progress: bool = False) -> list[SweepPoint]:
    """Spend one compute budget on models of different widths (``d_model``).

    The budget is parameters x training tokens (training compute is about 6 floating-point operations
    per parameter per token, Kaplan et al. 2020), so a model with ``N`` parameters gets ``budget / N``
    tokens: ``steps = round(budget / (N * batch_size * context))`` (at least 1), with ``context`` set by
    the rows (``seq - 1``, see :func:`training_rows`). Every run uses the same constant learning rate
    after a short warmup, so a run cut short is not penalised by an unfinished schedule.
    ``n_head`` is one number or ``{d_model: heads}``. Returns one :class:`SweepPoint` per width and
    seed; ``val_loss`` is :func:`rows_loss` on ``val_rows``.
    """
    if not (isinstance(budget, (int, float)) and budget > 0):
        raise ValueError(f"budget must be a positive number (parameters x tokens), got {budget!r}")
    if not widths:
        raise ValueError("widths must list at least one d_model, e.g. [4, 8, 16, 32]")
    if not isinstance(train_rows, torch.Tensor) or train_rows.dim() != 2:
        raise ValueError("train_rows must be padded rows (rows, context + 1) from training_rows")
    context = train_rows.size(1) - 1
    points = []
    for d in widths:
        heads = n_head.get(d, 1) if isinstance(n_head, Mapping) else n_head
        for seed in seeds:
            model = tiny_transformer(tokenizer.vocab_size, d_model=d, n_layer=n_layer, n_head=heads,
                                     context=context, seed=seed)
            n = model.num_parameters()
            steps = max(1, round(budget / (n * batch_size * context)))
            config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr,
                                 warmup_steps=min(10, steps // 4), eval_every=max(1, steps // evals),
                                 eval_batches=2, seed=seed)
            history = _train(model, train_rows, val_rows, config, tokenizer=tokenizer, progress=progress)
            tokens = [s * batch_size * context for s in history.val_step]
            points.append(SweepPoint(d, n, steps, history.tokens_seen, seed,
                                     rows_loss(model, val_rows, tokenizer.pad_id), (tokens, list(history.val_loss))))
    return points


def _by_size(points: Sequence[SweepPoint]) -> dict[int, list[SweepPoint]]:
    by_n: dict[int, list[SweepPoint]] = {}
    for p in points:
        by_n.setdefault(p.n_params, []).append(p)
    return dict(sorted(by_n.items()))


def sweep_summary(points: Sequence[SweepPoint]) -> list[dict[str, float]]:
    """One row per model size, smallest first: ``d_model``, ``n_params``, ``tokens``, ``steps``,
    ``tokens_per_param`` and the ``mean`` and ``sd`` of the final loss over seeds."""
    rows = []
    for n, pts in _by_size(points).items():
        mean, sd = mean_and_spread([p.val_loss for p in pts])
        rows.append({"d_model": pts[0].d_model, "n_params": n, "tokens": pts[0].tokens, "steps": pts[0].steps,
                     "tokens_per_param": pts[0].tokens / n, "mean": mean, "sd": sd, "seeds": len(pts)})
    return rows


def sweep_figure(points: Sequence[SweepPoint], entropy_floor: float | None = None,
                 title: str = "One compute budget, spent on different model sizes") -> go.Figure:
    """Two panels. Left: validation loss during training against compute spent so far (parameters x
    tokens, log scale), one line per model size (mean over seeds); every run ends at the budget.
    Right: the final loss against model size (log scale), one dot per seed and the mean."""
    if not points:
        raise ValueError("points is empty: pass the list compute_sweep returned")
    by_n = _by_size(points)
    summary = sweep_summary(points)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=["loss as the budget is spent", "loss at the end of the budget"])
    for i, (n, pts) in enumerate(by_n.items()):
        color = viz.COLORWAY[i % len(viz.COLORWAY)]
        tokens = pts[0].curve[0]
        losses = np.mean([p.curve[1] for p in pts], axis=0) if all(len(p.curve[1]) == len(tokens) for p in pts) \
            else pts[0].curve[1]
        name = f"{n:,} params"
        fig.add_trace(go.Scatter(
            x=[n * t for t in tokens], y=list(losses), mode="lines+markers", name=name, line=dict(color=color),
            marker=dict(size=5), legendgroup=name, customdata=tokens,
            hovertemplate=f"{name}<br>%{{customdata:,}} tokens<br>compute %{{x:.2e}}<br>loss %{{y:.3f}}"
                          "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=[n] * len(pts), y=[p.val_loss for p in pts], mode="markers", name=name, legendgroup=name,
            showlegend=False, marker=dict(color=color, size=7, opacity=0.6),
            customdata=[[p.d_model, p.tokens, p.steps, p.seed] for p in pts],
            hovertemplate="%{x:,} parameters (d_model %{customdata[0]})<br>%{customdata[1]:,} tokens, "
                          "%{customdata[2]} steps, seed %{customdata[3]}<br>loss %{y:.3f}<extra></extra>"),
            row=1, col=2)
    fig.add_trace(go.Scatter(
        x=[r["n_params"] for r in summary], y=[r["mean"] for r in summary], mode="lines", name="mean over seeds",
        line=dict(color=viz.TEXT, width=1.5, dash="dot"), hoverinfo="skip"), row=1, col=2)
    if entropy_floor is not None:
        for col in (1, 2):
            fig.add_hline(y=entropy_floor, line=dict(color=viz.TEXT, dash="dash", width=1), row=1, col=col)
    best = min(summary, key=lambda r: r["mean"])
    alt = ("Two charts of validation loss for models of " + ", ".join(f"{r['n_params']:,}" for r in summary)
           + " parameters trained on the same compute budget. Final mean losses: "
           + ", ".join(f"{r['n_params']:,} parameters with {r['tokens']:,} tokens: {r['mean']:.3f}" for r in summary)
           + f". The lowest is at {best['n_params']:,} parameters.")
    fig.update_xaxes(type="log", title_text="compute (parameters x tokens)", row=1, col=1)
    fig.update_xaxes(type="log", title_text="parameters", row=1, col=2)
    fig.update_yaxes(title_text="validation loss (nats per token)", row=1, col=1)
    fig.update_layout(title=dict(text=title), template=viz.TEMPLATE, height=460,
                      legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))
    return viz.set_alt(fig, alt)


# --- the lottery ticket --------------------------------------------------------------------------------

_PRUNABLE = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.gate.weight", "mlp.proj.weight")


def prunable_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The weight matrices inside the transformer blocks (attention and feed-forward), by name.

    Embeddings, biases and LayerNorm gains are left dense, as Frankle & Carbin leave some layers less
    pruned; the blocks hold most of the weights that pruning is about.
    """
    found = {name: p for name, p in model.named_parameters() if name.startswith("blocks.")
             and name.endswith(_PRUNABLE)}
    if not found:
        raise ValueError(f"{type(model).__name__} has no block weight matrices to prune "
                         "(expected names like 'blocks.0.attn.qkv.weight')")
    return found


def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """For each tensor, a bool mask keeping its ``1 - sparsity`` largest-magnitude entries.

    Exactly ``round(sparsity * numel)`` entries of each tensor are pruned (False); among equal
    magnitudes the earlier position is pruned first. ``sparsity`` is the fraction removed, in ``[0, 1)``.
    """
    _check_fraction("sparsity", sparsity)
    masks = {}
    for name, w in weights.items():
        flat = w.detach().abs().flatten()
        n_prune = round(sparsity * flat.numel())
        keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        if n_prune:
            order = torch.sort(flat, stable=True).indices   # smallest magnitude first
            keep[order[:n_prune]] = False
        masks[name] = keep.view_as(w)
    return masks


def prune_and_rewind(trained: Mapping[str, torch.Tensor], initial: Mapping[str, torch.Tensor],
                     sparsity: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Frankle & Carbin's step: prune the trained weights by magnitude, rewind the survivors.

    Returns ``(weights, masks)``: for each name, the *initial* tensor with the entries whose *trained*
    magnitude is among the smallest ``sparsity`` fraction set to 0, and the bool mask (True = kept).
    """
    if set(trained) != set(initial):
        raise ValueError(f"trained and initial must name the same tensors, got {sorted(trained)} and {sorted(initial)}")
    masks = magnitude_masks(trained, sparsity)
    weights = {name: initial[name].detach().clone() * masks[name] for name in trained}
    return weights, masks


@torch.no_grad()
def apply_masks(model: torch.nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the pruned entries of ``model``'s parameters in place (``masks``: name -> bool, True = kept)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        if name not in params:
            raise ValueError(f"the model has no parameter {name!r}")
        params[name].mul_(mask.to(params[name].device, params[name].dtype))


def train_with_masks(model: torch.nn.Module, masks: Mapping[str, torch.Tensor], train_data: Any, val_data: Any,
                     config: TrainConfig, **train_kwargs: Any) -> History:
    """Train a pruned network: pruned weights start at 0 and are reset to 0 after every step.

    (AdamW's update would otherwise revive them; resetting after each step keeps the network sparse.)
    """
    apply_masks(model, masks)
    user_callback = train_kwargs.pop("callback", None)

    def keep_pruned(step: int, info: dict) -> None:
        apply_masks(model, masks)
        if user_callback is not None:
            user_callback(step, info)

    return _train(model, train_data, val_data, config, callback=keep_pruned, **train_kwargs)


@dataclass
class LotteryResult:
    """One seed of :func:`lottery_ticket`: final validation losses of the three networks."""

    seed: int
    sparsity: float
    dense: float          # the full network, trained
    ticket: float         # pruned, survivors rewound to their initial values, retrained
    random_init: float    # the same mask on fresh random weights, trained
    kept: int             # prunable weights kept
    prunable: int         # prunable weights in all
    histories: dict[str, History] = field(default_factory=dict, repr=False)


def lottery_ticket(make_model: Callable[[int], torch.nn.Module], seed: int, sparsity: float, train_data: Any,
                   val_data: Any, config: TrainConfig, dense: Run | None = None, tokenizer: Any = None,
                   progress: bool = False) -> LotteryResult:
    """Frankle & Carbin's experiment, one seed.

    1. The dense network: ``make_model(seed)`` trained with ``config`` (or ``dense``, a :class:`Run`
       of that already done, e.g. from :func:`train_seeds`).
    2. Prune the block weight matrices (:func:`prunable_weights`) by trained magnitude at ``sparsity``.
    3. The ticket: every weight rewound to its initial value, the pruned ones held at 0, trained again.
    4. The control: ``make_model(seed + 1000)`` (new random weights) with the same mask, trained the same.

    Losses are :func:`rows_loss` on ``val_data`` (padded rows; pass ``tokenizer``).
    """
    _check_fraction("sparsity", sparsity)
    kwargs = dict(tokenizer=tokenizer, progress=progress)
    cfg = TrainConfig(**{**config.__dict__, "seed": int(seed)})
    if dense is None:
        dense = train_seeds(make_model, [seed], train_data, val_data, config, **kwargs)[0]
    elif dense.seed != seed:
        raise ValueError(f"dense is the run of seed {dense.seed}, not of seed {seed}")
    trained = prunable_weights(dense.model)
    _, masks = prune_and_rewind(trained, {k: dense.initial[k] for k in trained}, sparsity)

    ticket = make_model(seed)
    ticket.load_state_dict(dense.initial)
    h_ticket = train_with_masks(ticket, masks, train_data, val_data, cfg, **kwargs)
    control = make_model(seed + 1000)
    h_random = train_with_masks(control, masks, train_data, val_data, cfg, **kwargs)
    kept = int(sum(int(m.sum()) for m in masks.values()))
    total = int(sum(m.numel() for m in masks.values()))
    return LotteryResult(seed, float(sparsity), dense.final_loss,
                         _final_loss(ticket, h_ticket, val_data, tokenizer),
                         _final_loss(control, h_random, val_data, tokenizer), kept, total,
                         {"dense": dense.history, "ticket": h_ticket, "random_init": h_random})


def lottery_figure(results: Sequence[LotteryResult], entropy_floor: float | None = None,
                   title: str = "Winning ticket or not? Pruned networks retrained") -> go.Figure:
    """Final validation loss of the dense network, the rewound ticket and the random re-initialisation:
    one open circle per seed, a diamond for the mean with error bars of one standard deviation."""
    if not results:
        raise ValueError("results is empty: pass the LotteryResults of several seeds")
    names = [("dense", "dense network"), ("ticket", "ticket (rewound)"), ("random_init", "random re-init")]
    sparsity = results[0].sparsity
    fig = go.Figure()
    alt_parts = []
    for i, (key, label) in enumerate(names):
        vals = [getattr(r, key) for r in results]
        mean, sd = mean_and_spread(vals)
        alt_parts.append(f"{label} {mean:.3f} ± {sd:.3f}")
        color = viz.COLORWAY[i]
        fig.add_trace(go.Scatter(x=[label] * len(vals), y=vals, mode="markers", showlegend=False,
                                 marker=dict(color=color, size=9, symbol="circle-open", line=dict(width=2)),
                                 customdata=[r.seed for r in results],
                                 hovertemplate=f"{label}<br>seed %{{customdata}}: loss %{{y:.3f}}<extra></extra>"))
        fig.add_trace(go.Scatter(x=[label], y=[mean], mode="markers", showlegend=False,
                                 marker=dict(color=color, size=14, symbol="diamond"),
                                 error_y=dict(type="data", array=[sd], visible=True, color=color, thickness=2,
                                              width=10),
                                 hovertemplate=f"{label}<br>mean %{{y:.3f}} ± {sd:.3f} over {len(vals)} seeds"
                                               "<extra></extra>"))
    if entropy_floor is not None:
        fig.add_hline(y=entropy_floor, line=dict(color=viz.TEXT, dash="dash", width=1.5),
                      annotation=dict(text=f"entropy floor {entropy_floor:.3f}"), annotation_position="bottom left")
    alt = (f"Dot plot of final validation loss (mean ± standard deviation over {len(results)} seeds, and each "
           f"seed) at {sparsity:.0%} sparsity of the block weights: " + "; ".join(alt_parts) + ".")
    fig.update_layout(title=dict(text=title), template=viz.TEMPLATE,
                      xaxis=dict(title=dict(text=f"{sparsity:.0%} of the block weights pruned (except dense)")),
                      yaxis=dict(title=dict(text="validation loss (nats per token)")))
    return viz.set_alt(fig, alt)


# --- learning that is not gradual: copying -------------------------------------------------------------

def copy_sentence(rng: random.Random, length: int = _corpus.CODE_LENGTH) -> list[str]:
    """One of the toy language's copy sentences, ``the code is X Y Z , X Y Z .``, syllables uniform.

    With the default ``length`` (3) this is exactly the grammar's distribution of these sentences
    (``lmlab.corpus.SYLLABLES``, drawn with ``rng``); other lengths make codes the language never has
    (a test of what a model learned).
    """
    xs = [rng.choice(_corpus.SYLLABLES) for _ in range(_check_int("length", length))]
    return ["the", "code", "is", *xs, ",", *xs, _corpus.EOS]


def copy_enriched_sentences(lang: Any, n_sentences: int, share: float, seed: int = 0) -> list[list[str]]:
    """``n_sentences`` sentences of ``lang`` in which a fraction ``share`` are copy sentences.

    The language itself has 2% of them; raising the share gives the copying skill more training signal.
    Ordinary sentences are ``lang.sentences(..., seed)``; the copy sentences are placed at random.
    """
    _check_int("n_sentences", n_sentences)
    _check_fraction("share", share)
    rng = random.Random(checks.seed_of(seed))
    n_copy = round(share * n_sentences)
    ordinary = lang.sentences(n_sentences - n_copy, seed=seed) if n_sentences > n_copy else []
    out = [list(s) for s in ordinary]
    for _ in range(n_copy):
        out.insert(rng.randrange(len(out) + 1), copy_sentence(rng))
    return out


@dataclass
class CopyProbe:
    """Held-out rows to watch copying: ``idx (n, seq)`` (right-padded), and for each row ``k`` query
    positions ``queries (n, k)`` whose next token is a repeated syllable, the position of that
    syllable's first copy ``sources (n, k)`` and the syllable's id ``targets (n, k)``."""

    idx: torch.Tensor
    queries: torch.Tensor
    sources: torch.Tensor
    targets: torch.Tensor
    tokens: list[list[str]]


def copy_probe(lang: Any, tokenizer: Any, n: int = 64, context: int = 24, seed: int = 99,
               code_length: int = _corpus.CODE_LENGTH) -> CopyProbe:
    """``n`` rows ``". <ordinary sentence> the code is X Y Z , X Y Z ."`` that fit in ``context`` tokens.

    The ordinary sentence in front puts the copy sentence at varying positions. ``code_length`` other
    than 3 gives codes the language never has.
    """
    _check_int("n", n)
    k = _check_int("code_length", code_length)
    if context < 2 * k + 6:
        raise ValueError(f"context must be at least {2 * k + 6} to hold a copy sentence after '.', got {context}")
    rng = random.Random(checks.seed_of(seed))
    rows: list[list[str]] = []
    candidates = lang.sentences(4 * n, seed=seed)
    for s in candidates:
        row = [_corpus.EOS, *s, *copy_sentence(rng, k)]
        if len(row) <= context:
            rows.append(row)
        if len(rows) == n:
            break
    while len(rows) < n:  # very short contexts: the copy sentence alone
        rows.append([_corpus.EOS, *copy_sentence(rng, k)])
    idx = torch.full((n, context), tokenizer.pad_id, dtype=torch.long)
    queries, sources, targets = [], [], []
    for i, row in enumerate(rows):
        idx[i, :len(row)] = torch.tensor(tokenizer.encode_tokens(row))
        comma = len(row) - k - 2                      # the "," between the two halves
        reps = list(range(comma + 1, comma + 1 + k))  # positions of the repeated syllables
        queries.append([r - 1 for r in reps])         # a causal model predicts token r at position r - 1
        sources.append([r - k - 1 for r in reps])     # the first copy of the same syllable
        targets.append([int(idx[i, r]) for r in reps])
    return CopyProbe(idx, torch.tensor(queries), torch.tensor(sources), torch.tensor(targets), rows)


@torch.no_grad()
def repeat_loss(model: torch.nn.Module, probe: CopyProbe) -> float:
    """Mean cross-entropy (nats) on the repeated syllables of ``probe``: about log 12 = 2.48 for a model
    that does not copy (12 equally likely syllables), near 0 for one that does."""
    was_training = model.training
    model.eval()
    logp = torch.log_softmax(model(env.to_model_device(model, probe.idx)).double(), -1)
    model.train(was_training)
    rows = torch.arange(probe.idx.size(0))[:, None]
    return float(-logp[rows, probe.queries, probe.targets].mean())


@torch.no_grad()
def copy_scores(model: torch.nn.Module, probe: CopyProbe) -> np.ndarray:
    """Each head's copy score ``(layers, heads)``: its mean attention weight from the position before a
    repeated syllable to that syllable's first copy (1 = all attention on the earlier copy)."""
    was_training = model.training
    model.eval()
    _, cache = model.run_with_cache(env.to_model_device(model, probe.idx))
    model.train(was_training)
    rows = torch.arange(probe.idx.size(0))[:, None]
    out = []
    for l in range(model.config.n_layer):
        p = cache[f"blocks.{l}.attn.pattern"]     # (batch, heads, seq, seq)
        out.append([float(p[rows, h, probe.queries, probe.sources].mean()) for h in range(p.size(1))])
    return np.array(out)


class CopyTracker:
    """A ``callback`` for :func:`lmlab.train.train` that records, every ``every`` steps, the repeat loss
    and the copy score of every head on ``probe``; ``steps``, ``losses`` and ``scores`` (a list of
    ``(layers, heads)`` arrays) grow as training runs. Step 0 is recorded when it is created."""

    def __init__(self, model: torch.nn.Module, probe: CopyProbe, every: int = 10):
        self.model, self.probe, self.every = model, probe, _check_int("every", every)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.scores: list[np.ndarray] = []
        self.record(0)

    def record(self, step: int) -> None:
        self.steps.append(step)
        self.losses.append(repeat_loss(self.model, self.probe))
        self.scores.append(copy_scores(self.model, self.probe))

    def __call__(self, step: int, info: dict) -> None:
        if step % self.every == 0:
            self.record(step)

    @property
    def best_head(self) -> tuple[int, int]:
        """(layer, head) with the highest final copy score."""
        final = self.scores[-1]
        l, h = np.unravel_index(int(np.argmax(final)), final.shape)
        return int(l), int(h)

    def jump(self, threshold: float = 0.5) -> tuple[int, int]:
        """The steps where the repeat loss first falls below ``(1 - threshold)`` and ``threshold`` of
        its plateau value ``log 12``: when the drop starts and when it is mostly done."""
        plateau = math.log(len(_corpus.SYLLABLES))
        start = next((s for s, v in zip(self.steps, self.losses) if s > 0 and v < (1 - 0.1) * plateau), -1)
        done = next((s for s, v in zip(self.steps, self.losses) if s > 0 and v < threshold * plateau), -1)
        return start, done


def emergence_figure(trackers: Mapping[str, CopyTracker] | CopyTracker,
                     title: str = "Copying appears suddenly") -> go.Figure:
    """Two panels over training steps: the loss on repeated syllables (top) and the largest copy score
    of any head (bottom), one line per run."""
    if isinstance(trackers, CopyTracker):
        trackers = {"run": trackers}
    if not trackers:
        raise ValueError("trackers is empty")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=["loss on the repeated syllables", "best head's attention to the earlier copy"])
    parts = []
    for i, (name, t) in enumerate(trackers.items()):
        color = viz.COLORWAY[i % len(viz.COLORWAY)]
        best = [float(s.max()) for s in t.scores]
        fig.add_trace(go.Scatter(x=t.steps, y=t.losses, name=name, mode="lines", line=dict(color=color, width=2),
                                 legendgroup=name,
                                 hovertemplate=f"{name}<br>step %{{x}}<br>repeat loss %{{y:.3f}}<extra></extra>"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=t.steps, y=best, name=name, mode="lines", line=dict(color=color, width=2),
                                 legendgroup=name, showlegend=False,
                                 hovertemplate=f"{name}<br>step %{{x}}<br>best copy score %{{y:.2f}}<extra></extra>"),
                      row=2, col=1)
        start, done = t.jump()
        parts.append(f"{name}: repeat loss from {t.losses[0]:.2f} to {t.losses[-1]:.2f}"
                     + (f", falling between steps {start} and {done}" if start >= 0 and done >= 0 else "")
                     + f"; best copy score {best[-1]:.2f}")
    fig.add_hline(y=math.log(len(_corpus.SYLLABLES)), row=1, col=1, line=dict(color=viz.TEXT, dash="dot", width=1),
                  annotation=dict(text="log 12: guessing among 12 syllables"), annotation_position="top right")
    fig.update_yaxes(title_text="nats", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="attention", range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(title=dict(text=title), template=viz.TEMPLATE, height=520, showlegend=len(trackers) > 1,
                      legend=dict(x=0.98, xanchor="right", y=0.62, yanchor="top"))
    return viz.set_alt(fig, "Two line charts over training steps. " + "; ".join(parts) + ".")


def head_scores_figure(scores: np.ndarray, title: str = "Copy score of every head") -> go.Figure:
    """Heatmap of copy scores ``(layers, heads)``."""
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2:
        raise ValueError(f"scores must be (layers, heads), got shape {s.shape}")
    xs, ys = [f"H{h}" for h in range(s.shape[1])], [f"L{l}" for l in range(s.shape[0])]
    fig = go.Figure(go.Heatmap(
        z=s, x=xs, y=ys, zmin=0, zmax=1, colorscale=viz.SEQUENTIAL, colorbar=dict(title=dict(text="score")),
        hovertemplate="layer %{y}, head %{x}<br>copy score %{z:.3f}<extra></extra>"))
    fig.add_trace(viz.cell_text(s, [[f"{v:.2f}" for v in row] for row in s], viz.SEQUENTIAL, x=xs, y=ys))
    l, h = np.unravel_index(int(np.argmax(s)), s.shape)
    fig.update_layout(title=dict(text=title), template=viz.TEMPLATE, height=140 + 60 * s.shape[0],
                      xaxis=dict(title=dict(text="head")), yaxis=dict(title=dict(text="layer"), autorange="reversed"))
    return viz.set_alt(fig, f"Heatmap of the copy score of {s.size} heads; the highest is layer {l}, head {h} "
                            f"at {s[l, h]:.2f}; the median is {float(np.median(s)):.2f}.")


# --- exercises -----------------------------------------------------------------------------------------

def descend(w0: float, lr: float, steps: int, curvature: float = 1.0) -> list[float]:
    """Gradient descent on the loss ``curvature * w**2 / 2`` (gradient ``curvature * w``).

    Returns ``[w0, w1, ..., w_steps]`` with ``w_{t+1} = w_t - lr * curvature * w_t``. The iterates
    shrink when ``|1 - lr * curvature| < 1``, i.e. ``lr < 2 / curvature``, and blow up beyond it.
    """
    w = [checks.check_real(w0, "w0")]
    lr = checks.check_real(lr, "lr", 0)
    curvature = checks.check_real(curvature, "curvature")
    for _ in range(_check_int("steps", steps, 0)):
        w.append(w[-1] - lr * curvature * w[-1])
    return w


from .exercises import check_relu_backprop  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


from .exercises import check_gradient_descent  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)


from .exercises import check_prune_and_rewind  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

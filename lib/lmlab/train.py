"""The training loop: AdamW with decay groups, warmup and cosine schedule, clipping, evaluation, checkpoints.

One function, :func:`train`, trains every neural ``lmlab`` model (the causal and the masked
:class:`~lmlab.models.Transformer`, :class:`~lmlab.models.MLPLM`, :class:`~lmlab.models.RNNLM`) on
token ids: a flat stream, or rows such as whole sentences (``lmlab.data.sentence_rows``)::

    config = TrainConfig(steps=500, batch_size=32, lr=3e-3)
    history = train(model, train_ids, val_ids, config)
    history.plot()

Each step draws ``batch_size`` random windows of ``context`` tokens from the stream, or random rows
(``lmlab.data.next_token_batch`` for the next-token objective, ``lmlab.data.masked_batch`` with the
80/10/10 rule for the masked one),
computes the cross-entropy, and takes one AdamW step. Following nanoGPT, weight decay applies to the
matrices (every parameter with two or more dimensions, embeddings included) and not to biases or norm
gains; the learning rate rises linearly for ``warmup_steps`` and then follows a cosine down to
``min_lr`` at the last step.

A run is a deterministic function of the model's initial weights, the data and ``config.seed`` (on a
given device and thread count). With ``checkpoint=path`` the full state (weights, optimizer moments,
step, random-number-generator states, history) is saved to one safetensors file every
``config.checkpoint_every`` steps and at the end; ``resume=True`` continues from it, and the result
equals that of an uninterrupted run.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import checks, env

__all__ = ["TrainConfig", "History", "train", "evaluate", "lr_at", "make_optimizer", "save_checkpoint",
           "load_checkpoint", "load_zoo_model"]

OBJECTIVES = ("next", "masked")


@dataclass
class TrainConfig:
    """Settings for :func:`train`. Defaults suit a small model on the toy language on a CPU.

    ``context=None`` uses the model's ``config.context_length``. ``objective=None`` picks ``"next"``
    for causal models and ``"masked"`` for masked ones. ``device=None`` picks CUDA, then MPS, then the
    CPU (:func:`lmlab.env.device`). ``eval_every=0`` evaluates only at the end; ``eval_batches=0``
    never. ``log_every=None`` records the training loss about 200 times per run.
    """

    steps: int = 1000
    batch_size: int = 32
    context: int | None = None
    lr: float = 3e-3
    min_lr: float | None = None          # None: lr / 10
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0        # None or 0: no clipping
    objective: str | None = None         # "next" | "masked" | None (from the model)
    mask_prob: float = 0.15              # masked objective: share of positions chosen
    eval_every: int = 0                  # 0: only at the end
    eval_batches: int = 20
    log_every: int | None = None
    checkpoint_every: int = 0            # 0: only at the end (when a checkpoint path is given)
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.betas, (str, bytes)) or not hasattr(self.betas, "__len__"):
            raise TypeError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(self.betas)  # JSON round-trips give lists
        for name in ("steps", "batch_size"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("warmup_steps", "eval_every", "eval_batches", "checkpoint_every"):
            _check_int(name, getattr(self, name), minimum=0)
        checks.check_seed(int(self.seed) if checks.is_int(self.seed) else self.seed, "seed")
        if self.context is not None:
            _check_int("context", self.context, minimum=1)
        if self.log_every is not None:
            _check_int("log_every", self.log_every, minimum=1)
        checks.check_real(self.lr, "lr", 0, low_open=True, hint="e.g. 3e-3")
        if self.min_lr is not None:
            checks.check_real(self.min_lr, "min_lr", 0, self.lr, allow_none=True, hint="None means lr / 10")
        checks.check_real(self.weight_decay, "weight_decay", 0)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            checks.check_real(b, f"betas[{i}]", 0, 1, high_open=True)
        checks.check_real(self.grad_clip, "grad_clip", 0, allow_none=True, hint="None or 0 turns clipping off")
        if self.objective is not None:
            checks.check_choice(self.objective, "objective", OBJECTIVES + (None,))
        checks.check_real(self.mask_prob, "mask_prob", 0, 1, low_open=True, high_open=True)
        if self.device is not None:
            env.device(self.device)  # validates the name

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else float(self.min_lr)


def _check_int(name: str, value: Any, minimum: int) -> None:
    checks.check_int(value, name, minimum)


def checkpoint_config(path: str | os.PathLike) -> dict:
    """The :class:`TrainConfig` fields a checkpoint was written with (a dict)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as err:
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); the file is damaged "
                         "or truncated: delete it to start again") from err
    if meta.get("format") != "lmlab-train-1":
        raise ValueError(f"{path} is not an lmlab training checkpoint (format {meta.get('format')!r})")
    return json.loads(meta.get("config", "{}"))


def _config_changes(saved: dict, config: TrainConfig) -> list[str]:
    """What differs between a checkpoint's config and ``config``, other than ``steps`` growing."""
    now = json.loads(json.dumps(asdict(config)))  # tuples -> lists, as saved
    out = []
    for key in sorted(set(saved) | set(now)):
        if key == "steps":
            continue
        if saved.get(key) != now.get(key):
            out.append(f"{key}: {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now")
    return out


# --- schedule and optimizer -----------------------------------------------------------------------

def lr_at(step: int, config: TrainConfig) -> float:
    """The learning rate for (0-based) ``step``: linear warmup, then cosine decay to ``min_lr``.

    As in nanoGPT: ``lr * (step + 1) / (warmup + 1)`` during warmup, then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * r)) / 2`` with ``r`` going from 0 to 1 over the rest.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / (config.warmup_steps + 1)
    span = max(1, config.steps - 1 - config.warmup_steps)
    ratio = min(1.0, (step - config.warmup_steps) / span)
    return config.final_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (config.lr - config.final_lr)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with two groups: matrices (``dim >= 2``) decay, biases and norm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = {"lr": config.lr, "betas": config.betas}
    # The fused kernel is the fastest on CPU and CUDA; MPS and old torch take the default path.
    dev = params[0].device.type if params else "cpu"
    if dev in ("cpu", "cuda"):
        kwargs["fused"] = True
    try:
        return torch.optim.AdamW(groups, **kwargs)
    except (RuntimeError, TypeError, ValueError):
        kwargs.pop("fused", None)
        return torch.optim.AdamW(groups, **kwargs)


# --- history ---------------------------------------------------------------------------------------

@dataclass
class History:
    """What happened during training. Losses are mean cross-entropies in nats per predicted token.

    ``step``, ``train_loss``, ``lr``, ``tokens`` and ``elapsed`` are recorded every ``log_every``
    steps (``train_loss`` is the mean over the steps since the previous record); ``val_step`` and
    ``val_loss`` at each evaluation. ``tokens`` counts input positions processed (batch x context per
    step); ``elapsed`` is wall time in seconds spent in :func:`train` (evaluation included).
    """

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    @property
    def final_train_loss(self) -> float | None:
        return self.train_loss[-1] if self.train_loss else None

    @property
    def final_val_loss(self) -> float | None:
        return self.val_loss[-1] if self.val_loss else None

    @property
    def tokens_seen(self) -> int:
        return self.tokens[-1] if self.tokens else 0

    @property
    def seconds(self) -> float:
        return self.elapsed[-1] if self.elapsed else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def __repr__(self) -> str:
        parts = [f"steps={self.step[-1] if self.step else 0}", f"tokens={self.tokens_seen:,}"]
        if self.final_train_loss is not None:
            parts.append(f"train_loss={self.final_train_loss:.4f}")
        if self.final_val_loss is not None:
            parts.append(f"val_loss={self.final_val_loss:.4f}")
        parts.append(f"seconds={self.seconds:.1f}")
        return f"History({', '.join(parts)})"

    def as_curves(self) -> dict[str, tuple[list[int], list[float]]]:
        """``{"train": (steps, losses), "validation": (steps, losses)}`` (what ``lmlab.viz.loss_curves`` reads)."""
        curves = {"train": (list(self.step), list(self.train_loss))}
        if self.val_loss:
            curves["validation"] = (list(self.val_step), list(self.val_loss))
        return curves

    def plot(self, floor: float | None = None, title: str = "Training loss"):
        """The loss curves as a plotly figure; ``floor`` draws a horizontal line (e.g. the entropy rate).

        Uses ``lmlab.viz.loss_curves`` (the house style) when it is available, else a plain figure.
        """
        if not self.step:
            return _plain_loss_figure(self, floor, title)
        try:
            from .viz import loss_curves
        except ImportError:
            return _plain_loss_figure(self, floor, title)
        return loss_curves(self, entropy_floor=floor, title=title)


def _plain_loss_figure(history: History, floor: float | None, title: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=history.step, y=history.train_loss, mode="lines", name="train",
                    hovertemplate="step %{x}<br>train loss %{y:.4f}<extra></extra>")
    if history.val_loss:
        fig.add_scatter(x=history.val_step, y=history.val_loss, mode="lines+markers", name="validation",
                        hovertemplate="step %{x}<br>validation loss %{y:.4f}<extra></extra>")
    if floor is not None:
        fig.add_hline(y=floor, line_dash="dot", annotation_text=f"floor {floor:.3f}")
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss (nats per token)",
                      template="plotly_white")
    last = f"{history.final_train_loss:.3f}" if history.train_loss else "n/a"
    val = f", validation {history.final_val_loss:.3f}" if history.val_loss else ""
    fig.layout.meta = {"alt": f"{title}: loss against training step; final training loss {last}{val}."}
    return fig


def _in_kernel() -> bool:
    """True inside a Jupyter/Colab kernel (where figures can be displayed and updated)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _LivePlot:
    """A loss figure redrawn in place in Jupyter/Colab while training; inert in book builds and scripts."""

    def __init__(self, enabled: bool, floor: float | None, min_interval: float = 1.0):
        self.handle = None
        self.floor = floor
        self.min_interval = min_interval
        self.last = 0.0
        if not enabled or env.in_book_build():
            return
        if not _in_kernel():
            return
        from IPython.display import display

        self.handle = display(_bundle(_plain_loss_figure(History(), floor, "Training loss (live)")), raw=True,
                              display_id=True)

    def update(self, history: History, force: bool = False) -> None:
        if self.handle is None:
            return
        now = time.perf_counter()
        if force or now - self.last >= self.min_interval:
            self.last = now
            self.handle.update(_bundle(history.plot(floor=self.floor, title="Training loss (live)")), raw=True)


def _bundle(fig: Any) -> dict:
    """A figure as the MIME bundle the notebook's plotly renderer makes. A figure handed to ``display``
    itself displays a *new* output each time (plotly's ``_ipython_display_`` drops the display id), so
    the live curve would pile up copies instead of redrawing in place."""
    return fig._repr_mimebundle_(include=None, exclude=None) or {"text/plain": "(training loss: no plotly renderer)"}


# --- batches and losses ----------------------------------------------------------------------------

def _as_ids(data: Any, name: str) -> torch.Tensor:
    """A 1-D stream ``(N,)`` or 2-D rows ``(rows, seq)`` of token ids as a CPU LongTensor."""
    if isinstance(data, torch.Tensor):
        ids = data
    else:
        try:
            ids = torch.as_tensor(data)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be token ids: a 1-D stream or 2-D rows (list, array or LongTensor), "
                            f"got {type(data).__name__}") from err
    if ids.dim() not in (1, 2) or ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.numel() == 0:
        raise TypeError(f"{name} must be integer token ids, a 1-D stream (N,) or 2-D rows (rows, seq), got "
                        f"shape {tuple(ids.shape)} and dtype {ids.dtype}")
    return ids.long().cpu()


def _model_vocab_and_context(model: nn.Module) -> tuple[int, int]:
    cfg = getattr(model, "config", None)
    vocab = getattr(cfg, "vocab_size", None)
    context = getattr(cfg, "context_length", None)
    if vocab is None or context is None:
        raise TypeError(f"model must have .config.vocab_size and .config.context_length (an lmlab model), "
                        f"got {type(model).__name__}")
    return int(vocab), int(context)


class _Batches:
    """Training batches drawn with one seeded generator, from a stream or from rows.

    * A 1-D stream ``(N,)``: random windows of ``context`` tokens (``"next"``:
      ``lmlab.data.next_token_batch``; ``"masked"``: ``lmlab.data.random_windows`` then
      ``lmlab.data.masked_batch``, the 80/10/10 rule).
    * 2-D rows ``(rows, seq)``, e.g. sentence-aligned rows padded with ``tokenizer.pad_id``
      (``lmlab.data.sentence_rows``): random rows. ``"next"`` predicts ``row[1:]`` from ``row[:-1]``
      (so ``context = seq - 1``) and ignores targets that are padding; ``"masked"`` uses ``seq`` positions.

    Targets are ``-100`` (ignored by the loss) where nothing is to be predicted.
    """

    def __init__(self, ids: torch.Tensor, objective: str, batch_size: int, context: int, mask_prob: float,
                 tokenizer: Any, generator: torch.Generator):
        from . import data

        self.data = data
        self.ids, self.objective = ids, objective
        self.batch_size, self.context, self.mask_prob = batch_size, context, mask_prob
        self.tokenizer = tokenizer
        self.generator = generator
        self.rows = ids.dim() == 2
        if self.rows:
            if tokenizer is None or getattr(tokenizer, "pad_id", None) is None:
                raise ValueError("training on rows (a 2-D tensor) needs the tokenizer, for its pad_id: pass "
                                 "tokenizer=... to train()")
            self.pad_id = int(tokenizer.pad_id)
            return
        need = context + 1 if objective == "next" else context
        if len(ids) < need:
            raise ValueError(f"the data hold {len(ids)} tokens, fewer than one window of {need}: "
                             f"pass more data or a smaller context")

    @staticmethod
    def context_of(ids: torch.Tensor, objective: str) -> int | None:
        """The context rows imply (None for a stream)."""
        if ids.dim() != 2:
            return None
        return ids.size(1) - 1 if objective == "next" else ids.size(1)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rows:
            pick = torch.randint(0, self.ids.size(0), (self.batch_size,), generator=self.generator)
            rows = self.ids[pick]
            if self.objective == "next":
                x, y = rows[:, :-1], rows[:, 1:]
                return x, y.masked_fill(y == self.pad_id, -100)
            return self.data.masked_batch(rows, self.tokenizer, self.mask_prob, self.generator)
        if self.objective == "next":
            return self.data.next_token_batch(self.ids, self.batch_size, self.context, self.generator)
        rows = self.data.random_windows(self.ids, self.batch_size, self.context, self.generator)
        return self.data.masked_batch(rows, self.tokenizer, self.mask_prob, self.generator)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Callable[[], tuple[torch.Tensor, torch.Tensor]], n_batches: int,
             device: torch.device) -> float:
    """Mean loss over ``n_batches`` batches (model in eval mode, no gradients); restores the mode."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device)
    for _ in range(n_batches):
        x, y = batches()
        total += _loss(model, x.to(device), y.to(device))
    model.train(was_training)
    return (total / n_batches).item()


# --- checkpoints -----------------------------------------------------------------------------------

def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    states = {"rng.batches": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["rng.cuda"] = torch.cuda.get_rng_state(device)
    return states


def save_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, history: History, config: TrainConfig,
                    pending: Sequence[torch.Tensor] = ()) -> Path:
    """Write weights, optimizer state, step, RNG states and history to one safetensors file (atomically).

    ``pending`` holds the losses of the steps since the last history record, so that a resumed run
    records the same means as an uninterrupted one.
    """
    from safetensors.torch import save_file

    device = env.model_device(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        tensors[f"model.{name}"] = value.detach().to("cpu").clone().contiguous()  # clone: no shared storage
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = value.detach().to("cpu").clone().contiguous()
    tensors.update({k: v.clone() for k, v in _rng_state(generator, device).items()})
    if len(pending):
        tensors["pending_losses"] = torch.stack([p.detach().float().cpu() for p in pending])
    meta = {
        "step": str(step),
        "history": json.dumps(history.to_dict()),
        "config": json.dumps(asdict(config)),
        "param_groups": json.dumps(opt_state["param_groups"]),
        "format": "lmlab-train-1",
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    generator: torch.Generator | None = None) -> tuple[int, History, list[torch.Tensor]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns ``(step, history, pending)``.

    ``pending`` lists the losses of the steps after the last history record (on the model's device).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    device = env.model_device(model)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "lmlab-train-1":
                raise ValueError(f"{path} is not an lmlab training checkpoint (format {meta.get('format')!r})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except ValueError:
        raise
    except Exception as err:  # safetensors' SafetensorError (truncated or damaged file), OSError
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); the file is damaged "
                         "or truncated: delete it to start again") from err
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    if generator is not None:
        generator.set_state(tensors["rng.batches"])
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    pending = list(tensors["pending_losses"].to(device)) if "pending_losses" in tensors else []
    return int(meta["step"]), History.from_dict(json.loads(meta["history"])), pending


# --- the loop --------------------------------------------------------------------------------------

def train(model: nn.Module, train_data: Sequence[int] | torch.Tensor, val_data: Sequence[int] | torch.Tensor | None,
          config: TrainConfig | None = None, *, tokenizer: Any | None = None,
          checkpoint: str | os.PathLike | None = None, resume: bool = False, live: bool = False,
          floor: float | None = None, progress: bool = True,
          callback: Callable[[int, dict], None] | None = None) -> History:
    """Train ``model`` in place on a flat stream of token ids; returns the :class:`History`.

    Args:
        model: an lmlab neural model (``forward(idx (batch, seq)) -> logits (batch, seq, vocab)``).
        train_data, val_data: token ids (list, NumPy array or LongTensor): a 1-D stream ``(N,)`` (random
            windows of ``context`` tokens) or 2-D rows ``(rows, seq)`` padded with ``tokenizer.pad_id``
            (random rows; e.g. sentence-aligned rows). ``val_data`` may be None (no evaluation).
        config: a :class:`TrainConfig` (defaults if None).
        tokenizer: the model's lmlab tokenizer; needed for the masked objective (mask and special ids).
        checkpoint: a file to save the full training state to (every ``config.checkpoint_every`` steps
            and at the end).
        resume: continue from ``checkpoint`` if it exists (the result equals an uninterrupted run).
        live: redraw a loss figure while training (Jupyter/Colab; inert in book builds and scripts).
        floor: a loss floor (e.g. the entropy rate) drawn in the live figure.
        progress: show a progress bar with the current loss (plain text in book builds).
        callback: called after every step as ``callback(step, {"loss": float-or-None, "lr": ...})``
            where ``step`` counts completed steps.
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    for flag, value in (("resume", resume), ("live", live), ("progress", progress)):
        checks.check_bool(value, flag)
    checks.check_real(floor, "floor", allow_none=True)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be a function callback(step, info) or None, got {callback!r:.60}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch nn.Module (an lmlab neural model), got {type(model).__name__}; "
                        "n-gram models are fit by counting (NGramLM.fit)")
    _, model_context = _model_vocab_and_context(model)
    causal = bool(getattr(model, "causal", True))
    objective = config.objective or ("next" if causal else "masked")
    if objective == "masked" and causal:
        raise ValueError("objective 'masked' needs a masked model (causal=False); this model is causal")
    if objective == "next" and not causal:
        raise ValueError("objective 'next' needs a causal model; this model is masked (causal=False)")
    train_ids = _as_ids(train_data, "train_data")
    val_ids = _as_ids(val_data, "val_data") if val_data is not None else None
    row_context = _Batches.context_of(train_ids, objective)
    if row_context is not None:
        if config.context is not None and config.context != row_context:
            raise ValueError(f"config.context={config.context} but the training rows give context {row_context}; "
                             "leave context=None when training on rows")
        if val_ids is not None and val_ids.dim() == 2 and _Batches.context_of(val_ids, objective) != row_context:
            raise ValueError(f"val_data rows have {val_ids.size(1)} columns, train_data rows {train_ids.size(1)}")
    context = row_context or config.context or model_context
    if context > model_context:
        raise ValueError(f"context {context} exceeds the model's context_length {model_context}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH")

    device = env.device(config.device)
    model.to(device)
    model.train()
    if objective == "masked" and getattr(tokenizer, "mask_id", None) is None:
        raise ValueError("the masked objective needs the model's tokenizer (for its mask and special ids): "
                         "pass tokenizer=... to train()")

    if resume and Path(checkpoint).is_file():
        changes = _config_changes(checkpoint_config(checkpoint), config)
        if changes:
            raise ValueError(f"resume=True but the TrainConfig differs from the one checkpoint {checkpoint} was "
                             f"written with (only steps may grow): {'; '.join(changes)}. Resume with the same "
                             "config, or pass another checkpoint path (or delete it) to start afresh")
    seed = checks.seed_of(config.seed, "config.seed")  # the reader's seed plus $LMLAB_SEED_OFFSET
    torch.manual_seed(seed)  # dropout and anything else drawing from the global generator
    generator = torch.Generator().manual_seed(seed)
    batches = _Batches(train_ids, objective, config.batch_size, context, config.mask_prob, tokenizer, generator)
    optimizer = make_optimizer(model, config)
    history = History(config=asdict(config))
    start = 0
    pending: list[torch.Tensor] = []
    if resume and Path(checkpoint).is_file():
        start, history, pending = load_checkpoint(checkpoint, model, optimizer, generator)
        if start > config.steps:
            raise ValueError(f"the checkpoint is at step {start}, past config.steps={config.steps}")

    def val_loss() -> float | None:
        if val_ids is None or config.eval_batches == 0:
            return None
        g = torch.Generator().manual_seed((seed + 1) % 2**63)  # the same validation batches every time
        vb = _Batches(val_ids, objective, config.batch_size, context, config.mask_prob, tokenizer, g)
        return evaluate(model, vb, config.eval_batches, device)

    log_every = config.log_every or max(1, config.steps // 200)
    tokens_per_step = config.batch_size * context
    params = [p for p in model.parameters() if p.requires_grad]
    clip = config.grad_clip or 0.0
    live_plot = _LivePlot(live, floor)
    offset = history.seconds
    t0 = time.perf_counter()
    bar = env.progress(total=config.steps, initial=start, desc="training", disable=not progress)
    try:
        for step in range(start, config.steps):
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = batches()
            loss = _loss(model, x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            pending.append(loss.detach())
            done = step + 1
            record = done % log_every == 0 or done == config.steps
            mean_loss = None
            if record:
                mean_loss = torch.stack(pending).mean().item()
                pending.clear()
                history.step.append(done)
                history.train_loss.append(mean_loss)
                history.lr.append(lr)
                history.tokens.append(done * tokens_per_step)
                history.elapsed.append(offset + time.perf_counter() - t0)
                bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
            if (config.eval_every and done % config.eval_every == 0) or done == config.steps:
                vl = val_loss()
                if vl is not None:
                    history.val_step.append(done)
                    history.val_loss.append(vl)
                    bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", val=f"{vl:.4f}", refresh=False)
                if history.elapsed:
                    history.elapsed[-1] = offset + time.perf_counter() - t0
            bar.update(1)
            if record:
                live_plot.update(history, force=done == config.steps)
            if checkpoint is not None and ((config.checkpoint_every and done % config.checkpoint_every == 0)
                                           or done == config.steps):
                save_checkpoint(checkpoint, model, optimizer, done, generator, history, config, pending)
            if callback is not None:
                callback(done, {"loss": mean_loss, "lr": lr})
    finally:
        bar.close()
    model.eval()
    if live and env.in_book_build() and _in_kernel():
        from IPython.display import display

        display(history.plot(floor=floor))
    return history


def load_zoo_model(name: str, **kwargs):
    """Same as :func:`lmlab.zoo.load` (kept here for the contract in CONTRIBUTING.md)."""
    from . import zoo

    return zoo.load(name, **kwargs)

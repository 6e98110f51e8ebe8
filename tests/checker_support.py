"""Shared by the checker tests: a correct solution per checker (written as a student would), the name
each checker prints, and what each chapter imports (so that a test can refuse hints naming a module or
function the chapter never imported)."""
from __future__ import annotations

import ast
import json
import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
NEG_INF = float("-inf")


# --- correct solutions ---------------------------------------------------------------------------------

def softmax_ok(x):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def causal_mask_ok(n):
    return torch.tril(torch.ones(n, n)).bool()


def attention_ok(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, NEG_INF)
    return torch.softmax(scores, dim=-1) @ v


def count_bigrams_ok(tokens, vocab):
    index = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((len(vocab), len(vocab)))
    for a, b in zip(tokens, tokens[1:]):
        counts[index[a], index[b]] += 1
    return counts


def bigram_probs_ok(counts, alpha=0.0):
    c = counts.double() + alpha
    return c / c.sum(dim=1, keepdim=True)


def cross_entropy_ok(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    return -logp[torch.arange(len(targets)), targets].mean()


def perplexity_ok(logprobs):
    return torch.exp(-logprobs.mean())


def entropy_ok(probs):
    p = probs[probs > 0]
    return -(p * torch.log(p)).sum()


def sample_ok(logits, temperature):
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, num_samples=1))


def top_k_ok(logits, k):
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_ok(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    keep_sorted = before < p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, NEG_INF)


def cosine_ok(a, b):
    return (a @ b) / (a.norm() * b.norm())


def neighbors_ok(E, i, k):
    unit = E / E.norm(dim=1, keepdim=True)
    sims = unit @ unit[i]
    sims[i] = NEG_INF
    return torch.topk(sims, k).indices


def analogy_ok(E, a, b, c):
    target = E[b] - E[a] + E[c]
    sims = (E @ target) / (E.norm(dim=1) * target.norm())
    sims[[a, b, c]] = NEG_INF
    return int(sims.argmax())


def greedy_ok(logits):
    return logits[:, -1].argmax(dim=-1)


def train_step_ok(model, optimizer, x, y):
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def relu_backprop_ok(x, y, W1, b1, W2, b2):
    a = x @ W1 + b1
    h = torch.relu(a)
    q = torch.softmax(h @ W2 + b2, dim=-1)
    dz = (q - F.one_hot(y, q.shape[-1])) / len(y)
    da = (dz @ W2.T) * (a > 0)
    return {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


def gradient_descent_ok(w0, lr, steps, curvature):
    w = [w0]
    for _ in range(steps):
        w.append(w[-1] - lr * curvature * w[-1])
    return w


def prune_and_rewind_ok(trained, initial, sparsity):
    weights, masks = {}, {}
    for name, w in trained.items():
        order = torch.sort(w.abs().flatten(), stable=True).indices
        keep = torch.ones(w.numel(), dtype=torch.bool)
        keep[order[:round(sparsity * w.numel())]] = False
        masks[name] = keep.view_as(w)
        weights[name] = initial[name] * masks[name]
    return weights, masks


def probe_ok(X_train, y_train, X_test, y_test):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000).fit(X_train, y_train).score(X_test, y_test)


def head_accuracy_ok(patterns, sites):
    s, q, t = sites.T
    return (patterns[s, :, :, q, :].argmax(-1) == t[:, None, None]).float().mean(0)


def ngram_perplexity_ok(n, train, test, vocab_size):
    from lmlab.models import NGramLM

    lm = NGramLM(n, vocab_size=vocab_size).fit(train)
    return math.exp(-np.concatenate([lm.token_logprobs(s) for s in test]).mean())


def beam_search_ok(next_logprobs, prompt, num_beams, steps):
    beams = [([], 0.0)]
    for _ in range(steps):
        candidates = [(tokens + [w], score + lp) for tokens, score in beams
                      for w, lp in next_logprobs(list(prompt) + tokens).items()]
        candidates.sort(key=lambda c: c[1], reverse=True)
        beams = candidates[:num_beams]
    return beams[0][0]


def _entropy(p):
    nz = p[p > 0]
    return float(-(nz * torch.log(nz)).sum())


def bisection(entropy, logits, target):
    low, high = 1e-3, 1e3
    for _ in range(60):
        middle = math.sqrt(low * high)
        if entropy(torch.softmax(logits / middle, dim=-1)) < target:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def temperature_ok(logits, target):
    return bisection(_entropy, logits, target)


def sinusoidal_ok(n_positions, d_model):
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    table = torch.zeros(n_positions, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def rotate_ok(x, positions):
    d = x.shape[-1]
    angle = positions.float()[:, None] * 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    x1, x2 = x[:, 0::2], x[:, 1::2]
    return torch.stack([x1 * angle.cos() - x2 * angle.sin(), x1 * angle.sin() + x2 * angle.cos()], -1).flatten(-2)


def swiglu_ok(x, w_gate, w_up, w_down):
    return (F.silu(x @ w_gate) * (x @ w_up)) @ w_down


def block_ok(x, attn, mlp, ln1, ln2):
    x = x + attn(ln1(x))
    return x + mlp(ln2(x))


CORRECT = {
    "softmax": softmax_ok, "causal_mask": causal_mask_ok, "attention": attention_ok,
    "bigram_counts": count_bigrams_ok, "bigram_probs": bigram_probs_ok, "cross_entropy": cross_entropy_ok,
    "perplexity": perplexity_ok, "entropy": entropy_ok, "sample": sample_ok, "top_k": top_k_ok, "top_p": top_p_ok,
    "cosine_similarity": cosine_ok, "nearest_neighbors": neighbors_ok, "analogy": analogy_ok,
    "greedy_next": greedy_ok, "train_step": train_step_ok, "relu_backprop": relu_backprop_ok,
    "gradient_descent": gradient_descent_ok, "prune_and_rewind": prune_and_rewind_ok, "probe": probe_ok,
    "head_accuracy": head_accuracy_ok, "ngram_perplexity": ngram_perplexity_ok, "beam_search": beam_search_ok,
    "temperature_for_entropy": temperature_ok, "sinusoidal_positions": sinusoidal_ok, "rotary": rotate_ok,
    "swiglu": swiglu_ok, "prenorm_block": block_ok,
}

# the name a checker prints, where it differs from its key in lmlab.exercises.CHECKERS
PRINTED = {"probe": "probe_accuracy"}


def printed(name: str) -> str:
    return PRINTED.get(name, name)


# --- chapters, their imports, and the names a hint may use ---------------------------------------------

# Names a hint can only use if the chapter imported them (module aliases and imported classes).
IMPORTABLE = ("math", "np", "numpy", "F", "torch", "nn", "random", "statistics", "sklearn", "scipy",
              "LogisticRegression", "PCA", "NGramLM", "itertools", "collections", "Counter")
_USE = re.compile(r"(?<![\w.])(" + "|".join(IMPORTABLE) + r")(?=[.(])")


def names_used(text: str) -> set[str]:
    """The importable names a message or hint uses as ``name.attr`` or ``name(...)``."""
    return set(_USE.findall(text))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _is_solution(cell: dict) -> bool:
    return _source(cell).lstrip().startswith("# @title Solution")


@lru_cache(maxsize=None)
def chapter_of() -> dict[str, Path]:
    """Checker key -> the chapter whose exercise calls it (outside solution cells)."""
    found = {}
    for path in CHAPTERS:
        for cell in _cells(path):
            if cell["cell_type"] == "code" and not _is_solution(cell):
                for name in re.findall(r"check_(\w+)\(", _source(cell)):
                    found.setdefault(name, path)
    return found


@lru_cache(maxsize=None)
def imported_names(path: Path) -> frozenset[str]:
    """Names bound by import statements in the chapter's code cells (solution cells excluded: a student
    who has not opened the solution has not run them), plus names the exercise texts spell out."""
    names: set[str] = set()
    for cell in _cells(path):
        src = _source(cell)
        if cell["cell_type"] == "markdown":
            if "{exercise}" in src:
                for code in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", src.replace("```", "\n")):
                    names |= set(re.findall(r"[A-Za-z_]\w*", code.split("(")[0]))
            continue
        if _is_solution(cell):
            continue
        lines = [line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    names.add(alias.asname or alias.name)
    return frozenset(names)


def allowed_names(checker: str) -> frozenset[str]:
    """What a hint of ``checker`` may name: its chapter's imports, or torch alone for a checker no chapter
    uses (a hint must work with the least a student has)."""
    path = chapter_of().get(checker)
    return imported_names(path) if path else frozenset({"torch"})


def unimported(checker: str, text: str) -> set[str]:
    return names_used(text) - allowed_names(checker)

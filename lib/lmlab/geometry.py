"""Embeddings and activations as geometry (chapter 3).

A layer's output for one token is a vector of ``d_model`` numbers: a point in a space where we can
measure angles and distances. This module measures what that space holds, always against a baseline:

* **Vectors.** :func:`embedding_matrix` (the input embedding table of our models or of a Hugging Face
  model), :func:`collect_activations` (every layer's vector for chosen tokens of toy-language sentences,
  with the grammar's tags) and :func:`hf_word_activations` (the same for one word in English sentences).
* **Neighbours and projections.** :func:`cosine_matrix`, :func:`neighbor_agreement` (do nearest
  neighbours share a label, compared with chance), :func:`neighborhood_preservation` and
  :func:`centroid_distance_correlation` (what a 2-D picture keeps of the original space).
* **Regularities.** :func:`offset_parallelism` (are the offsets ``b - a`` of related pairs parallel,
  compared with the same pairs mismatched) and :func:`analogy_accuracy` (``a : b :: c : ?`` by
  ``b - a + c``, with or without leaving the three query words out, or by the nearest neighbour of ``c``
  alone), with :func:`random_analogy_baseline`.
* **Context.** :func:`separation_by_layer` (how well a label, e.g. the sense of *bat*, separates the
  vectors at each layer: a silhouette score on cosine distance) and :func:`senses_allowed` (which senses
  of *bat* the grammar allows given the whole sentence or only the words before it).
* **Probes.** :func:`split_by_sentence`, :func:`control_labels` (Hewitt & Liang's control task: a random
  label per word type, or shuffled labels), :func:`probe_accuracy` and :func:`probe_layers` (a linear
  classifier trained on one split and scored on the other, layer by layer, beside its control).
* **Counting instead of training.** :func:`cooccurrence_embeddings`: PPMI word-context counts reduced
  with an SVD (the distributional hypothesis without a neural network).

Figures (plotly, the ``lmlab`` house template, a text alternative each): :func:`offsets_figure` (the
pairs and their offsets as arrows after PCA) and :func:`layer_scores_figure` (a score per layer, several
lines, with a chance line). The exercise checker :func:`check_probe` follows :mod:`lmlab.exercises`.

Our word-level models read ``". the dog barks ."``: word ``i`` of a sentence sits at position ``i + 1``.
Layer ``0`` is the input to the first block (``blocks.0.resid_pre``: the token embedding, plus the
position embedding in models that add one; with rotary positions it is the token embedding alone),
layer ``l`` the output of block ``l - 1`` (``blocks.{l-1}.resid_post``), as in Hugging Face's
``hidden_states``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from . import checks, env, viz

__all__ = [
    "Activations", "embedding_matrix", "collect_activations", "hf_word_activations",
    "cosine_matrix", "neighbor_agreement", "neighborhood_preservation", "centroid_distance_correlation",
    "offset_parallelism", "analogy_questions", "analogy_accuracy", "random_analogy_baseline",
    "separation_score", "separation_by_layer", "senses_allowed", "SENSE_STAND_INS",
    "split_by_sentence", "control_labels", "probe_accuracy", "probe_layers",
    "cooccurrence_embeddings", "offsets_figure", "layer_scores_figure", "check_probe",
]


# --- small checks ----------------------------------------------------------------------------------

def _matrix(x: Any, name: str) -> np.ndarray:
    """A float64 2-D NumPy copy of an array or tensor, checked."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a 2-D array or tensor of numbers, got {type(x).__name__}") from err
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {tuple(arr.shape)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _labels(labels: Any, n: int, name: str = "labels") -> np.ndarray:
    if isinstance(labels, str):
        raise TypeError(f"{name} must be a sequence with one label per vector, got the string {labels!r}")
    arr = np.asarray(list(labels), dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.shape[0] if arr.ndim else 0} entries but there are {n} vectors")
    return arr


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _one_thread(fn: Callable) -> Callable:
    """Run ``fn`` with one BLAS/OpenMP thread: these matrices are small, and on a shared CPU several
    threads spinning against each other can be ten times slower than one."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return fn(*args, **kwargs)
    return wrapper


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# --- vectors ---------------------------------------------------------------------------------------

def embedding_matrix(model: Any) -> np.ndarray:
    """The input embedding table ``(vocab, d_model)`` as a NumPy array.

    Works for :class:`lmlab.models.Transformer` (``model.wte``), models with an ``embedding`` layer,
    and Hugging Face models (``get_input_embeddings()``). Row ``i`` is the vector of token id ``i``.
    """
    for getter in (lambda m: m.wte, lambda m: m.get_input_embeddings(), lambda m: m.embedding):
        try:
            layer = getter(model)
        except (AttributeError, NotImplementedError):
            continue
        weight = getattr(layer, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.ndim == 2:
            return weight.detach().cpu().float().cpu().numpy().copy()
    raise TypeError(f"cannot find an embedding table in {type(model).__name__}: pass an lmlab Transformer "
                    "or a Hugging Face model")


@dataclass
class Activations:
    """Every layer's vector for chosen tokens of some sentences, with what the grammar says about them.

    ``vectors``: ``(layers, n, d_model)``; layer 0 is the input to the first block (the token
    embedding, plus a position embedding if the model adds one), layer ``l`` the output of block
    ``l - 1``. ``words[i]``, ``tags[i]`` (a
    :class:`lmlab.corpus.Tag`), ``sentence[i]`` (index into ``sentences``) and ``position[i]`` (word
    index in its sentence, from 0) describe token ``i``.
    """

    vectors: np.ndarray
    words: list[str]
    tags: list[Any]
    sentence: np.ndarray
    position: np.ndarray
    sentences: list[list[str]] = field(repr=False)

    @property
    def n_layers(self) -> int:
        """How many layers of vectors there are (blocks + 1)."""
        return int(self.vectors.shape[0])

    @property
    def layer_names(self) -> list[str]:
        """``["0 (embedding)", "1", "2", ...]``."""
        return ["0 (embedding)"] + [str(l) for l in range(1, self.n_layers)]

    def __len__(self) -> int:
        return len(self.words)

    def label(self, attribute: str) -> np.ndarray:
        """One label per token from its tag: ``"number"``, ``"gender"``, ``"cls"``, ``"sense"``, ``"role"``,
        ``"pos"``; or ``"word"`` for the word itself. Shape ``(n,)``."""
        if attribute == "word":
            return np.asarray(self.words, dtype=object)
        if not self.tags or not hasattr(self.tags[0], attribute):
            raise ValueError(f"unknown tag attribute {attribute!r}; use 'word' or one of "
                             "'pos', 'role', 'lemma', 'number', 'gender', 'cls', 'sense'")
        return np.asarray([getattr(t, attribute) for t in self.tags], dtype=object)

    def select(self, mask: Any) -> "Activations":
        """The tokens where ``mask`` (a bool array ``(n,)``) is true, as a new :class:`Activations`."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask must be a bool array of shape ({len(self)},), got {mask.shape}")
        keep = np.flatnonzero(mask)
        return Activations(self.vectors[:, keep], [self.words[i] for i in keep], [self.tags[i] for i in keep],
                           self.sentence[keep], self.position[keep], self.sentences)


def collect_activations(model: Any, tokenizer: Any, sentences: Sequence[Any],
                        keep: Callable[[str, Any], bool] | None = None, batch_size: int = 256) -> Activations:
    """Run ``model`` over toy-language sentences and keep every layer's vector of the chosen tokens.

    ``sentences``: :class:`lmlab.corpus.Sentence` objects (``lang.sample(n, seed)``), which carry tags.
    ``keep(word, tag) -> bool`` chooses tokens (default: every noun, verb and adjective). Each sentence
    is read as ``". w1 w2 ... ."``; sentences too long for the model's context are skipped. Causal and
    masked models alike see the whole (unmasked) sentence; padding is masked out.
    """
    if keep is None:
        def keep(word, tag):
            return tag.pos in ("NOUN", "VERB", "ADJ")
    if not callable(keep):
        raise TypeError(f"keep must be a function (word, tag) -> bool, got {keep!r}")
    _positive_int(batch_size, "batch_size")
    sentences = list(sentences)
    if not sentences or not all(hasattr(s, "tokens") and hasattr(s, "tags") for s in sentences):
        raise TypeError("sentences must be a non-empty list of tagged sentences: pass lang.sample(n, seed)")
    limit = model.config.context_length
    usable = [s for s in sentences if len(s.tokens) + 1 <= limit]
    n_layers = model.config.n_layer
    names = ["blocks.0.resid_pre"] + [f"blocks.{l}.resid_post" for l in range(n_layers)]
    device = env.model_device(model)
    chunks: list[np.ndarray] = []
    words, tags, sent_idx, positions = [], [], [], []
    was_training = model.training
    model.eval()
    for start in range(0, len(usable), batch_size):
        batch = usable[start:start + batch_size]
        rows = [tokenizer.encode_tokens(["."] + list(s.tokens)) for s in batch]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = True
        with torch.no_grad():
            ids, mask = env.to_model_device(model, ids, mask)
            _, cache = model.run_with_cache(ids, names=names, attention_mask=mask)
        stacked = torch.stack([cache[n] for n in names]).float().cpu().numpy()  # (layers, batch, seq, d)
        picks_b, picks_t = [], []
        for b, s in enumerate(batch):
            for i, (w, t) in enumerate(zip(s.tokens, s.tags)):
                if keep(w, t):
                    picks_b.append(b)
                    picks_t.append(i + 1)
                    words.append(w)
                    tags.append(t)
                    sent_idx.append(start + b)
                    positions.append(i)
        chunks.append(stacked[:, picks_b, picks_t])
    model.train(was_training)
    d = model.config.d_model
    vectors = np.concatenate(chunks, axis=1) if chunks else np.zeros((n_layers + 1, 0, d))
    return Activations(vectors, words, tags, np.asarray(sent_idx, dtype=int), np.asarray(positions, dtype=int),
                       [list(s.tokens) for s in usable])


def hf_word_activations(model: Any, tokenizer: Any, texts: Sequence[str], word: str) -> np.ndarray:
    """Every layer's vector of ``word`` in each of ``texts``, for a Hugging Face model: ``(layers, n, d)``.

    ``word`` must be one token of the model's vocabulary (e.g. ``"bat"`` for BERT-style models) and
    occur in every text; its first occurrence is used. Layer 0 is the embedding layer's output.
    """
    from .hub import run_with_cache

    if isinstance(texts, str) or not texts:
        raise TypeError("texts must be a non-empty list of strings")
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"{word!r} is {len(ids)} tokens for this tokenizer; pick a word that is one token")
    out = []
    for text in texts:
        _, cache = run_with_cache(model, tokenizer, text)
        row = cache["input_ids"][0].tolist()
        if ids[0] not in row:
            raise ValueError(f"{word!r} does not occur as a token in {text!r}")
        pos = row.index(ids[0])
        layers = [cache["embed"]] + [cache[f"blocks.{l}.resid_post"] for l in range(model.config.num_hidden_layers)]
        out.append(torch.stack([h[0, pos] for h in layers]).float().cpu().numpy())
    return np.stack(out, axis=1)


# --- neighbours and projections --------------------------------------------------------------------

def cosine_matrix(vectors: Any) -> np.ndarray:
    """Cosine similarity of every pair of rows: ``(n, n)`` with ones on the diagonal (zero rows give 0)."""
    x = _normalise(_matrix(vectors, "vectors"))
    return x @ x.T


@_one_thread
def neighbor_agreement(vectors: Any, labels: Any, k: int = 5) -> tuple[float, float]:
    """How often a vector's ``k`` nearest neighbours (cosine) share its label, and what chance gives.

    Returns ``(agreement, chance)``: ``agreement`` is the mean over vectors of the fraction of their
    ``k`` neighbours with the same label; ``chance`` the same fraction for neighbours drawn at random
    (the mean, over vectors, of the share of *other* vectors with the same label).
    """
    x = _matrix(vectors, "vectors")
    n = len(x)
    k = _positive_int(k, "k")
    if k >= n:
        raise ValueError(f"k must be smaller than the number of vectors ({n}), got {k}")
    labs = _labels(labels, n)
    sims = cosine_matrix(x)
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    same = labs[nearest] == labs[:, None]
    counts = {lab: int(np.sum(labs == lab)) for lab in set(labs.tolist())}
    chance = np.mean([(counts[lab] - 1) / (n - 1) for lab in labs])
    return float(same.mean()), float(chance)


def _knn_sets(x: np.ndarray, k: int) -> np.ndarray:
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


@_one_thread
def neighborhood_preservation(original: Any, projected: Any, k: int = 10) -> float:
    """The mean fraction of each point's ``k`` nearest neighbours (Euclidean) in ``original`` ``(n, d)``
    that are still among its ``k`` nearest in ``projected`` ``(n, 2 or 3)``: 1 = every neighbourhood kept."""
    x, y = _matrix(original, "original"), _matrix(projected, "projected")
    if len(x) != len(y):
        raise ValueError(f"original has {len(x)} points but projected has {len(y)}")
    k = _positive_int(k, "k")
    if k >= len(x):
        raise ValueError(f"k must be smaller than the number of points ({len(x)}), got {k}")
    a, b = _knn_sets(x, k), _knn_sets(y, k)
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(x))]))


def centroid_distance_correlation(original: Any, projected: Any, labels: Any) -> float:
    """Do the groups keep their distances? The Spearman correlation between the distances of every pair
    of group centroids (one group per label) in ``original`` and in ``projected``; 1 = same order."""
    from scipy.stats import spearmanr

    x, y = _matrix(original, "original"), _matrix(projected, "projected")
    if len(x) != len(y):
        raise ValueError(f"original has {len(x)} points but projected has {len(y)}")
    labs = _labels(labels, len(x))
    groups = sorted(set(labs.tolist()), key=str)
    if len(groups) < 3:
        raise ValueError(f"need at least 3 groups to correlate their distances, got {len(groups)}")
    cx = np.stack([x[labs == g].mean(0) for g in groups])
    cy = np.stack([y[labs == g].mean(0) for g in groups])
    iu = np.triu_indices(len(groups), 1)
    dx = np.linalg.norm(cx[:, None] - cx[None], axis=-1)[iu]
    dy = np.linalg.norm(cy[:, None] - cy[None], axis=-1)[iu]
    return float(spearmanr(dx, dy).statistic)


# --- regularities ----------------------------------------------------------------------------------

def _index(vocab: Sequence[str]) -> dict[str, int]:
    if isinstance(vocab, str):
        raise TypeError("vocab must be a list of tokens, not one string")
    return {w: i for i, w in enumerate(vocab)}


def _pair_rows(vocab: Sequence[str], pairs: Sequence[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    index = _index(vocab)
    pairs = list(pairs)
    if len(pairs) < 2:
        raise ValueError(f"need at least 2 pairs, got {len(pairs)}")
    missing = sorted({w for p in pairs for w in p if w not in index})
    if missing:
        raise ValueError(f"words not in the vocabulary: {missing[:8]}")
    return np.array([index[a] for a, _ in pairs]), np.array([index[b] for _, b in pairs])


@_one_thread
def offset_parallelism(vectors: Any, vocab: Sequence[str], pairs: Sequence[tuple[str, str]],
                       seed: int = 0) -> tuple[float, float]:
    """Are the offsets ``E[b] - E[a]`` of related pairs parallel? Returns ``(matched, mismatched)``.

    ``matched``: the mean cosine similarity between the offsets of every two pairs (``man -> woman`` and
    ``king -> queen``); 1 = all parallel, 0 = unrelated directions. ``mismatched``: the same after
    pairing each ``a`` with another pair's ``b`` (a random derangement, seeded), which keeps the two
    sides (all singulars, all plurals) but breaks the word-to-word match: what the sides alone give.
    """
    E = _matrix(vectors, "vectors")
    a, b = _pair_rows(vocab, pairs)
    if E.shape[0] != len(vocab):
        raise ValueError(f"vectors has {E.shape[0]} rows but vocab has {len(vocab)} tokens")

    def mean_cos(offsets: np.ndarray) -> float:
        u = _normalise(offsets)
        c = u @ u.T
        return float(c[np.triu_indices(len(u), 1)].mean())

    rng = np.random.default_rng(checks.seed_of(seed))
    n = len(a)
    perm = rng.permutation(n)
    while np.any(perm == np.arange(n)):  # a derangement: nobody keeps its own partner
        perm = rng.permutation(n)
    return mean_cos(E[b] - E[a]), mean_cos(E[b[perm]] - E[a])


def analogy_questions(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    """Every question ``(a, b, c, d)`` meaning "a is to b as c is to d" from two different pairs."""
    pairs = list(pairs)
    return [(a, b, c, d) for i, (a, b) in enumerate(pairs) for j, (c, d) in enumerate(pairs) if i != j]


ANALOGY_METHODS = ("offset", "nearest_c")


@_one_thread
def analogy_accuracy(vectors: Any, vocab: Sequence[str], questions: Sequence[tuple[str, str, str, str]], *,
                     method: str = "offset", exclude_inputs: bool = True,
                     candidates: Sequence[str] | None = None, return_answers: bool = False):
    """The fraction of analogy questions answered right.

    ``method="offset"``: the answer is the word whose vector is most cosine-similar to
    ``E[b] - E[a] + E[c]`` (the "vector arithmetic" of Mikolov et al.); ``"nearest_c"``: the nearest
    neighbour of ``c`` alone, ignoring ``a`` and ``b`` (a baseline). ``exclude_inputs`` leaves ``a``,
    ``b`` and ``c`` out of the possible answers, as the usual evaluation does. ``candidates`` limits the
    answers to these words (default: the whole ``vocab``). With ``return_answers`` also returns the list
    of answers given.
    """
    E = _matrix(vectors, "vectors")
    if E.shape[0] != len(vocab):
        raise ValueError(f"vectors has {E.shape[0]} rows but vocab has {len(vocab)} tokens")
    if method not in ANALOGY_METHODS:
        raise ValueError(f"method must be one of {ANALOGY_METHODS}, got {method!r}")
    if not isinstance(exclude_inputs, bool):
        raise TypeError(f"exclude_inputs must be True or False, got {exclude_inputs!r}")
    questions = list(questions)
    if not questions or any(len(q) != 4 for q in questions):
        raise ValueError("questions must be a non-empty list of (a, b, c, d) tuples; see analogy_questions(pairs)")
    index = _index(vocab)
    missing = sorted({w for q in questions for w in q if w not in index})
    if missing:
        raise ValueError(f"words not in the vocabulary: {missing[:8]}")
    allowed = np.zeros(len(vocab), dtype=bool)
    if candidates is None:
        allowed[:] = True
    else:
        for w in candidates:
            if w not in index:
                raise ValueError(f"candidate {w!r} is not in the vocabulary")
            allowed[index[w]] = True
    E = E.astype(np.float32)  # plenty for ranking, and twice as fast on a large vocabulary
    En = _normalise(E)
    q = np.array([[index[w] for w in qu] for qu in questions])
    targets = E[q[:, 1]] - E[q[:, 0]] + E[q[:, 2]] if method == "offset" else E[q[:, 2]]
    scores = _normalise(targets) @ En.T  # (questions, vocab)
    scores[:, ~allowed] = -np.inf
    if exclude_inputs:
        rows = np.arange(len(q))
        for col in range(3):
            scores[rows, q[:, col]] = -np.inf
    best = scores.argmax(axis=1)
    answers = [vocab[i] for i in best]
    acc = float(np.mean([ans == qu[3] for ans, qu in zip(answers, questions)]))
    return (acc, answers) if return_answers else acc


def random_analogy_baseline(n_candidates: int, exclude_inputs: bool = True) -> float:
    """The accuracy of answering each analogy with a word drawn uniformly from ``n_candidates``
    (three fewer when the query words are left out)."""
    n = _positive_int(n_candidates, "n_candidates") - (3 if exclude_inputs else 0)
    if n < 1:
        raise ValueError(f"n_candidates must exceed 3 when the inputs are excluded, got {n_candidates}")
    return 1.0 / n


# --- context: separation and the senses of "bat" ---------------------------------------------------

@_one_thread
def separation_score(vectors: Any, labels: Any) -> float:
    """How well ``labels`` separate ``vectors`` ``(n, d)``: the silhouette score on cosine distance.

    For each vector: ``(b - a) / max(a, b)`` with ``a`` its mean distance to its own group and ``b`` to
    the nearest other group, averaged. 1 = tight, far-apart groups; 0 = groups overlap; negative =
    vectors sit closer to another group than to their own. Identical vectors score 0.
    """
    from sklearn.metrics import silhouette_score

    x = _matrix(vectors, "vectors")
    labs = _labels(labels, len(x))
    if len(set(labs.tolist())) < 2:
        raise ValueError("labels must contain at least two different values")
    if np.allclose(x, x[0]):
        return 0.0
    return float(silhouette_score(x, labs.astype(str), metric="cosine"))


def separation_by_layer(vectors: Any, labels: Any) -> list[float]:
    """:func:`separation_score` at every layer of ``vectors`` ``(layers, n, d)``."""
    arr = np.asarray(vectors.vectors if isinstance(vectors, Activations) else vectors, dtype=float)
    if arr.ndim != 3:
        raise ValueError(f"vectors must be (layers, n, d), got shape {arr.shape}")
    return [separation_score(layer, labels) for layer in arr]


#: Unambiguous words of the two classes *bat* belongs to (singular, plural), used to ask the grammar
#: which sense a context allows.
SENSE_STAND_INS = {"animal": ("crow", "crows"), "tool": ("stick", "sticks")}


def senses_allowed(lang: Any, tokens: Sequence[str], position: int, left_only: bool = False) -> set[str]:
    """Which senses of *bat* the toy grammar allows at ``tokens[position]`` (``"bat"`` or ``"bats"``).

    The word is replaced by a flyer (``crow``) and by a tool (``stick``): a sense is allowed if the
    grammar can produce the result. With ``left_only`` only the words before ``position`` count (what
    a causal model has seen there); otherwise the whole sentence (what a masked model sees).
    """
    tokens = list(tokens)
    if not 0 <= position < len(tokens) or tokens[position] not in ("bat", "bats"):
        raise ValueError(f"tokens[{position}] must be 'bat' or 'bats', got "
                         f"{tokens[position] if 0 <= position < len(tokens) else 'out of range'!r}")
    plural = tokens[position] == "bats"
    allowed = set()
    for sense, words in SENSE_STAND_INS.items():
        stand_in = words[int(plural)]
        if left_only:
            dist = lang.next_token_distribution(tokens[:position])
            ok = dist.get(stand_in, 0.0) > 0
        else:
            try:
                ok = np.isfinite(lang.sentence_logprob(tokens[:position] + [stand_in] + tokens[position + 1:]))
            except ValueError:
                ok = False
        if ok:
            allowed.add(sense)
    return allowed


# --- probes ----------------------------------------------------------------------------------------

def split_by_sentence(acts: Activations, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks ``(train, test)`` over the tokens of ``acts`` that keep each sentence on one side,
    so a probe is never scored on a sentence it was trained on."""
    if not isinstance(acts, Activations):
        raise TypeError(f"acts must be an Activations (from collect_activations), got {type(acts).__name__}")
    checks.check_real(test_fraction, "test_fraction", 0, 1, low_open=True, high_open=True)
    ids = np.unique(acts.sentence)
    rng = np.random.default_rng(checks.seed_of(seed))
    test_ids = rng.choice(ids, size=max(1, int(round(test_fraction * len(ids)))), replace=False)
    test = np.isin(acts.sentence, test_ids)
    return ~test, test


def control_labels(labels: Any, words: Sequence[str] | None = None, seed: int = 0) -> np.ndarray:
    """Random labels of the same shape and distribution, for a control task.

    With ``words`` (one per label): Hewitt & Liang's control task. Each word *type* gets one label drawn
    from the labels' empirical distribution, and every token of that word carries it, so a probe can
    only succeed by memorising words, not by reading the property. Without ``words``: the labels
    shuffled across tokens (nothing to learn at all).
    """
    labs = np.asarray(list(labels), dtype=object)
    rng = np.random.default_rng(checks.seed_of(seed))
    if words is None:
        return labs[rng.permutation(len(labs))]
    words = list(words)
    if len(words) != len(labs):
        raise ValueError(f"words has {len(words)} entries but labels has {len(labs)}")
    values, counts = np.unique(labs.astype(str), return_counts=True)
    originals = {str(v): v for v in labs}
    types = sorted(set(words))
    drawn = rng.choice(values, size=len(types), p=counts / counts.sum())
    by_type = {w: originals[str(d)] for w, d in zip(types, drawn)}
    return np.asarray([by_type[w] for w in words], dtype=object)


@_one_thread
def probe_accuracy(X_train: Any, y_train: Any, X_test: Any, y_test: Any, C: float = 1.0) -> float:
    """Train a linear probe (standardised features, logistic regression) on the training split and
    return its accuracy on the test split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xtr, xte = _matrix(X_train, "X_train"), _matrix(X_test, "X_test")
    ytr, yte = _labels(y_train, len(xtr), "y_train").astype(str), _labels(y_test, len(xte), "y_test").astype(str)
    if xtr.shape[1] != xte.shape[1]:
        raise ValueError(f"X_train has {xtr.shape[1]} features but X_test has {xte.shape[1]}")
    if len(set(ytr.tolist())) < 2:
        raise ValueError("the training labels contain one class only: there is nothing to learn")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    probe.fit(xtr, ytr)
    return float(probe.score(xte, yte))


def probe_layers(acts: Activations, labels: Any, train: Any, test: Any, C: float = 1.0) -> list[float]:
    """:func:`probe_accuracy` at every layer of ``acts`` (train on ``train``, score on ``test``, boolean
    masks ``(n,)``): one test accuracy per layer."""
    if not isinstance(acts, Activations):
        raise TypeError(f"acts must be an Activations (from collect_activations), got {type(acts).__name__}")
    labs = _labels(labels, len(acts))
    train, test = np.asarray(train, dtype=bool), np.asarray(test, dtype=bool)
    if train.shape != (len(acts),) or test.shape != (len(acts),):
        raise ValueError(f"train and test must be bool masks of shape ({len(acts)},)")
    if np.any(train & test):
        raise ValueError("train and test overlap: a probe must be scored on tokens it was not trained on")
    return [probe_accuracy(v[train], labs[train], v[test], labs[test], C=C) for v in acts.vectors]


# --- counting instead of training ------------------------------------------------------------------

@_one_thread
def cooccurrence_embeddings(sentences: Sequence[Sequence[str]], vocab: Sequence[str], window: int = 2,
                            dims: int = 32) -> np.ndarray:
    """Word vectors from counting alone: ``(vocab, dims)``.

    Counts how often each context word appears within ``window`` words to the left or right (left and
    right counted as different contexts), turns the counts into positive pointwise mutual information
    ``max(0, log p(w, c) / (p(w) p(c)))``, and keeps the ``dims`` leading directions of its SVD. Words
    that never occur get zero vectors.
    """
    window, dims = _positive_int(window, "window"), _positive_int(dims, "dims")
    index = _index(vocab)
    V = len(vocab)
    ids, sent = [], []
    for s_i, words in enumerate(sentences):
        if isinstance(words, str):
            raise TypeError("sentences must be lists of words (lang.sentences(n, seed)), not strings")
        ids.extend(index.get(w, -1) for w in words)
        sent.extend([s_i] * len(words))
    ids, sent = np.asarray(ids, dtype=int), np.asarray(sent, dtype=int)
    counts = np.zeros((V, 2 * window * V))
    for off in range(1, window + 1):
        ok = (sent[:-off] == sent[off:]) & (ids[:-off] >= 0) & (ids[off:] >= 0)
        left_word, right_word = ids[:-off][ok], ids[off:][ok]
        # the right word sees the left one at distance -off (slot 2(off-1)); the left sees the right at +off
        np.add.at(counts, (right_word, (2 * (off - 1)) * V + left_word), 1)
        np.add.at(counts, (left_word, (2 * (off - 1) + 1) * V + right_word), 1)
    total = counts.sum()
    if total == 0:
        raise ValueError("no word of vocab occurs in sentences")
    pw, pc = counts.sum(1, keepdims=True) / total, counts.sum(0, keepdims=True) / total
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log((counts / total) / (pw * pc))
    ppmi = np.where(np.isfinite(pmi) & (pmi > 0), pmi, 0.0)
    u, s, _ = np.linalg.svd(ppmi, full_matrices=False)
    k = min(dims, len(s))
    return u[:, :k] * s[:k]


# --- figures ---------------------------------------------------------------------------------------

def offsets_figure(vectors: Any, vocab: Sequence[str], pairs: Sequence[tuple[str, str]], *,
                   names: tuple[str, str] = ("a", "b"), title: str | None = None) -> go.Figure:
    """The words of ``pairs`` after a 2-D PCA of their vectors, each pair joined by an arrow from ``a``
    to ``b``: parallel arrows of equal length are what "offsets encode a relation" looks like.

    ``names`` label the two sides in the legend (e.g. ``("singular", "plural")``). The PCA is fitted on
    the words of the pairs only.
    """
    E = _matrix(vectors, "vectors")
    a, b = _pair_rows(vocab, pairs)
    if E.shape[0] != len(vocab):
        raise ValueError(f"vectors has {E.shape[0]} rows but vocab has {len(vocab)} tokens")
    rows = np.concatenate([a, b])
    pts, axes = viz.project(E[rows], "pca", 2)
    pa, pb = pts[:len(a)], pts[len(a):]
    fig = go.Figure()
    for (x0, y0), (x1, y1) in zip(pa, pb):
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y", showarrow=True,
                           arrowhead=2, arrowsize=1, arrowwidth=1.2, arrowcolor="#9aa1ab", text="")
    for side, p, idx, color, symbol in ((names[0], pa, a, viz.COLORWAY[0], "circle"),
                                        (names[1], pb, b, viz.COLORWAY[1], "diamond")):
        toks = [vocab[i] for i in idx]
        fig.add_trace(go.Scatter(
            x=p[:, 0], y=p[:, 1], mode="markers+text", name=side, text=toks, textposition="top center",
            textfont=dict(size=11), marker=dict(size=9, color=color, symbol=symbol),
            customdata=toks, hovertemplate=f"<b>%{{customdata}}</b> ({side})<extra></extra>"))
    u = _normalise(E[b] - E[a])
    mean_cos = float((u @ u.T)[np.triu_indices(len(u), 1)].mean())
    alt = (f"Scatter of {len(pairs)} word pairs after a 2-D PCA, {names[0]} and {names[1]} in two colours, each "
           f"pair joined by an arrow ({', '.join(f'{vocab[i]} to {vocab[j]}' for i, j in list(zip(a, b))[:4])}, ...). "
           f"The mean cosine similarity between the offsets in the full space is {mean_cos:.2f}.")
    return viz._finish(fig, alt, title if title is not None else f"Offsets from {names[0]} to {names[1]}",
                       height=540, legend=dict(title=dict(text="side")),
                       xaxis=dict(title=dict(text=axes[0]), zeroline=True),
                       yaxis=dict(title=dict(text=axes[1]), zeroline=True))


def layer_scores_figure(scores: dict[str, Sequence[float]], layer_names: Sequence[str], *,
                        y_title: str = "score", chance: float | None = None, chance_label: str = "chance",
                        dashed: Sequence[str] = (), y_range: tuple[float, float] | None = None,
                        title: str | None = None) -> go.Figure:
    """Lines of a score per layer, one line per entry of ``scores`` (e.g. probe accuracy and its
    control, or separation in two models), with an optional dashed ``chance`` line. Lines named in
    ``dashed`` (e.g. the control tasks) are drawn dashed."""
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {line name: one score per layer}")
    names = [str(n) for n in layer_names]
    unknown = sorted(set(dashed) - set(scores))
    if unknown:
        raise ValueError(f"dashed names lines that are not in scores: {unknown}")
    fig = go.Figure()
    for i, (name, values) in enumerate(scores.items()):
        vals = np.asarray(list(values), dtype=float)
        if vals.shape != (len(names),):
            raise ValueError(f"line {name!r} has {vals.size} values but there are {len(names)} layers")
        fig.add_trace(go.Scatter(
            x=list(range(len(names))), y=vals, name=str(name), mode="lines+markers",
            line=dict(color=viz.COLORWAY[i % len(viz.COLORWAY)], width=2.5, dash="dash" if name in dashed else "solid"),
            marker=dict(size=9, symbol=viz.SYMBOLS[i % len(viz.SYMBOLS)]), customdata=names,
            hovertemplate=f"{name}<br>layer %{{customdata}}<br>{y_title} %{{y:.3f}}<extra></extra>"))
    if chance is not None:
        fig.add_hline(y=float(chance), line=dict(color=viz.TEXT, dash="dash", width=1.2),
                      annotation=dict(text=f"{chance_label} {chance:.2f}"), annotation_position="bottom right")
    summary = "; ".join(f"{n}: " + ", ".join(f"{v:.2f}" for v in vals) for n, vals in scores.items())
    alt = (f"Line chart of {y_title} at each of {len(names)} layers ({names[0]} to {names[-1]}). {summary}"
           + (f". A dashed line marks {chance_label} at {chance:.2f}." if chance is not None else "."))
    yaxis = dict(title=dict(text=y_title))
    if y_range is not None:
        yaxis["range"] = list(y_range)
    return viz._finish(fig, alt, title if title is not None else f"{y_title} by layer",
                       height=460, margin=dict(b=120), showlegend=len(scores) > 1,
                       xaxis=dict(title=dict(text="layer"), tickmode="array", tickvals=list(range(len(names))),
                                  ticktext=names, showgrid=False),
                       yaxis=yaxis, legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.22, yanchor="top"))


# --- exercise checker ------------------------------------------------------------------------------

def _probe_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A probing task where train accuracy, test accuracy and their mix-ups all differ: 40 features,
    60 training vectors (few enough to fit perfectly) and 200 test vectors with noisy labels."""
    rng = np.random.default_rng(seed)
    d, n_train, n_test = 40, 60, 200
    w = rng.normal(size=d)
    X = rng.normal(size=(n_train + n_test, d))
    y = np.where(X @ w + rng.normal(scale=2.5, size=len(X)) > 0, "pl", "sg")
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _probe_ref(Xtr, ytr, Xte, yte, fit_on: str = "train", score_on: str = "test", flip: bool = False) -> float:
    from sklearn.linear_model import LogisticRegression

    fit_x, fit_y = {"train": (Xtr, ytr), "test": (Xte, yte),
                    "both": (np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]))}[fit_on]
    probe = LogisticRegression(max_iter=1000).fit(fit_x, fit_y)
    acc = probe.score(*((Xtr, ytr) if score_on == "train" else (Xte, yte)))
    return 1.0 - acc if flip else acc


from .exercises import check_probe  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

"""Looking inside transformers, and checking what we see (chapter 2).

Four tools, each with the grammar of the toy language (:mod:`lmlab.corpus`) as the truth to measure
against:

* **Heads that specialise.** :func:`encode` (our models) and :func:`encode_hf` (Hugging Face models)
  turn sentences into model inputs and remember where each word sits; :func:`agreement_sites` and
  :func:`previous_token_sites` list what a head *should* attend to; :func:`head_accuracy` scores every
  head; :func:`find_head` picks a head on one split of sentences and scores it on another, against every
  other head and the best position-only rule (:class:`PositionRule`).
* **Attention is not importance.** :func:`head_ablation_effects` (switch a head off) and
  :func:`compare_attributions` (attention weight, ablating one input word, gradient x input, for the
  same prediction) measure how often the three accounts of "which word mattered" agree.
* **Rank collapse** (Dong et al., 2021): :func:`rank_residual` and :func:`rank_collapse` stack random
  attention layers with and without skip connections and MLPs.
* **Feed-forward layers as memories** (Geva et al., 2022): :func:`ffn_values`,
  :func:`project_to_vocab`, :func:`promoted_tokens`, :func:`label_purity`.

Figures (plotly, house template, text alternative): :func:`head_scores_figure`,
:func:`attribution_figure`, :func:`curves`, :func:`promoted_tokens_table`; the architecture diagram is a
hand-drawn SVG (:func:`architecture_svg`). The exercise checker :func:`check_head_accuracy` follows
:mod:`lmlab.exercises`.

Positions: our word-level models read ``". the dog barks ."`` (a ``"."`` before the first word), so
word ``i`` of a sentence sits at position ``i + 1``; BERT-style models put ``[CLS]`` first, so the
same holds for them when every word is a single token.
"""
from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from . import checks, env, viz

__all__ = [
    "Encoded", "Site", "PositionRule", "HeadReport", "AttributionComparison",
    "encode", "encode_hf", "attention_patterns", "hf_attention_patterns",
    "agreement_sites", "previous_token_sites", "head_accuracy", "head_weight", "fit_position_rule",
    "rule_accuracy", "find_head",
    "number_pairs", "agreement_margins", "ablated_margins", "head_ablation_effects", "token_attributions", "compare_attributions",
    "rank_residual", "rank_collapse", "RANK_VARIANTS",
    "ffn_values", "project_to_vocab", "promoted_tokens", "neuron_activity", "neuron_contributions", "label_purity", "random_purity",
    "head_scores_figure", "attribution_figure", "curves", "bars", "promoted_tokens_table", "architecture_svg",
    "check_head_accuracy",
]


# --- inputs: sentences -> model positions ----------------------------------------------------------

@dataclass
class Encoded:
    """Sentences made ready for a model, with the position of every word.

    ``sentences``: the kept :class:`lmlab.corpus.Sentence` objects; ``tokens[s]``: the model's input
    tokens for sentence ``s`` (``"."`` or ``[CLS]`` first); ``positions[s][i]``: where word ``i`` of
    sentence ``s`` sits in the model's input; ``ids``: ``(n, seq)`` token ids for our models (rows
    padded on the right with ``"."``, which a causal model never sees from earlier positions), ``None``
    for Hugging Face models; ``kept``: the index of each kept sentence in the list given.
    """

    sentences: list
    tokens: list[list[str]]
    positions: list[list[int]]
    ids: torch.Tensor | None = None
    kept: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sentences)

    @property
    def seq_len(self) -> int:
        return max(len(t) for t in self.tokens)

    def word_mask(self, skip: Sequence[str] = (".",)) -> np.ndarray:
        """``(n, seq)`` bool: True at the positions of the sentence's words, except words in ``skip``.

        Use it as ``key_mask`` to score heads on words only, ignoring the boundary tokens (the leading
        ``"."``, ``[CLS]``, ``[SEP]``, the final ``"."``) where many heads park attention they do not use.
        """
        mask = np.zeros((len(self), self.seq_len), dtype=bool)
        for s, (sent, pos) in enumerate(zip(self.sentences, self.positions)):
            for word, p in zip(sent.tokens, pos):
                if word not in skip:
                    mask[s, p] = True
        return mask


def _sentences(sentences: Any) -> list:
    if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
        raise TypeError(f"sentences must be a list of Sentence objects (lang.sample(n, seed)), got "
                        f"{type(sentences).__name__}")
    if not sentences:
        raise ValueError("sentences is empty: pass at least one Sentence (lang.sample(n, seed))")
    for s in sentences:
        if not (hasattr(s, "tokens") and hasattr(s, "tags") and hasattr(s, "heads")):
            raise TypeError(f"each sentence must be a Sentence from lang.sample(n, seed), got {type(s).__name__}; "
                            "lang.sentences() gives plain word lists without the grammar's annotations")
    return list(sentences)


def encode(sentences: Sequence, tokenizer: Any, max_len: int | None = None, prefix: str = ".") -> Encoded:
    """Sentences -> ``Encoded`` for our word-level models: ``prefix`` (the previous sentence's ``"."``)
    then the words. Sentences longer than ``max_len`` tokens (prefix included) are left out (see ``kept``).
    """
    sentences = _sentences(sentences)
    if max_len is not None and (not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 2):
        raise ValueError(f"max_len must be an int >= 2 (the model's context_length), got {max_len!r}")
    pad = tokenizer.token_to_id(prefix)
    rows, kept, tokens, positions, sents = [], [], [], [], []
    for i, s in enumerate(sentences):
        toks = [prefix] + list(s.tokens)
        if max_len is not None and len(toks) > max_len:
            continue
        rows.append([tokenizer.token_to_id(t) for t in toks])
        kept.append(i)
        tokens.append(toks)
        positions.append(list(range(1, len(toks))))
        sents.append(s)
    if not rows:
        raise ValueError(f"no sentence fits in max_len={max_len} tokens")
    ids = torch.full((len(rows), max(map(len, rows))), pad, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, :len(row)] = torch.tensor(row)
    return Encoded(sents, tokens, positions, ids, kept)


def encode_hf(sentences: Sequence, tokenizer: Any) -> Encoded:
    """Sentences -> ``Encoded`` for a Hugging Face model with a fast tokenizer.

    Keeps the sentences whose every word is a single token (so a word's position is unambiguous);
    ``positions`` come from the tokenizer's ``word_ids()`` (``[CLS]`` first for BERT-style models).
    """
    sentences = _sentences(sentences)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("encode_hf needs a fast Hugging Face tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))")
    kept, tokens, positions, sents = [], [], [], []
    for i, s in enumerate(sentences):
        enc = tokenizer(" ".join(s.tokens))
        word_ids = enc.word_ids()
        where: dict[int, list[int]] = {}
        for p, w in enumerate(word_ids):
            if w is not None:
                where.setdefault(w, []).append(p)
        if sorted(where) != list(range(len(s.tokens))) or any(len(v) != 1 for v in where.values()):
            continue
        kept.append(i)
        tokens.append(tokenizer.convert_ids_to_tokens(enc["input_ids"]))
        positions.append([where[w][0] for w in range(len(s.tokens))])
        sents.append(s)
    if not sents:
        raise ValueError("no sentence has only single-token words for this tokenizer")
    return Encoded(sents, tokens, positions, None, kept)


def _no_grad_eval(model):
    was = model.training
    model.eval()
    return was


def attention_patterns(model: Any, encoded: Encoded, batch_size: int = 256) -> np.ndarray:
    """Attention patterns of one of our Transformers: ``(n, layers, heads, seq, seq)`` (float32)."""
    if encoded.ids is None:
        raise ValueError("these sentences were encoded for a Hugging Face model: use hf_attention_patterns")
    was = _no_grad_eval(model)
    out = []
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                _, cache = model.run_with_cache(env.to_model_device(model, encoded.ids[start:start + batch_size]),
                                                names=[f"blocks.{l}.attn.pattern" for l in range(model.config.n_layer)])
                out.append(torch.stack([cache[f"blocks.{l}.attn.pattern"] for l in range(model.config.n_layer)], 1))
    finally:
        model.train(was)
    return torch.cat(out).float().cpu().numpy()


def hf_attention_patterns(model: Any, tokenizer: Any, encoded: Encoded, batch_size: int = 256) -> np.ndarray:
    """Attention patterns of a Hugging Face model (eager attention): ``(n, layers, heads, seq, seq)``.

    Rows are padded to the longest sentence; padding keys get (almost) zero weight.
    """
    from . import hub

    texts = [" ".join(s.tokens) for s in encoded.sentences]
    seq = encoded.seq_len
    chunks = []
    step = batch_size if getattr(tokenizer, "pad_token", None) is not None else 1
    for start in range(0, len(texts), step):
        _, cache = hub.run_with_cache(model, tokenizer, texts[start:start + step])
        n_layers = sum(1 for k in cache if k.endswith("attn.pattern"))
        pat = torch.stack([cache[f"blocks.{l}.attn.pattern"] for l in range(n_layers)], 1).float()
        padded = torch.zeros(pat.shape[0], pat.shape[1], pat.shape[2], seq, seq)
        t = min(seq, pat.shape[-1])
        padded[..., :t, :t] = pat[..., :t, :t]
        chunks.append(padded)
    return torch.cat(chunks).cpu().numpy()


# --- what a head should attend to ----------------------------------------------------------------

@dataclass(frozen=True)
class Site:
    """One place where the grammar says where to look: sentence ``sentence``, the query position
    ``query`` should attend to position ``target``. ``word`` is the word the site is about (the
    agreeing word, or the word at the query), ``role`` its grammatical role (main, src, orc, ...)."""

    sentence: int
    query: int
    target: int
    word: str
    kind: str
    role: str = ""

    @property
    def distance(self) -> int:
        return self.query - self.target


def agreement_sites(encoded: Encoded, query: str = "predict", kinds: Sequence[str] = ("VERB", "COP"),
                    min_distance: int = 0) -> list[Site]:
    """Agreement sites from the grammar: a verb (and, with ``kinds``, a pronoun ``PRON`` or possessive
    ``DET``) and the subject it agrees with.

    ``query="predict"``: the query is the position just before the agreeing word, the one whose output
    predicts it in a causal model (where the subject's number is needed). ``query="word"``: the query
    is the agreeing word itself (the natural choice for a BERT-style model). Only sites whose query is
    at least ``min_distance`` positions after the subject are kept.
    """
    if query not in ("predict", "word"):
        raise ValueError(f"query must be 'predict' or 'word', got {query!r}")
    allowed = ("VERB", "COP", "PRON", "DET")
    bad = [k for k in kinds if k not in allowed]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {allowed}, got {tuple(kinds)!r}")
    sites = []
    for s, (sent, pos) in enumerate(zip(encoded.sentences, encoded.positions)):
        for v, subj in sorted(sent.heads.items()):
            tag = sent.tags[v]
            if tag.pos not in kinds:
                continue
            q = pos[v] - 1 if query == "predict" else pos[v]
            if q - pos[subj] < min_distance:
                continue
            kind = "verb" if tag.pos in ("VERB", "COP") else "pronoun"
            sites.append(Site(s, q, pos[subj], sent.tokens[v], kind, tag.role))
    return sites


def previous_token_sites(encoded: Encoded) -> list[Site]:
    """Every word after the first, attending to the word before it."""
    return [Site(s, pos[i], pos[i - 1], sent.tokens[i], "previous")
            for s, (sent, pos) in enumerate(zip(encoded.sentences, encoded.positions)) for i in range(1, len(pos))]


def _check_patterns(patterns: Any) -> np.ndarray:
    arr = patterns.detach().cpu().numpy() if isinstance(patterns, torch.Tensor) else np.asarray(patterns)
    if arr.ndim != 5 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"patterns must be (sentences, layers, heads, seq, seq), got shape {tuple(arr.shape)}")
    return arr


def _check_sites(sites: Sequence[Site], patterns: np.ndarray) -> None:
    if not sites:
        raise ValueError("sites is empty: no position to score (check the sentences and the site filter)")
    n, seq = patterns.shape[0], patterns.shape[-1]
    for site in sites:
        if not (0 <= site.sentence < n and 0 <= site.query < seq and 0 <= site.target < seq):
            raise ValueError(f"{site} is outside patterns of {n} sentences and {seq} positions")


def _site_rows(patterns: np.ndarray, sites: Sequence[Site], key_mask: np.ndarray | None) -> np.ndarray:
    """The attention rows of every site ``(n_sites, layers, heads, seq)``, masked keys set to -1."""
    s = np.array([x.sentence for x in sites])
    q = np.array([x.query for x in sites])
    rows = patterns[s, :, :, q, :].astype(np.float64)
    if key_mask is not None:
        key_mask = np.asarray(key_mask, dtype=bool)
        if key_mask.shape != (patterns.shape[0], patterns.shape[-1]):
            raise ValueError(f"key_mask must be (sentences, seq) = {(patterns.shape[0], patterns.shape[-1])}, "
                             f"got {key_mask.shape}")
        rows = np.where(key_mask[s][:, None, None, :], rows, -1.0)
    return rows


def head_accuracy(patterns: Any, sites: Sequence[Site], key_mask: np.ndarray | None = None) -> np.ndarray:
    """For every head, the fraction of ``sites`` where the key it attends to most is the target.

    ``patterns``: ``(sentences, layers, heads, seq, seq)``; ``key_mask``: optional ``(sentences, seq)``
    bool, only True keys compete (e.g. ``encoded.word_mask()``). Returns ``(layers, heads)``.
    """
    arr = _check_patterns(patterns)
    _check_sites(sites, arr)
    rows = _site_rows(arr, sites, key_mask)
    target = np.array([x.target for x in sites])
    return (rows.argmax(-1) == target[:, None, None]).mean(0)


def head_weight(patterns: Any, sites: Sequence[Site]) -> np.ndarray:
    """For every head, the mean attention weight on the target: ``(layers, heads)``."""
    arr = _check_patterns(patterns)
    _check_sites(sites, arr)
    s = np.array([x.sentence for x in sites])
    q = np.array([x.query for x in sites])
    t = np.array([x.target for x in sites])
    return arr[s, :, :, q, t].mean(0)


@dataclass(frozen=True)
class PositionRule:
    """A rule that looks only at positions: ``"absolute"`` (always position ``value``) or
    ``"relative"`` (``value`` positions back from the query)."""

    kind: str
    value: int

    def __post_init__(self) -> None:
        if self.kind not in ("absolute", "relative"):
            raise ValueError(f"kind must be 'absolute' or 'relative', got {self.kind!r}")

    def predict(self, query: int) -> int:
        return self.value if self.kind == "absolute" else query - self.value

    def __str__(self) -> str:
        if self.kind == "absolute":
            return f"always position {self.value}"
        return "the query itself" if self.value == 0 else f"{self.value} position{'s' if self.value > 1 else ''} back"


def rule_accuracy(rule: PositionRule, sites: Sequence[Site]) -> float:
    """Fraction of ``sites`` whose target the rule names."""
    if not sites:
        raise ValueError("sites is empty")
    return float(np.mean([rule.predict(x.query) == x.target for x in sites]))


def fit_position_rule(sites: Sequence[Site], max_position: int = 32) -> PositionRule:
    """The best position-only rule on ``sites`` (every absolute position and every distance back up to
    ``max_position``; ties go to the earlier candidate)."""
    if not sites:
        raise ValueError("sites is empty")
    candidates = [PositionRule("absolute", p) for p in range(max_position)] + \
                 [PositionRule("relative", k) for k in range(max_position)]
    scores = [rule_accuracy(r, sites) for r in candidates]
    return candidates[int(np.argmax(scores))]


@dataclass
class HeadReport:
    """A head chosen on one split of sentences and scored on another.

    ``layer``, ``head``: the head with the best accuracy on the selection split. ``test_accuracy``
    ``(layers, heads)``: every head on the test split; ``chosen_test``: the chosen head's;
    ``best_other_test``: the best of the other heads; ``rule`` (fitted on the selection split) and
    ``rule_test``: the position-only baseline on the test split.
    """

    layer: int
    head: int
    select_accuracy: np.ndarray
    test_accuracy: np.ndarray
    rule: PositionRule
    rule_test: float
    n_select: int
    n_test: int

    @property
    def chosen_test(self) -> float:
        return float(self.test_accuracy[self.layer, self.head])

    @property
    def best_other_test(self) -> float:
        others = self.test_accuracy.copy()
        others[self.layer, self.head] = -np.inf
        return float(others.max()) if others.size > 1 else float("nan")

    @property
    def name(self) -> str:
        return f"L{self.layer}H{self.head}"

    def __repr__(self) -> str:
        return (f"HeadReport: head {self.name}, chosen on {self.n_select} selection sites; on {self.n_test} "
                f"held-out sites:\n"
                f"  {self.name:<16} {self.chosen_test:.3f}\n"
                f"  best other head  {self.best_other_test:.3f}\n"
                f"  position rule    {self.rule_test:.3f}  ({self.rule})")


def find_head(select: tuple[Any, Sequence[Site]], test: tuple[Any, Sequence[Site]],
              select_mask: np.ndarray | None = None, test_mask: np.ndarray | None = None) -> HeadReport:
    """Choose the head on ``select = (patterns, sites)`` and score everything on ``test``.

    The position-only baseline is fitted on the selection sites too, so head and baseline are chosen
    with the same information and judged on the same held-out sites.
    """
    (p_sel, s_sel), (p_test, s_test) = select, test
    acc_sel = head_accuracy(p_sel, s_sel, select_mask)
    acc_test = head_accuracy(p_test, s_test, test_mask)
    layer, head = (int(i) for i in np.unravel_index(int(np.argmax(acc_sel)), acc_sel.shape))
    rule = fit_position_rule(s_sel, max_position=_check_patterns(p_sel).shape[-1])
    return HeadReport(layer, head, acc_sel, acc_test, rule, rule_accuracy(rule, s_test), len(s_sel), len(s_test))


# --- attention, ablation, gradients: the same prediction three ways ------------------------------

def number_pairs() -> dict[str, str]:
    """Each verb form of the toy language -> the same verb in the other number (``barks`` <-> ``bark``,
    ``is`` <-> ``are``)."""
    from .corpus import VERBS

    pairs = {"is": "are", "are": "is"}
    for sg, pl, *_ in VERBS:
        pairs[sg], pairs[pl] = pl, sg
    return pairs


def _verb_sites(sites: Sequence[Site], encoded: Encoded) -> list[Site]:
    pairs = number_pairs()
    out = []
    for x in sites:
        toks = encoded.tokens[x.sentence]
        if x.query + 1 >= len(toks) or toks[x.query + 1] != x.word or x.word not in pairs:
            raise ValueError(f"{x} is not a 'predict' site of a verb: use agreement_sites(encoded, query='predict', "
                             "kinds=('VERB', 'COP'))")
        out.append(x)
    return out


def agreement_margins(logits: torch.Tensor, sites: Sequence[Site], tokenizer: Any,
                      rows: Sequence[int] | None = None) -> torch.Tensor:
    """``logit(correct verb form) - logit(the other number)`` at each site's query: ``(n_sites,)``.

    ``logits`` is ``(batch, seq, vocab)``; row ``rows[i]`` (default: ``sites[i].sentence``) holds site ``i``.
    Positive: the model prefers the form that agrees with the subject.
    """
    pairs = number_pairs()
    rows = [x.sentence for x in sites] if rows is None else list(rows)
    dev = logits.device  # the index tensors live where the logits do (a model on a GPU)
    r = torch.tensor(rows, device=dev)
    q = torch.tensor([x.query for x in sites], device=dev)
    good = torch.tensor([tokenizer.token_to_id(x.word) for x in sites], device=dev)
    bad = torch.tensor([tokenizer.token_to_id(pairs[x.word]) for x in sites], device=dev)
    at = logits[r, q]
    return at.gather(1, good[:, None])[:, 0] - at.gather(1, bad[:, None])[:, 0]


def ablated_margins(model: Any, encoded: Encoded, sites: Sequence[Site], tokenizer: Any,
                    heads: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """The agreement margin at ``sites`` (verb 'predict' sites) with the given heads switched off
    together (each head's output ``z`` set to zero at every position): ``(n_sites,)``.
    ``heads=()`` gives the intact model's margins."""
    sites = _verb_sites(sites, encoded)
    c = model.config
    by_layer: dict[int, list[int]] = {}
    for l, h in heads:
        if not (0 <= l < c.n_layer and 0 <= h < c.n_head):
            raise ValueError(f"head {(l, h)} is outside {c.n_layer} layers x {c.n_head} heads")
        by_layer.setdefault(int(l), []).append(int(h))

    def off(z, hs):
        z = z.clone()
        z[:, hs] = 0.0
        return z

    hooks = {f"blocks.{l}.attn.z": (lambda z, hs=hs: off(z, hs)) for l, hs in by_layer.items()}
    was = _no_grad_eval(model)
    try:
        with torch.no_grad():
            ids = env.to_model_device(model, encoded.ids)
            logits = model.run_with_hooks(ids, hooks) if hooks else model(ids)
    finally:
        model.train(was)
    return agreement_margins(logits, sites, tokenizer).cpu().numpy()


def head_ablation_effects(model: Any, encoded: Encoded, sites: Sequence[Site], tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """Switch off one head at a time and measure the agreement margin at ``sites``.

    Returns ``(base, effects)``: ``base (n_sites,)`` the margins with every head on, and
    ``effects (layers, heads, n_sites)`` the margin with that head off minus ``base`` (negative: the
    head was helping the verb agree).
    """
    c = model.config
    base = ablated_margins(model, encoded, sites, tokenizer)
    effects = np.zeros((c.n_layer, c.n_head, len(base)))
    for l in range(c.n_layer):
        for h in range(c.n_head):
            effects[l, h] = ablated_margins(model, encoded, sites, tokenizer, [(l, h)]) - base
    return base, effects


def token_attributions(model: Any, encoded: Encoded, sites: Sequence[Site], tokenizer: Any, layer: int, head: int,
                       chunk: int = 1024) -> list[dict[str, np.ndarray]]:
    """Three accounts of which earlier token mattered for each site's prediction (verb 'predict' sites).

    For site ``x`` and every position ``j <= x.query`` (the tokens the prediction can see):

    * ``attention``: the weight head ``(layer, head)`` puts on ``j`` from the query;
    * ``ablation``: how much the agreement margin drops when token ``j``'s embedding is set to zero
      (positive: the token supported the agreeing form);
    * ``gradient``: gradient x input, the margin's gradient with respect to token ``j``'s embedding
      dotted with that embedding (a first-order estimate of the same drop).

    Returns one dict per site with the three arrays ``(query + 1,)``, ``tokens`` and ``target``.
    """
    sites = _verb_sites(sites, encoded)
    c = model.config
    if not (0 <= layer < c.n_layer and 0 <= head < c.n_head):
        raise ValueError(f"(layer, head) must be in {c.n_layer} layers x {c.n_head} heads, got {(layer, head)}")
    rows = torch.tensor([x.sentence for x in sites])
    ids = env.to_model_device(model, encoded.ids[rows])
    was = _no_grad_eval(model)
    local = list(range(len(sites)))
    try:
        # attention and base margins
        with torch.no_grad():
            logits, cache = model.run_with_cache(ids, names=[f"blocks.{layer}.attn.pattern"])
            pattern = cache[f"blocks.{layer}.attn.pattern"][:, head]
            base = agreement_margins(logits, sites, tokenizer, rows=local)
        # gradient x input
        leaf: list[torch.Tensor] = []

        def grab(x):
            x = x.detach().requires_grad_(True)
            leaf.append(x)
            return x

        with torch.enable_grad():
            logits = model.run_with_hooks(ids, {"embed": grab})
            margins = agreement_margins(logits, sites, tokenizer, rows=local)
            (grad,) = torch.autograd.grad(margins.sum(), leaf[0])
        gxi = (grad * leaf[0].detach()).sum(-1)
        # ablation: one row per (site, position), that position's token embedding zeroed
        pairs = [(i, j) for i, x in enumerate(sites) for j in range(x.query + 1)]
        drops = torch.zeros(len(pairs), device=base.device)
        with torch.no_grad():
            for start in range(0, len(pairs), chunk):
                part = pairs[start:start + chunk]
                which = torch.tensor([i for i, _ in part])
                pos = torch.tensor([j for _, j in part])

                def zero(x, pos=pos):
                    x = x.clone()
                    x[torch.arange(len(pos)), pos] = 0.0
                    return x

                out = model.run_with_hooks(ids[which], {"embed": zero})
                m = agreement_margins(out, [sites[i] for i in which.tolist()], tokenizer, rows=list(range(len(part))))
                drops[start:start + len(part)] = base[which] - m
    finally:
        model.train(was)
    results, k = [], 0
    for i, x in enumerate(sites):
        n = x.query + 1
        results.append({
            "tokens": encoded.tokens[x.sentence][:n], "target": x.target, "query": x.query, "word": x.word,
            "attention": pattern[i, x.query, :n].cpu().numpy().astype(np.float64),
            "ablation": drops[k:k + n].cpu().numpy().astype(np.float64),
            "gradient": gxi[i, :n].cpu().numpy().astype(np.float64),
            "margin": float(base[i]),
        })
        k += n
    return results


METHODS = ("attention", "ablation", "gradient")


@dataclass
class AttributionComparison:
    """How often attention, ablation and gradient x input agree on which token mattered most.

    ``top[method]``: the position each method ranks first, per site ``(n_sites,)``;
    ``on_target[method]``: the fraction of sites where that position is the subject;
    ``disagree[(a, b)]``: the fraction of sites where methods ``a`` and ``b`` pick different tokens;
    ``any_disagree``: the fraction where not all three agree; ``rank_corr[(a, b)]``: the mean Spearman
    correlation of the two methods' scores over each site's positions.
    """

    n_sites: int
    top: dict[str, np.ndarray]
    on_target: dict[str, float]
    disagree: dict[tuple[str, str], float]
    any_disagree: float
    rank_corr: dict[tuple[str, str], float]
    exclude: tuple[int, ...]

    def examples(self, a: str, b: str) -> np.ndarray:
        """Indices of the sites where methods ``a`` and ``b`` disagree."""
        return np.nonzero(self.top[a] != self.top[b])[0]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def compare_attributions(results: Sequence[dict], exclude: Sequence[int] = ()) -> AttributionComparison:
    """Summarise :func:`token_attributions` over its sites. Positions in ``exclude`` (e.g. ``(0,)``, the
    leading ``"."``) are left out of every ranking."""
    if not results:
        raise ValueError("results is empty: pass the output of token_attributions")
    excl = tuple(int(e) for e in exclude)
    tops = {m: [] for m in METHODS}
    corr = {(a, b): [] for i, a in enumerate(METHODS) for b in METHODS[i + 1:]}
    for r in results:
        keep = np.array([j for j in range(len(r["tokens"])) if j not in excl])
        if len(keep) == 0:
            raise ValueError(f"every position of a site is excluded by {excl}")
        for m in METHODS:
            tops[m].append(int(keep[int(np.argmax(r[m][keep]))]))
        for a, b in corr:
            corr[(a, b)].append(_spearman(r[a][keep], r[b][keep]))
    top = {m: np.array(v) for m, v in tops.items()}
    target = np.array([r["target"] for r in results])
    on_target = {m: float((top[m] == target).mean()) for m in METHODS}
    disagree = {(a, b): float((top[a] != top[b]).mean()) for a, b in corr}
    any_dis = float(((top["attention"] != top["ablation"]) | (top["attention"] != top["gradient"])
                     | (top["ablation"] != top["gradient"])).mean())
    rank_corr = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in corr.items()}
    return AttributionComparison(len(results), top, on_target, disagree, any_dis, rank_corr, excl)


# --- rank collapse (Dong et al., 2021) -------------------------------------------------------------

RANK_VARIANTS = ("attention only", "attention + MLP", "attention + skip", "attention + skip + MLP")


def rank_residual(x: Any) -> np.ndarray | float:
    """How far token representations are from all being the same, relative to their size.

    ``x`` is ``(..., tokens, d)``; returns ``||X - 1 xbar^T||_F / ||X||_F`` over the last two axes,
    where ``1 xbar^T`` (every row the mean row) is the nearest matrix with identical rows, a rank-1
    matrix (Dong et al., 2021 measure the same residual with another norm). 0 means collapse: every
    token carries the same vector.
    """
    t = torch.as_tensor(x, dtype=torch.float64)
    if t.ndim < 2:
        raise ValueError(f"x must be (..., tokens, d), got shape {tuple(t.shape)}")
    res = t - t.mean(dim=-2, keepdim=True)
    out = res.flatten(-2).norm(dim=-1) / t.flatten(-2).norm(dim=-1).clamp_min(1e-300)
    out = out.cpu().numpy()
    return float(out) if out.ndim == 0 else out


def rank_collapse(depth: int = 10, n_tokens: int = 16, d_model: int = 32, seeds: Sequence[int] = range(5),
                  variants: Sequence[str] = RANK_VARIANTS, qk_scale: float = 1.0) -> dict[str, np.ndarray]:
    """Push random inputs through ``depth`` random single-head self-attention layers and record
    :func:`rank_residual` after each: ``{variant: (len(seeds), depth + 1)}`` (column 0 is the input).

    Variants: ``"attention only"`` ``X <- SA(X)``; ``"attention + MLP"`` ``X <- MLP(SA(X))``;
    ``"attention + skip"`` ``X <- X + SA(X)``; ``"attention + skip + MLP"`` ``X <- X + SA(X)`` then
    ``X <- X + MLP(X)``. ``SA(X) = softmax(X W_Q (X W_K)^T / sqrt(d)) X W_V`` with Gaussian weights of
    variance ``1/d`` (``qk_scale`` multiplies ``W_Q`` and ``W_K``); the MLP is ``ReLU(X W_1) W_2`` with
    ``W_1`` of variance ``2/d`` and ``W_2`` of variance ``1/(4d)``, hidden width ``4d``. Float64, so very
    small residuals stay visible (they stop near 1e-16 relative to the mean row).
    """
    for name, value in (("depth", depth), ("n_tokens", n_tokens), ("d_model", d_model)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    bad = [v for v in variants if v not in RANK_VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad}; allowed: {RANK_VARIANTS}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    d = d_model
    out = {v: np.zeros((len(seeds), depth + 1)) for v in variants}
    for si, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(checks.seed_of(seed, f"seeds[{si}]"))
        x0 = torch.randn(n_tokens, d, generator=g, dtype=torch.float64)
        layers = []
        for _ in range(depth):
            w = [torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) for _ in range(3)]
            w1 = torch.randn(d, 4 * d, generator=g, dtype=torch.float64) * math.sqrt(2 / d)
            w2 = torch.randn(4 * d, d, generator=g, dtype=torch.float64) / math.sqrt(4 * d)
            layers.append((w[0] * qk_scale, w[1] * qk_scale, w[2], w1, w2))
        for v in variants:
            x = x0.clone()
            out[v][si, 0] = rank_residual(x)
            for l, (wq, wk, wv, w1, w2) in enumerate(layers):
                sa = torch.softmax((x @ wq) @ (x @ wk).T / math.sqrt(d), dim=-1) @ (x @ wv)
                mlp = lambda h: torch.relu(h @ w1) @ w2  # noqa: E731
                if v == "attention only":
                    x = sa
                elif v == "attention + MLP":
                    x = mlp(sa)
                elif v == "attention + skip":
                    x = x + sa
                else:
                    x = x + sa
                    x = x + mlp(x)
                out[v][si, l + 1] = rank_residual(x)
    return out


# --- feed-forward layers as key-value memories (Geva et al., 2022) -------------------------------

def ffn_values(model: Any, layer: int) -> torch.Tensor:
    """The value vectors of a layer's feed-forward network: ``(d_ff, d_model)``.

    The layer computes ``sum_i act_i(x) v_i``: neuron ``i``'s activation (how well ``x`` matches its
    key, a row of the first matrix) times its value vector ``v_i`` (a column of the second matrix).
    """
    c = model.config
    if not isinstance(layer, int) or not 0 <= layer < c.n_layer:
        raise ValueError(f"layer must be an int in 0..{c.n_layer - 1}, got {layer!r}")
    mlp = model.blocks[layer].mlp
    if mlp is None:
        raise ValueError("this model has no feed-forward layers (attention_only=True)")
    return mlp.proj.weight.detach().T.clone()


def project_to_vocab(model: Any, vectors: torch.Tensor) -> torch.Tensor:
    """What each vector, added to the residual stream, does to the next-token logits: ``(n, vocab)``.

    ``vectors`` is ``(n, d_model)``. As Geva et al. (2022) we multiply by the output embedding; the
    final layer norm's centring and gain are applied (its scaling by the norm only changes the size,
    not the ranking of the tokens).
    """
    v = torch.as_tensor(vectors, dtype=torch.float32)
    if v.ndim != 2 or v.shape[1] != model.config.d_model:
        raise ValueError(f"vectors must be (n, d_model={model.config.d_model}), got shape {tuple(v.shape)}")
    ln = model.ln_f
    if isinstance(ln, torch.nn.LayerNorm):
        v = v - v.mean(-1, keepdim=True)
        if ln.weight is not None:
            v = v * ln.weight.detach()
    return v @ model.lm_head.weight.detach().T


def promoted_tokens(model: Any, vocab: Sequence[str], layer: int, neurons: Sequence[int], k: int = 8,
                    skip: Sequence[str] = ("<pad>", "<unk>", "<mask>", "<bos>", "<eos>")) -> list[list[str]]:
    """The ``k`` tokens each chosen neuron's value vector promotes most (special tokens left out)."""
    if len(vocab) != model.config.vocab_size:
        raise ValueError(f"vocab has {len(vocab)} tokens, the model {model.config.vocab_size}: pass tokenizer.vocab")
    values = ffn_values(model, layer)
    neurons = [int(n) for n in neurons]
    bad = [n for n in neurons if not 0 <= n < values.shape[0]]
    if bad:
        raise ValueError(f"neurons must be in 0..{values.shape[0] - 1}, got {bad}")
    scores = project_to_vocab(model, values[neurons])
    drop = torch.tensor([t in skip for t in vocab])
    scores[:, drop] = -float("inf")
    top = scores.topk(k, dim=-1).indices
    return [[vocab[i] for i in row] for row in top.tolist()]


def neuron_activity(model: Any, encoded: Encoded, layer: int) -> np.ndarray:
    """Mean activation of each feed-forward neuron of ``layer`` over the sentences' real positions
    (the leading ``"."`` and padding left out): ``(d_ff,)``."""
    if encoded.ids is None:
        raise ValueError("neuron_activity needs sentences encoded for our models (encode)")
    was = _no_grad_eval(model)
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(env.to_model_device(model, encoded.ids), names=[f"blocks.{layer}.mlp.hidden"])
    finally:
        model.train(was)
    hidden = cache[f"blocks.{layer}.mlp.hidden"]
    mask = torch.zeros(hidden.shape[:2], dtype=torch.bool)
    for s, pos in enumerate(encoded.positions):
        mask[s, pos] = True
    return hidden[mask].mean(0).cpu().numpy()


def neuron_contributions(model: Any, ids: Any, position: int, layer: int, good: int, bad: int) -> np.ndarray:
    """How much each feed-forward neuron of ``layer`` pushes token ``good`` over token ``bad`` at
    ``position`` of one sequence ``ids`` ``(seq,)``: activation x (logit effect of its value vector on
    ``good`` minus on ``bad``), ``(d_ff,)``. Positive: the neuron favours ``good``."""
    idx = torch.as_tensor(ids, dtype=torch.long)
    idx = idx[None] if idx.ndim == 1 else idx
    if idx.ndim != 2 or idx.shape[0] != 1:
        raise ValueError(f"ids must be one sequence (seq,), got shape {tuple(idx.shape)}")
    if not -idx.shape[1] <= position < idx.shape[1]:
        raise ValueError(f"position {position} is outside a sequence of {idx.shape[1]} tokens")
    was = _no_grad_eval(model)
    try:
        with torch.no_grad():
            _, cache = model.run_with_cache(env.to_model_device(model, idx), names=[f"blocks.{layer}.mlp.hidden"])
    finally:
        model.train(was)
    act = cache[f"blocks.{layer}.mlp.hidden"][0, position]
    effect = project_to_vocab(model, ffn_values(model, layer))
    return (act * (effect[:, good] - effect[:, bad])).cpu().numpy()


def label_purity(token_lists: Sequence[Sequence[str]], label: Callable[[str], str]) -> np.ndarray:
    """For each list of tokens, the share that carries its most common label: ``(n,)`` in ``(0, 1]``."""
    if not token_lists:
        raise ValueError("token_lists is empty")
    out = []
    for toks in token_lists:
        if not toks:
            raise ValueError("every token list must be non-empty")
        counts = Counter(label(t) for t in toks)
        out.append(counts.most_common(1)[0][1] / len(toks))
    return np.array(out)


def random_purity(vocab: Sequence[str], label: Callable[[str], str], k: int, n: int = 2000, seed: int = 0) -> np.ndarray:
    """:func:`label_purity` of ``n`` random sets of ``k`` tokens from ``vocab``: the chance level."""
    if not 1 <= k <= len(vocab):
        raise ValueError(f"k must be in 1..{len(vocab)}, got {k!r}")
    rng = np.random.default_rng(checks.seed_of(seed))
    vocab = list(vocab)
    return label_purity([[vocab[i] for i in rng.choice(len(vocab), size=k, replace=False)] for _ in range(n)], label)


# --- figures ---------------------------------------------------------------------------------------

_TOP_LEGEND = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom")


def _top_margin(names: Sequence[str], width: int = viz.WIDTH) -> int:
    """Room above the plot for the title and a horizontal legend of ``names`` (which may wrap)."""
    per_row = max(1, width - 120)
    used = sum(7 * len(str(n)) + 50 for n in names)
    return 84 + 24 * math.ceil(used / per_row)

def head_scores_figure(report: HeadReport, *, what: str = "points to the target", title: str | None = None) -> go.Figure:
    """Bars: every head's accuracy on the held-out sites, the chosen head highlighted, the position-only
    baseline as a dashed line."""
    acc = report.test_accuracy
    n_layers, n_heads = acc.shape
    if n_layers * n_heads > 24:
        return _head_scores_heatmap(report, what, title)
    names = [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]
    values = acc.reshape(-1)
    chosen = report.layer * n_heads + report.head
    colors = [viz.OKABE_ITO["orange"] if i == chosen else viz.OKABE_ITO["blue"] for i in range(len(names))]
    fig = go.Figure(go.Bar(
        x=names, y=values, marker_color=colors, customdata=report.select_accuracy.reshape(-1),
        name=f"each head (chosen: {report.name})",
        hovertemplate="head %{x}<br>held-out accuracy %{y:.3f}<br>selection split %{customdata:.3f}<extra></extra>"))
    fig.add_trace(go.Scatter(
        x=[names[0], names[-1]], y=[report.rule_test] * 2, mode="lines",
        name=f"position-only rule ({report.rule}): {report.rule_test:.2f}",
        line=dict(color=viz.TEXT, dash="dash", width=1.5),
        hovertemplate=f"position-only rule ({report.rule})<br>held-out accuracy %{{y:.3f}}<extra></extra>"))
    alt = (f"Bar chart of how often each of {len(names)} attention heads {what} on {report.n_test} held-out sites. "
           f"The head chosen on a separate selection split, {report.name} (highlighted), scores "
           f"{report.chosen_test:.2f}; the best other head {report.best_other_test:.2f}; a dashed line marks the "
           f"best position-only rule, '{report.rule}', at {report.rule_test:.2f}.")
    return viz._finish(fig, alt, title if title is not None else f"Which head {what}?",
                       height=440, showlegend=True, legend=_TOP_LEGEND,
                       margin=dict(l=70, r=30, t=_top_margin([d.name for d in fig.data]), b=60),
                       # many heads: every other name (hover names each bar), never below viz.MIN_FONT px
                       xaxis=dict(title=dict(text="head (layer, head)"), type="category",
                                  tickangle=-90 if len(names) > 32 else (-60 if len(names) > 16 else 0),
                                  tickvals=names[::2] if len(names) > 32 else None,
                                  tickfont=dict(size=viz.MIN_FONT if len(names) > 32 else 12)),
                       yaxis=dict(title=dict(text="accuracy (held-out)"), range=[0, 1.08]))


def _head_scores_heatmap(report: HeadReport, what: str, title: str | None) -> go.Figure:
    acc = report.test_accuracy
    n_layers, n_heads = acc.shape
    fig = go.Figure(go.Heatmap(
        # no numbers in the cells: no single text colour reads well on every viridis shade (hover shows them)
        z=acc, x=list(range(n_heads)), y=list(range(n_layers)), zmin=0, zmax=1, colorscale=viz.SEQUENTIAL,
        colorbar=dict(title=dict(text="accuracy")), xgap=1, ygap=1,
        hovertemplate="layer %{y}, head %{x}<br>held-out accuracy %{z:.3f}<extra></extra>"))
    fig.add_shape(type="rect", x0=report.head - 0.5, x1=report.head + 0.5, y0=report.layer - 0.5,
                  y1=report.layer + 0.5, line=dict(color=viz.OKABE_ITO["vermillion"], width=3))
    alt = (f"Heatmap of how often each of {acc.size} attention heads ({n_layers} layers by {n_heads} heads) {what} "
           f"on {report.n_test} held-out sites. The head chosen on a separate selection split, {report.name} "
           f"(outlined), scores {report.chosen_test:.2f}; the best other head {report.best_other_test:.2f}; the best "
           f"position-only rule, '{report.rule}', scores {report.rule_test:.2f}.")
    sub = f"position-only rule ({report.rule}): {report.rule_test:.2f}"
    return viz._finish(fig, alt, (title if title is not None else f"Which head {what}?") + f"<br><sup>{sub}</sup>",
                       height=max(320, 48 * n_layers + 170), margin=dict(l=70, r=30, t=90, b=60),
                       xaxis=dict(title=dict(text="head"), tickmode="array", tickvals=list(range(n_heads)), showgrid=False),
                       yaxis=dict(title=dict(text="layer"), tickmode="array", tickvals=list(range(n_layers)),
                                  autorange="reversed", showgrid=False))


def attribution_figure(result: dict, *, head_name: str = "", title: str | None = None) -> go.Figure:
    """Three bar rows over the same tokens: a head's attention, the drop when the token is ablated, and
    gradient x input, for one prediction (one item of :func:`token_attributions`)."""
    toks = [viz._label(t) for t in result["tokens"]]
    n = len(toks)
    rows = [("attention" + (f" ({head_name})" if head_name else ""), result["attention"], "weight"),
            ("ablation: margin drop", result["ablation"], "drop"),
            ("gradient × input", result["gradient"], "score")]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.09,
                        subplot_titles=[r[0] for r in rows])
    target = int(result["target"])
    for i, (name, values, unit) in enumerate(rows):
        values = np.asarray(values, dtype=float)
        top = int(np.argmax(values))
        colors = [viz.OKABE_ITO["orange"] if j == top else viz.OKABE_ITO["blue"] for j in range(n)]
        fig.add_trace(go.Bar(x=list(range(n)), y=values, marker_color=colors, customdata=toks, name=name,
                             hovertemplate=f"<b>%{{customdata}}</b><br>{unit} %{{y:.3f}}<extra>{name}</extra>"),
                      row=i + 1, col=1)
        fig.update_yaxes(title=dict(text=unit), zeroline=True, zerolinecolor="#a0a7b1", row=i + 1, col=1)
    fig.update_xaxes(viz._token_axis(toks), row=3, col=1)
    for i in (1, 2):
        fig.update_xaxes(tickmode="array", tickvals=list(range(n)), showticklabels=False, row=i, col=1)
    for i in (1, 2, 3):
        fig.add_vrect(x0=target - 0.45, x1=target + 0.45, fillcolor=viz.OKABE_ITO["bluish_green"], opacity=0.15,
                      line_width=0, row=i, col=1)
    fig.update_annotations(font=dict(size=13))
    tops = {name.split(":")[0].split(" (")[0]: toks[int(np.argmax(v))] for name, v, _ in rows}
    context = " ".join(result["tokens"])
    alt = (f"Three bar charts over the tokens '{context}', for the prediction of '{result['word']}': the "
           f"subject '{toks[target]}' is shaded. Attention puts most weight on '{tops['attention']}', ablation "
           f"finds the largest drop at '{tops['ablation']}', gradient times input is largest at "
           f"'{tops['gradient × input']}'. The largest bar in each row is orange.")
    return viz._finish(fig, alt, title if title is not None else f"Which word mattered for '{result['word']}'?",
                       height=560, showlegend=False, margin=dict(l=70, r=30, t=90, b=60))


def curves(x: Sequence[float], series: dict[str, Any], *, x_title: str, y_title: str, title: str,
           log_y: bool = False, log_x: bool = False, bands: dict[str, tuple[Any, Any]] | None = None,
           alt: str | None = None) -> go.Figure:
    """Lines over a shared ``x`` (one per entry of ``series``), optionally with shaded ``bands``
    ``{name: (low, high)}`` and log axes."""
    x = list(x)
    if not series:
        raise ValueError("series is empty: pass {name: values}")
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot"]
    for i, (name, values) in enumerate(series.items()):
        y = np.asarray(values, dtype=float)
        if y.shape != (len(x),):
            raise ValueError(f"series {name!r} has {y.size} values for {len(x)} x values")
        color = viz.COLORWAY[i % len(viz.COLORWAY)]
        if bands and name in bands:
            lo, hi = (np.asarray(b, dtype=float) for b in bands[name])
            fig.add_trace(go.Scatter(x=x + x[::-1], y=list(hi) + list(lo[::-1]), fill="toself", line=dict(width=0),
                                     fillcolor=color, opacity=0.15, hoverinfo="skip", showlegend=False))
        fig.add_trace(go.Scatter(x=x, y=y, name=name, mode="lines+markers",
                                 line=dict(color=color, dash=dashes[i % 4], width=2),
                                 marker=dict(symbol=viz.SYMBOLS[i % len(viz.SYMBOLS)], size=7),
                                 hovertemplate=f"{name}<br>{x_title} %{{x}}<br>{y_title} %{{y:.3g}}<extra></extra>"))
    if alt is None:
        ends = ", ".join(f"{n} goes from {np.asarray(v, dtype=float)[0]:.3g} to {np.asarray(v, dtype=float)[-1]:.3g}"
                         for n, v in series.items())
        alt = f"Line chart of {y_title} against {x_title}: {ends}."
    xaxis = dict(title=dict(text=x_title), type="log" if log_x else "linear")
    if log_x:
        xaxis.update(tickmode="array", tickvals=x, ticktext=[f"{v:g}" for v in x])
    many = len(series) > 1
    return viz._finish(fig, alt, title, xaxis=xaxis,
                       yaxis=dict(title=dict(text=y_title), type="log" if log_y else "linear", exponentformat="power"),
                       legend=_TOP_LEGEND, showlegend=many,
                       margin=dict(l=70, r=30, t=_top_margin(list(series)) if many else 70, b=60))


def bars(labels: Sequence[str], values: Any, *, x_title: str, y_title: str, title: str,
         highlight: Sequence[int] = (), alt: str | None = None) -> go.Figure:
    """A bar chart over ``labels`` (which may repeat, like the two "the" of a sentence).

    ``values``: one value per label, or ``{series name: values}`` for grouped bars. ``highlight``:
    indices drawn in orange (single series only).
    """
    labels = [str(l) for l in labels]
    series = values if isinstance(values, dict) else {"": values}
    if not series:
        raise ValueError("values is empty")
    x = list(range(len(labels)))
    custom = [viz._label(l) for l in labels]
    fig = go.Figure()
    hi = set(int(i) for i in highlight)
    for i, (name, vals) in enumerate(series.items()):
        y = np.asarray(vals.detach().cpu().numpy() if isinstance(vals, torch.Tensor) else vals, dtype=float)
        if y.shape != (len(labels),):
            raise ValueError(f"values{' ' + repr(name) if name else ''} has shape {y.shape} for {len(labels)} labels")
        if len(series) == 1:
            color = [viz.OKABE_ITO["orange"] if j in hi else viz.OKABE_ITO["blue"] for j in x]
            marker = dict(color=color)
        else:
            marker = dict(color=viz.COLORWAY[i % len(viz.COLORWAY)], pattern=dict(shape=["", "/", "x", "."][i % 4]))
        fig.add_trace(go.Bar(x=x, y=y, name=name, marker=marker, customdata=custom,
                             hovertemplate=f"<b>%{{customdata}}</b><br>{name + ': ' if name else ''}{y_title} "
                                           "%{y:.3g}<extra></extra>"))
    if alt is None:
        parts = []
        for name, vals in series.items():
            y = np.asarray(vals.detach().cpu().numpy() if isinstance(vals, torch.Tensor) else vals, dtype=float)
            parts.append((f"{name}: " if name else "") + ", ".join(f"{l} {v:.3g}" for l, v in zip(labels[:12], y[:12])))
        alt = f"Bar chart of {y_title} for each {x_title}. " + "; ".join(parts) + "."
    crowded = len(labels) > 8 or sum(len(l) for l in labels) > 60
    return viz._finish(fig, alt, title, showlegend=len(series) > 1, barmode="group",
                       xaxis=viz._token_axis(custom, title=dict(text=x_title), tickangle=-30 if crowded else 0),
                       yaxis=dict(title=dict(text=y_title)), legend=_TOP_LEGEND,
                       margin=dict(l=70, r=30, t=_top_margin(list(series)) if len(series) > 1 else 70, b=60))


def promoted_tokens_table(rows: Sequence[tuple[str, Sequence[str], str]], *, title: str | None = None) -> go.Figure:
    """A table: one row per value vector with its name, the tokens it promotes and a label."""
    if not rows:
        raise ValueError("rows is empty: pass (name, tokens, label) triples")
    names = [r[0] for r in rows]
    toks = [", ".join(r[1]) for r in rows]
    labels = [r[2] for r in rows]
    fig = go.Figure(go.Table(
        columnwidth=[120, 440, 160],
        header=dict(values=["<b>value vector</b>", "<b>tokens it promotes most</b>", "<b>most common class</b>"],
                    fill_color="#eef1f5", align="left", font=dict(size=13, color=viz.TEXT)),
        cells=dict(values=[names, toks, labels], align="left", fill_color="#ffffff", height=26,
                   font=dict(size=12, color=viz.TEXT))))
    alt = ("Table of feed-forward value vectors and the tokens each promotes most: "
           + "; ".join(f"{n}: {t} ({l})" for n, t, l in zip(names[:6], toks[:6], labels[:6])) + ".")
    return viz._finish(fig, alt, title if title is not None else "What feed-forward value vectors promote",
                       # 24 px more for the header: at the book's width "most common class" takes two lines
                       height=144 + 27 * len(rows), margin=dict(l=10, r=10, t=60, b=10))


# --- the architecture, drawn by hand ---------------------------------------------------------------

_FILL = {"attn": "#FCE7C3", "masked": "#F9D3C0", "cross": "#EBD3E3", "ffn": "#D5EAF7", "io": "#F1F3F5"}


def architecture_svg() -> str:
    """A hand-drawn SVG of the three transformer families (encoder-only, encoder-decoder as in
    Vaswani et al. 2017, decoder-only), with ``role="img"``, a ``<title>`` and a ``<desc>``."""
    parts: list[str] = []
    # Sizes in SVG units: the drawing (816 units) shrinks to the book's column (about 675 px on a 1280 px
    # wide page), so the smallest text, 13.5 units, is drawn at about 11 px (tests/gates/contrast.py).
    W, H, GAP = 160, 40, 16          # sublayer box width and height, gap between boxes

    def text(x, y, s, size=14, anchor="middle", fill="#1f2328", weight="400"):
        parts.append(f'<text x="{x}" y="{y}" text-anchor="{anchor}" font-size="{size}" fill="{fill}" '
                     f'font-weight="{weight}">{html.escape(s)}</text>')

    def box(x, y, label, kind, sub="", h=H, size=14):
        parts.append(f'<rect x="{x}" y="{y}" width="{W}" height="{h}" rx="6" fill="{_FILL[kind]}" stroke="#6b7280"/>')
        ty = y + h / 2 + (-4 if sub else 5)
        text(x + W / 2, ty, label, size=size)
        if sub:
            text(x + W / 2, ty + 15, sub, size=13.5, fill="#4b5563")

    def arrow(x1, y1, x2, y2):
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#374151" stroke-width="1.4" '
                     'marker-end="url(#arrow)"/>')

    def skip(x, y_from, y_to):
        """A residual connection on the left of a sublayer, joining the stream at a circled plus."""
        parts.append(f'<path d="M{x + W / 2} {y_from} H{x - 12} V{y_to} H{x + W / 2 - 7}" fill="none" '
                     'stroke="#0072B2" stroke-width="1.3"/>')
        parts.append(f'<circle cx="{x + W / 2}" cy="{y_to}" r="6" fill="#ffffff" stroke="#0072B2"/>')
        text(x + W / 2, y_to + 4.5, "+", size=13.5, fill="#0072B2")

    def stack(x, top, sublayers, label):
        """Sublayers drawn bottom-up inside a dashed frame; returns (bottom, top) of the frame."""
        height = len(sublayers) * (H + GAP) + GAP
        parts.append(f'<rect x="{x - 22}" y="{top}" width="{W + 34}" height="{height}" rx="10" fill="none" '
                     'stroke="#9ca3af" stroke-dasharray="5 4"/>')
        text(x + W + 10, top + height - 5, label, size=13.5, anchor="end", fill="#4b5563")
        parts.append(f'<line x1="{x + W / 2}" y1="{top + height}" x2="{x + W / 2}" y2="{top}" stroke="#374151" '
                     'stroke-width="1.4"/>')      # the stream, behind the boxes
        y = top + height - GAP - H
        for label_, kind, sub in sublayers:
            box(x, y, label_, kind, sub)
            skip(x, y + H + GAP - 3, y - GAP / 2)
            y -= H + GAP
        return top + height, top

    def column(x, top, sublayers, label, out_label, out_sub, words, out_y=130):
        bottom, top = stack(x, top, sublayers, label)
        box(x, 396, "embeddings", "io", "+ positions")
        arrow(x + W / 2, 396, x + W / 2, bottom + 2)
        text(x + W / 2, 456, words)
        if out_label:
            box(x, out_y, out_label, "io", out_sub)
            arrow(x + W / 2, top, x + W / 2, out_y + H + 2)
        return bottom, top

    parts.append('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                 'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#374151"/></marker></defs>')
    A, B_ENC, B_DEC, C = 28, 224, 426, 634
    for cx, title, sub in ((A + W / 2, "Encoder-only (BERT)", "every word sees every word"),
                           ((B_ENC + B_DEC + W) / 2, "Encoder-decoder (the original)", "Vaswani et al. 2017"),
                           (C + W / 2, "Decoder-only (GPT)", "each word sees only the past")):
        text(cx, 24, title, size=16, weight="600")
        text(cx, 43, sub, size=13.5, fill="#4b5563")
    enc = [("self-attention", "attn", "+ layer norm"), ("feed-forward", "ffn", "+ layer norm")]
    dec = [("masked self-attention", "masked", "+ layer norm"), ("feed-forward", "ffn", "+ layer norm")]
    cross_dec = [("masked self-attention", "masked", "+ layer norm"),
                 ("cross-attention", "cross", "keys, values: encoder"), ("feed-forward", "ffn", "+ layer norm")]
    column(A, 205, enc, "× N layers", "one vector per word", "e.g. fill in [MASK]", "the dog [MASK] .")
    _, enc_top = column(B_ENC, 205, enc, "× N", "", "", "source: der Hund bellt")
    column(B_DEC, 149, cross_dec, "× N", "linear + softmax", "next word: barks", "target so far: the dog", out_y=76)
    column(C, 205, dec, "× N layers", "linear + softmax", "next word: barks", "the dog")
    # the encoder's output feeds the cross-attention of every decoder layer
    cross_y = 149 + GAP + H + GAP + H / 2
    parts.append(f'<path d="M{B_ENC + W / 2} {enc_top} V185 H{B_ENC + W + 15} V{cross_y} H{B_DEC - 2}" fill="none" '
                 'stroke="#CC79A7" stroke-width="1.8" marker-end="url(#arrow)"/>')
    title = "Three ways to build a transformer"
    desc = ("Three diagrams side by side. Left, encoder-only (BERT): words become embeddings plus positions, pass "
            "through N layers of self-attention, where every word sees every word, and a feed-forward network, each "
            "with a skip connection and layer norm, and come out as one vector per word, used for example to fill in "
            "a masked word. Middle, the original encoder-decoder of Vaswani et al. 2017: an encoder stack reads the "
            "source sentence; a decoder stack reads the target so far with masked self-attention, then "
            "cross-attention whose keys and values come from the encoder's output, then a feed-forward network, and "
            "ends in a linear layer and softmax that predict the next target word. Right, decoder-only (GPT): the "
            "decoder without cross-attention; masked self-attention lets each word see only earlier words, and the "
            "last layer predicts the next word. Blue lines ending in a plus sign are the skip (residual) connections.")
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 816 470" width="100%" style="max-width:816px;'
            'background:#ffffff;font-family:system-ui,-apple-system,Segoe UI,Roboto,Arial,sans-serif" role="img" '
            'aria-labelledby="arch-title arch-desc">'
            f'<title id="arch-title">{html.escape(title)}</title><desc id="arch-desc">{html.escape(desc)}</desc>'
            + "".join(parts) + "</svg>")


# --- exercise: score the heads yourself -------------------------------------------------------------

def _head_accuracy_ref(patterns: torch.Tensor, sites: torch.Tensor, mistake: str = "") -> torch.Tensor:
    """Reference (and typical mistakes) for :func:`check_head_accuracy`."""
    s, q, t = sites[:, 0], sites[:, 1], sites[:, 2]
    if mistake == "transposed":           # reads the column: who attends TO the query
        rows = patterns.transpose(-1, -2)[s, :, :, q, :]
    elif mistake == "off_by_one":         # the row of the token before the query
        rows = patterns[s, :, :, q - 1, :]
    else:
        rows = patterns[s, :, :, q, :]    # (n_sites, layers, heads, seq)
    if mistake == "weight":               # mean weight on the target instead of a hit rate
        return rows[torch.arange(len(t)), :, :, t].double().mean(0)
    hits = (rows.argmax(-1) == t[:, None, None]).double()
    if mistake == "count":                # hits not divided by the number of sites
        return hits.sum(0)
    if mistake == "max_layer":            # best head per layer instead of every head
        return hits.mean(0).max(-1, keepdim=True).values.expand(-1, patterns.shape[2])
    return hits.mean(0)


def _exercise_data(seed: int, n: int = 6, layers: int = 2, heads: int = 3, seq: int = 9):
    """Random causal attention patterns and sites where the typical mistakes give different answers."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(n, layers, heads, seq, seq, generator=g) * 2.5
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    # one head per pattern set is a clean "previous-token" head
    for i in range(seq):
        scores[:, layers - 1, 0, i, max(i - 1, 0)] += 8.0
    patterns = torch.softmax(scores, -1)
    q = torch.randint(2, seq, (n * 3,), generator=g)
    s = torch.arange(n * 3) % n
    t = torch.where(torch.rand(n * 3, generator=g) < 0.6, q - 1, torch.randint(0, seq, (n * 3,), generator=g) % q)
    return patterns, torch.stack([s, q, t], 1)


from .exercises import check_head_accuracy  # noqa: E402,F401 (the checker lives with the others in lmlab.exercises)

"""The book's live panels: toy-gpt and the toy language's exact answers, exported for the browser.

The rendered book runs toy-gpt in the page (onnxruntime-web, WebAssembly) and computes the toy
language's exact next-word distribution there too, so a reader can type any sentence and see the
model's attention and next word beside the truth. This module writes what the page needs:

* :func:`export_onnx`: a zoo model (the shipped weights) as an ONNX graph with two outputs,
  ``logits (1, seq, vocab)`` and ``attention (layers, 1, heads, seq, seq)``, the softmax pattern of
  every head (the ``blocks.{l}.attn.pattern`` of :meth:`~lmlab.models.Inspectable.run_with_cache`).
  The input is ``ids (1, seq)`` int64, ``seq`` from 1 to the model's context length; the graph does
  not check its input (the page crops to the context and maps words to ids itself).
* :func:`grammar_tables`: the toy grammar as tables: every state reachable from the start, and each
  state's arcs (token, probability, next state) in the order :meth:`~lmlab.corpus.ToyLanguage.arcs`
  gives them. The page's forward algorithm over these tables is the one in ``corpus.py``
  (``_prefix_alpha`` and ``next_token_distribution``), so it gives the same distribution.
* :func:`model_meta`: the tokenizer's vocabulary, the model's shape and the house plotly template.
* :func:`write_assets`: all of these into a folder (the book's ``_static/live/``, see
  ``_ext/course.py``); skipped when the folder already holds files made from the same inputs.

Needs ``onnx`` (``pip install lmlab[live]``; the book's environment pins it); onnxruntime only to
check the export (:func:`run_onnx`). Nothing here runs on Colab, where the ipywidgets explorers play
this part.
"""
from __future__ import annotations

import copy
import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from . import corpus, zoo

__all__ = ["LIVE_MODELS", "GRAMMAR_FORMAT", "export_onnx", "run_onnx", "grammar_tables", "model_meta",
           "write_assets", "model_ids", "reference_outputs", "js_distribution_order"]

#: The zoo models the page runs (toy-bert is not offered: the chapter 4 panel has no masked blank).
LIVE_MODELS = ("toy-gpt",)
GRAMMAR_FORMAT = "lmlab-toy-grammar-1"
META_FORMAT = "lmlab-live-model-1"
OPSET = 17
STAMP = "stamp.json"


class _Capture(nn.Module):
    """Stands in for a ``blocks.{l}.attn.pattern`` hook point: keeps what passes through."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x


class _WithAttention(nn.Module):
    """A copy of a :class:`~lmlab.models.Transformer` whose forward also returns every attention pattern.

    It runs the model's own blocks on their explicit attention path (the one ``run_with_cache`` uses),
    but without the id checks of ``Transformer.forward`` (``int(idx.min())`` cannot be traced) and
    without a key-value cache or padding mask.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model).cpu().eval()
        self.captures = []
        for block in self.model.blocks:
            capture = _Capture()
            block.attn.pattern = capture
            self.captures.append(capture)

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m, c = self.model, self.model.config
        for capture in self.captures:
            capture.seen.clear()
        T = idx.shape[1]
        positions = torch.arange(T)
        x = m.embed(m.wte(idx))
        if c.positions == "learned":
            x = x + m.pos_embed(m.wpe(positions)[None])
        elif c.positions == "sinusoidal":
            x = x + m.pos_embed(m.sinusoid[positions][None])
        mask, is_causal = m._mask(T, 0, None, idx.device)
        for block in m.blocks:
            x = block(x, mask, is_causal, positions, None, True)
        logits = m.lm_head(m.ln_final(m.ln_f(x)))
        attention = torch.stack([capture.seen[0] for capture in self.captures], dim=0)
        return logits, attention


def _load(name: str):
    if name not in LIVE_MODELS:
        raise ValueError(f"the live panels run {', '.join(LIVE_MODELS)}; got {name!r}")
    model, tokenizer = zoo.load(name)
    return model.eval(), tokenizer


def export_onnx(path: str | Path, name: str = "toy-gpt") -> Path:
    """Write zoo model ``name`` as ONNX to ``path`` (outputs ``logits`` and ``attention``, see the module)."""
    model, tokenizer = _load(name)
    wrapper = _WithAttention(model).eval()
    example = torch.tensor([tokenizer.encode(". the dogs that the boy feeds bark .")], dtype=torch.long)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (dynamo=False) needs no onnxscript; it warns that it is the legacy one,
        # and the tracer warns about Python branches that do not depend on the input (checked by tests).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(path), dynamo=False, opset_version=OPSET, external_data=False,
            input_names=["ids"], output_names=["logits", "attention"],
            dynamic_axes={"ids": {1: "seq"}, "logits": {1: "seq"}, "attention": {3: "seq", 4: "seq"}})
    return path


def run_onnx(path: str | Path, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Run an exported model with onnxruntime (Python) on one sequence of ids: ``(logits, attention)``."""
    session = _session(str(path))
    logits, attention = session.run(None, {"ids": np.asarray([list(ids)], dtype=np.int64)})
    return logits, attention


_SESSIONS: dict[str, Any] = {}


def _session(path: str):
    import onnxruntime

    if path not in _SESSIONS:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _SESSIONS[path] = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return _SESSIONS[path]


def model_ids(tokenizer, words: str | Sequence[str], context_length: int) -> list[int]:
    """The ids the page gives the model for the words typed: ``"."`` first (the end of the previous
    sentence, as in training), then the words; only the last ``context_length`` are kept."""
    words = words.split() if isinstance(words, str) else list(words)
    return tokenizer.encode_tokens(["."] + words)[-context_length:]


def reference_outputs(model, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """lmlab's own logits ``(1, seq, vocab)`` and patterns ``(layers, 1, heads, seq, seq)`` for ``ids``."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(torch.tensor([list(ids)], dtype=torch.long))
    patterns = torch.stack([cache[f"blocks.{l}.attn.pattern"] for l in range(model.config.n_layer)])
    return logits.numpy(), patterns.numpy()


# --- the grammar as tables --------------------------------------------------------------------------

def grammar_tables(variant: str = "standard") -> dict:
    """The toy grammar as tables for the page (see the module docstring).

    ``states``: how many; state 0 is the start. For state ``s`` its arcs are
    ``offsets[s] .. offsets[s + 1] - 1`` of ``token`` (an index into ``vocab``), ``prob`` and ``next``.
    """
    lang = corpus.toy(variant)
    ids = {corpus.START: 0}
    order = [corpus.START]
    i = 0
    while i < len(order):  # breadth first, in arc order: the numbering is deterministic
        for _, _, nxt, _ in lang.arcs(order[i]):
            if nxt not in ids:
                ids[nxt] = len(order)
                order.append(nxt)
        i += 1
    index = lang.index
    offsets, tokens, probs, nexts = [0], [], [], []
    for state in order:
        for tok, prob, nxt, _ in lang.arcs(state):
            tokens.append(index[tok])
            probs.append(float(prob))
            nexts.append(ids[nxt])
        offsets.append(len(tokens))
    return {"format": GRAMMAR_FORMAT, "variant": variant, "eos": corpus.EOS, "vocab": list(lang.vocab),
            "states": len(order), "offsets": offsets, "token": tokens, "prob": probs, "next": nexts}


def js_distribution_order(dist: dict[str, float]) -> list[tuple[str, float]]:
    """A distribution in the order the page lists it (most probable first, then by word)."""
    return sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))


# --- the model's description for the page -----------------------------------------------------------

def model_meta(name: str = "toy-gpt") -> dict:
    """What the page needs besides the graph: vocabulary, special ids, shape and the plotly template."""
    from . import viz

    model, tokenizer = _load(name)
    c = model.config
    template = viz.pio.templates[viz.TEMPLATE].layout.to_plotly_json()
    return {"format": META_FORMAT, "name": name, "description": zoo.describe()[name],
            "vocab": list(tokenizer.vocab), "special_ids": [tokenizer.pad_id, tokenizer.unk_id, tokenizer.mask_id,
                                                           tokenizer.bos_id],
            "eos": ".", "context_length": c.context_length, "n_layer": c.n_layer, "n_head": c.n_head,
            "causal": c.causal, "onnx": f"{name}.onnx", "inputs": ["ids"], "outputs": ["logits", "attention"],
            "template": json.loads(json.dumps(template, default=_jsonable)),
            "colors": {"model": viz.OKABE_ITO["blue"], "exact": viz.OKABE_ITO["orange"],
                       "sampling": viz.OKABE_ITO["bluish_green"], "text": viz.TEXT}}


def _jsonable(value: Any):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _inputs_hash(names: Sequence[str]) -> str:
    import onnx

    h = hashlib.sha256()
    here = Path(__file__).parent
    for module in ("live.py", "corpus.py", "models.py", "viz.py", "tokenizers.py"):
        h.update(module.encode() + (here / module).read_bytes())
    for name in names:
        h.update(name.encode() + zoo.shipped_path(name).read_bytes())
    h.update(f"torch {torch.__version__} onnx {onnx.__version__} opset {OPSET}".encode())
    return h.hexdigest()


def write_assets(folder: str | Path, names: Sequence[str] = LIVE_MODELS, force: bool = False) -> bool:
    """Write ``NAME.onnx`` and ``NAME.json`` for each model and ``toy-grammar.json`` into ``folder``.

    Returns False (and writes nothing) when ``folder`` already holds files made from the same inputs
    (lmlab's source, the shipped weights, torch and onnx versions), True when it wrote them.
    """
    folder = Path(folder)
    key = _inputs_hash(names)
    stamp = folder / STAMP
    expected = [f"{n}.onnx" for n in names] + [f"{n}.json" for n in names] + ["toy-grammar.json"]
    if not force and stamp.is_file() and all((folder / f).is_file() for f in expected):
        try:
            if json.loads(stamp.read_text(encoding="utf-8")).get("key") == key:
                return False
        except ValueError:
            pass
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        export_onnx(folder / f"{name}.onnx", name)
        (folder / f"{name}.json").write_text(json.dumps(model_meta(name), separators=(",", ":")) + "\n",
                                             encoding="utf-8")
    (folder / "toy-grammar.json").write_text(json.dumps(grammar_tables(), separators=(",", ":")) + "\n",
                                             encoding="utf-8")
    stamp.write_text(json.dumps({"key": key, "files": expected}) + "\n", encoding="utf-8")
    return True


if __name__ == "__main__":  # python -m lmlab.live FOLDER
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "live-assets")
    wrote = write_assets(target, force="--force" in sys.argv)
    print(f"{'wrote' if wrote else 'up to date:'} {target}")

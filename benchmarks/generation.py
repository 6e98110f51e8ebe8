"""Benchmark 2: generating 256 new tokens with and without the key-value cache, and against transformers.

A GPT-2-compatible lmlab Transformer (4 layers, 4 heads, width 128, context 512, the toy language's
vocabulary; random weights: speed does not depend on them) continues a 256-token prompt by 256 tokens,
greedily, batch 1:

* ``lmlab.generate`` with the key-value cache (each new token pushed through the model alone);
* ``lmlab.generate`` without it (the whole sequence recomputed for every new token);
* ``transformers``' ``generate()`` on the same model converted with ``lmlab.hub.to_gpt2``, with and
  without its cache.

Reported: new tokens per second (median of ``--runs`` alternating runs after a warm-up), the speed-ups,
the token positions each way pushes through the model (a deterministic count), and whether the four
produce the same tokens.

    python benchmarks/generation.py                  # writes benchmarks/results/generation.json
"""
from __future__ import annotations

import torch

import common


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--new-tokens", type=int, default=None, help="tokens to generate (default 256)")
    args = p.parse_args()
    common.setup(args)
    before = common.machine()

    from lmlab import corpus, data, generate as G, hub
    from lmlab.models import Transformer, TransformerConfig
    from lmlab.tokenizers import WordTokenizer

    lang = corpus.toy()
    tok = WordTokenizer.for_toy(lang)
    if args.tiny:
        shape, prompt_len, new = dict(n_layer=1, n_head=2, d_model=16, context_length=32), 8, args.new_tokens or 8
    else:
        shape, prompt_len, new = dict(n_layer=4, n_head=4, d_model=128, context_length=512), 256, args.new_tokens or 256
    if prompt_len + new > shape["context_length"]:
        raise SystemExit(f"prompt {prompt_len} + new {new} exceeds the context {shape['context_length']}")
    cfg = TransformerConfig(vocab_size=tok.vocab_size, d_ff=4 * shape["d_model"], activation="gelu_tanh", bias=True,
                            dropout=0.0, positions="learned", norm="pre", tie_weights=True, **shape)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    hf = hub.to_gpt2(model).eval()
    hf.generation_config.eos_token_id = None  # generate exactly `new` tokens
    hf.generation_config.pad_token_id = tok.pad_id
    prompt = data.stream_ids(lang.sentences(200, seed=3), tok)[:prompt_len]
    hf_prompt = prompt[None]

    outputs: dict[str, list[int]] = {}

    def ours(use_cache: bool):
        name = f"lmlab, {'cache' if use_cache else 'recompute'}"

        def run():
            with common.Timer() as t:
                out = G.generate(model, prompt, new, strategy="greedy", use_cache=use_cache)
            outputs[name] = out.tolist()
            return {"seconds": t.seconds, "tokens_per_second": new / t.seconds}
        return run

    def theirs(use_cache: bool):
        name = f"transformers generate(), {'cache' if use_cache else 'recompute'}"

        def run():
            with common.Timer() as t, torch.inference_mode():
                out = hf.generate(hf_prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                  use_cache=use_cache)
            outputs[name] = out[0].tolist()
            return {"seconds": t.seconds, "tokens_per_second": new / t.seconds}
        return run

    contenders = {"lmlab, cache": ours(True), "lmlab, recompute": ours(False),
                  "transformers generate(), cache": theirs(True), "transformers generate(), recompute": theirs(False)}
    raw = common.alternate(contenders, args.runs, warmup=args.warmup)
    med = {name: common.median(rows, "tokens_per_second") for name, rows in raw.items()}

    positions = {}
    for name, model_, use_cache in [("lmlab, cache", model, True), ("lmlab, recompute", model, False)]:
        with G.count_positions(model_) as c:
            G.generate(model_, prompt, new, strategy="greedy", use_cache=use_cache)
        positions[name] = c.positions
    for name, use_cache in [("transformers generate(), cache", True), ("transformers generate(), recompute", False)]:
        with G.count_positions(hf) as c, torch.inference_mode():
            hf.generate(hf_prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, use_cache=use_cache)
        positions[name] = c.positions
    reference = outputs["lmlab, cache"]
    same = {name: out == reference for name, out in outputs.items()}

    rows = [[name, med[name], med[name] / med["lmlab, recompute"], positions[name], same[name]] for name in contenders]
    print(common.table(["way", "new tokens/s", "x lmlab recompute", "positions processed", "same tokens"], rows))
    speedup = med["lmlab, cache"] / med["lmlab, recompute"]
    vs_hf = med["lmlab, cache"] / med["transformers generate(), cache"]
    print(f"cache speed-up {speedup:.2f}x; lmlab cache / transformers generate() cache = {vs_hf:.2f}x "
          f"(median of {args.runs} alternating runs, {args.threads} threads, load average before "
          f"{before['load_average']})")
    common.write("generation", args, {
        "config": {**shape, "vocab_size": tok.vocab_size, "prompt_tokens": prompt_len, "new_tokens": new,
                   "parameters": model.num_parameters()},
        "median_new_tokens_per_second": med, "cache_speedup": speedup, "cache_vs_transformers": vs_hf,
        "positions_processed": positions, "same_tokens_as_lmlab_cache": same, "raw": raw}, before)


if __name__ == "__main__":
    main()

"""Benchmark 1: training throughput of our causal transformer against GPT2LMHeadModel of the same shape.

Both models go through the same loop, ``lmlab.train.train`` (AdamW with decay groups, warmup and
cosine schedule, gradient clipping, random windows of the toy language), with the same weights
(``lmlab.hub.to_gpt2``), width, depth, context, biases, activation (tanh GELU), tied embeddings and
dropout 0. ``GPT2LMHeadModel`` runs with its default (SDPA) attention and ``use_cache=False``.
Reported: tokens per second (input positions per second of training), median of ``--runs``
alternating runs after a warm-up, and the ratio ours / GPT-2.

    python benchmarks/train_throughput.py            # writes benchmarks/results/train_throughput.json
"""
from __future__ import annotations

import copy
from types import SimpleNamespace

import torch
from torch import nn

import common


class HubAdapter(nn.Module):
    """GPT2LMHeadModel seen through the lmlab model contract: ``forward(idx) -> logits``."""

    def __init__(self, hf: nn.Module, context_length: int):
        super().__init__()
        self.hf = hf
        self.config = SimpleNamespace(vocab_size=hf.config.vocab_size, context_length=context_length)
        self.causal = True

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=idx, use_cache=False).logits


SHAPES = {
    # name: (TransformerConfig fields, batch size)
    "zoo (2 layers, width 64, context 24)": (dict(n_layer=2, n_head=4, d_model=64, context_length=24), 48),
    "recipe (4 layers, width 128, context 64)": (dict(n_layer=4, n_head=4, d_model=128, context_length=64), 12),
}
TINY = {"tiny (1 layer, width 16, context 8)": (dict(n_layer=1, n_head=2, d_model=16, context_length=8), 4)}


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=None, help="training steps per timed run (default 60)")
    args = p.parse_args()
    common.setup(args)
    before = common.machine()

    from lmlab import corpus, data, hub, train
    from lmlab.models import Transformer, TransformerConfig
    from lmlab.tokenizers import WordTokenizer

    lang = corpus.toy()
    tok = WordTokenizer.for_toy(lang)
    ids = data.stream_ids(lang.sentences(2000 if args.tiny else 20_000, seed=1), tok)
    steps = args.steps or (5 if args.tiny else 60)
    shapes = TINY if args.tiny else SHAPES
    results, rows = {}, []
    for label, (fields, batch) in shapes.items():
        cfg = TransformerConfig(vocab_size=tok.vocab_size, d_ff=4 * fields["d_model"], activation="gelu_tanh",
                                bias=True, dropout=0.0, positions="learned", norm="pre", tie_weights=True, **fields)
        torch.manual_seed(0)
        ours = Transformer(cfg)
        theirs = HubAdapter(hub.to_gpt2(copy.deepcopy(ours)), cfg.context_length)
        assert ours.num_parameters() == theirs.hf.num_parameters(), "the two models differ in size"
        config = train.TrainConfig(steps=steps, batch_size=batch, lr=1e-3, warmup_steps=min(10, steps - 1),
                                   eval_batches=0, device="cpu", seed=0)

        def run(model):
            state = copy.deepcopy(model.state_dict())
            hist = train.train(model, ids, None, config, progress=False)
            model.load_state_dict(state)  # every run starts from the same weights
            return {"seconds": hist.seconds, "tokens": hist.tokens_seen,
                    "tokens_per_second": hist.tokens_seen / hist.seconds, "final_loss": hist.final_train_loss}

        raw = common.alternate({"lmlab": lambda: run(ours), "GPT2LMHeadModel": lambda: run(theirs)}, args.runs,
                               warmup=args.warmup)
        ours_tps = common.median(raw["lmlab"], "tokens_per_second")
        hf_tps = common.median(raw["GPT2LMHeadModel"], "tokens_per_second")
        results[label] = {"config": {**fields, "batch_size": batch, "vocab_size": tok.vocab_size, "steps": steps,
                                     "parameters": ours.num_parameters()},
                          "median_tokens_per_second": {"lmlab": ours_tps, "GPT2LMHeadModel": hf_tps},
                          "ratio": ours_tps / hf_tps, "raw": raw}
        rows.append([label, ours.num_parameters(), ours_tps, hf_tps, ours_tps / hf_tps])
    print(common.table(["shape", "parameters", "lmlab tokens/s", "GPT2LMHeadModel tokens/s", "ratio"], rows))
    print(f"(median of {args.runs} alternating runs of {steps} steps, {args.threads} threads, "
          f"load average before {before['load_average']})")
    common.write("train_throughput", args, {"steps": steps, "shapes": results}, before)


if __name__ == "__main__":
    main()

"""Benchmark 3: nanoGPT's CPU recipe for tiny Shakespeare, trained with lmlab.

nanoGPT's README trains a small character-level GPT on a CPU with::

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

that is: 4 layers, 4 heads, width 128, context 64, batch 12, 2000 iterations, learning rate 1e-3 with
100 warmup steps and cosine decay to 1e-4, AdamW betas (0.9, 0.99), weight decay 0.1 on matrices
only, gradient clipping at 1.0, no dropout, no biases, exact GELU, tied embeddings, evaluation every 250
iterations on 20 batches. Here the same recipe runs through ``lmlab.train.train`` with an lmlab
``Transformer``, on the same split (first 90% of the characters for training, last 10% for
validation), in two variants that alternate: nanoGPT's architecture exactly (a learned position
table), and the same with rotary positions (``--positions`` picks). Reported: the training wall time
(evaluations included, as in nanoGPT's run) and the validation loss, the mean over 200 random
validation batches (seeded) after training.

The corpus comes from ``--data`` (default ``../shared/data/tinyshakespeare.txt`` next to the
repository, as on the course machines) or, when that file is missing, ``lmlab.texts.load_text``
(download, cache, SHA-256 check; needs a network).

    python benchmarks/nanogpt_recipe.py              # writes benchmarks/results/nanogpt_recipe.json
"""
from __future__ import annotations

from pathlib import Path

import torch

import common

DEFAULT_DATA = common.REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def load_corpus(path: Path | None) -> tuple[str, str]:
    if path is not None:
        return Path(path).read_text(encoding="utf-8"), str(path)
    if DEFAULT_DATA.is_file():
        return DEFAULT_DATA.read_text(encoding="utf-8"), str(DEFAULT_DATA)
    from lmlab import texts

    return texts.load_text("tinyshakespeare"), "lmlab.texts.load_text('tinyshakespeare')"


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="the corpus file (default: see above)")
    p.add_argument("--steps", type=int, default=None, help="training iterations (default 2000)")
    p.add_argument("--val-batches", type=int, default=None, help="batches for the final validation loss (200)")
    p.add_argument("--positions", default="learned,rotary",
                   help="position encodings to run, comma-separated (default 'learned,rotary': nanoGPT's "
                        "learned table, and rotary)")
    args = p.parse_args()
    common.setup(args)
    variants = [v.strip() for v in args.positions.split(",") if v.strip()]
    bad = [v for v in variants if v not in ("learned", "rotary", "sinusoidal", "none")]
    if bad or not variants:
        raise SystemExit(f"--positions takes learned, rotary, sinusoidal, none; got {args.positions!r}")
    before = common.machine()

    from lmlab import train
    from lmlab.models import Transformer, TransformerConfig
    from lmlab.tokenizers import CharTokenizer

    text, source = load_corpus(args.data)
    if args.tiny:
        text = text[:20_000]
    tok = CharTokenizer.from_text(text)
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    n = int(0.9 * len(ids))
    train_ids, val_ids = ids[:n], ids[n:]

    shape = dict(n_layer=1, n_head=2, d_model=16, context_length=16) if args.tiny else \
        dict(n_layer=4, n_head=4, d_model=128, context_length=64)
    steps = args.steps or (10 if args.tiny else 2000)
    val_batches = args.val_batches or (5 if args.tiny else 200)
    config = train.TrainConfig(steps=steps, batch_size=4 if args.tiny else 12, lr=1e-3, min_lr=1e-4,
                               warmup_steps=min(100, steps // 2), weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
                               eval_every=250, eval_batches=20, device="cpu", seed=1337)

    def model_config(positions: str) -> TransformerConfig:
        return TransformerConfig(vocab_size=tok.vocab_size, d_ff=4 * shape["d_model"], dropout=0.0, bias=False,
                                 activation="gelu", positions=positions, norm="pre", tie_weights=True, **shape)

    def contender(positions: str):
        def run() -> dict:
            torch.manual_seed(1337)
            model = Transformer(model_config(positions))
            with common.Timer() as t:
                hist = train.train(model, train_ids, val_ids, config, progress=False)
            g = torch.Generator().manual_seed(2024)
            batches = train._Batches(val_ids, "next", config.batch_size, shape["context_length"], 0.15, None, g)
            val_loss = train.evaluate(model, batches, val_batches, torch.device("cpu"))
            return {"seconds": t.seconds, "val_loss": val_loss, "train_loss": hist.final_train_loss,
                    "tokens": hist.tokens_seen, "tokens_per_second": hist.tokens_seen / t.seconds,
                    "val_curve": [hist.val_step, hist.val_loss]}
        return run

    # the warm-up is a short run of each shape, not a full one
    warm = train.TrainConfig(**{**config.__dict__, "steps": min(20, steps), "eval_every": 0, "eval_batches": 0,
                                "warmup_steps": min(10, steps // 2)})
    for positions in variants if args.warmup else []:
        train.train(Transformer(model_config(positions)), train_ids, None, warm, progress=False)
    raw = common.alternate({v: contender(v) for v in variants}, args.runs, warmup=False)

    results, rows = {}, []
    for v in variants:
        seconds = common.median(raw[v], "seconds")
        losses = sorted({round(r["val_loss"], 6) for r in raw[v]})
        params = Transformer(model_config(v)).num_parameters()
        results[v] = {"parameters": params, "median_seconds": seconds, "val_loss": raw[v][0]["val_loss"],
                      "val_losses_all_runs": losses, "raw": raw[v]}
        rows.append([f"lmlab, {v} positions", params, steps, seconds, f"{int(seconds // 60)}m{seconds % 60:04.1f}s",
                     raw[v][0]["val_loss"]])
    rows.append(["nanoGPT, learned positions (FIELD-NOTES, idle)", "", 2000, 132.0, "2m12.0s", 1.886])
    print(common.table(["run", "parameters", "iterations", "seconds", "wall time", "val loss"], rows))
    print(f"(median of {args.runs} alternating runs, {args.threads} threads, corpus {source}, {len(text):,} "
          f"characters, vocabulary {tok.vocab_size}; lmlab's loss is the mean over {val_batches} validation "
          f"batches, nanoGPT's its last 20-batch estimate; load average before {before['load_average']})")
    common.write("nanogpt_recipe", args, {
        "corpus": source, "characters": len(text), "vocab_size": tok.vocab_size,
        "config": {**shape, "steps": steps, "batch_size": config.batch_size, "lr": config.lr,
                   "min_lr": config.min_lr, "warmup_steps": config.warmup_steps, "betas": config.betas,
                   "weight_decay": config.weight_decay, "grad_clip": config.grad_clip, "bias": False,
                   "activation": "gelu (exact)", "dropout": 0.0, "eval_every": 250, "eval_batches": 20,
                   "final_val_batches": val_batches, "seed": 1337},
        "variants": results,
        "nanogpt_reference": {"seconds": 132, "val_loss": 1.886, "positions": "learned",
                              "source": "FIELD-NOTES.md (idle machine; loss = its 20-batch estimate at iteration 2000)"}},
        before)


if __name__ == "__main__":
    main()

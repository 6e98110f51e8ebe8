"""Benchmark 4: the zoo: training time from a cold cache and the gap to the exact loss (toy language), or the
validation loss (tiny Shakespeare).

For each zoo model (``lmlab.zoo``), ``zoo.load(name, retrain=True)`` in a fresh cache folder: the wall
time of the whole call (data generation, training, saving), the training time alone, steps, tokens
seen and tokens per second. Then the gap on the same held-out tokens for every model
(``zoo.held_out_sentences``, 2,000 sentences no model trained on): the mean over every held-out word of
the model's negative log-likelihood minus the exact one, each word scored with its whole sentence in
context (``lmlab.data.exact_gap``; the masked model: each word masked in turn, against the exact
distribution of the slot given both sides; the character model: a word's characters summed, the space
before it included). Timings: median of ``--runs`` alternating runs after a warm-up.

The Shakespeare models (``corpus="shakespeare"``) have no exact distribution, so no gap: their measure is
the validation loss (``zoo.val_loss``: 200 seeded random windows of the last 10% of the text, per token
and per character). They took 10-30 minutes each to train once; by default they are not retrained here:
their validation loss is recomputed from the shipped weights and their training figures (steps,
minutes, losses) are read from the shipped records; ``--retrain-text`` retrains them once each (cold),
and ``--tiny`` trains tiny versions. One kind per run: the toy models by default, the Shakespeare ones
with ``--text-only``.

    python benchmarks/zoo_gaps.py                    # writes benchmarks/results/zoo_gaps.json
    python benchmarks/zoo_gaps.py --text-only        # only the Shakespeare models: results/shakespeare_models.json
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import common


def tiny_specs():
    from lmlab import zoo

    small_model = dict(n_layer=1, n_head=2, d_model=16, d_ff=32)  # as zoo._tiny
    out = []
    for name in zoo.available():
        spec = zoo.SPECS[name]
        out.append(dataclasses.replace(spec, name=f"{name}-tiny", model={**spec.model, **small_model},
                                       train={**spec.train, "steps": 5, "batch_size": 4},
                                       train_sentences=300, val_sentences=50))
    return out


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=None, help="held-out sentences for the gaps (default 2000)")
    p.add_argument("--retrain-text", action="store_true",
                   help="retrain the Shakespeare models too (once each; 10-30 minutes each)")
    p.add_argument("--text-only", action="store_true",
                   help="only the Shakespeare models (writes results/shakespeare_models.json)")
    args = p.parse_args()
    common.setup(args)
    before = common.machine()

    from lmlab import zoo

    specs = tiny_specs() if args.tiny else [zoo.SPECS[name] for name in zoo.available()]
    # one kind per run: the toy models (zoo_gaps.json) or, with --text-only, the Shakespeare ones
    specs = [spec for spec in specs if (spec.corpus != "toy") == args.text_only]
    toy_specs = [spec for spec in specs if spec.corpus == "toy"]
    text_specs = [spec for spec in specs if spec.corpus != "toy"]
    retrain_text = args.tiny or args.retrain_text
    n_sentences = args.sentences or (20 if args.tiny else 2000)
    val_batches = 3 if args.tiny else zoo.VAL_BATCHES
    cache = tempfile.mkdtemp(prefix="lmlab-bench-zoo-")
    old_cache = os.environ.get("LMLAB_CACHE")
    os.environ["LMLAB_CACHE"] = cache
    models = {}
    try:
        def cold(spec):
            def run():
                shutil.rmtree(os.path.join(cache, "zoo"), ignore_errors=True)  # a cold cache every time
                with common.Timer() as t:
                    model, tok = zoo.load(spec, retrain=True, device="cpu", verbose=False)
                models[spec.name] = (model, tok)
                info = model.zoo_info
                return {"seconds": t.seconds, "train_seconds": info.seconds, "data_seconds": info.data_seconds,
                        "steps": info.steps, "tokens_seen": info.tokens_seen,
                        "tokens_per_second": info.tokens_per_second, "final_val_loss": info.final_val_loss}
            return run

        raw = common.alternate({spec.name: cold(spec) for spec in toy_specs}, args.runs, warmup=args.warmup) \
            if toy_specs else {}
        if retrain_text:  # once each, no warm-up: minutes per model
            raw.update(common.alternate({spec.name: cold(spec) for spec in text_specs}, 1, warmup=False))
        results, rows, text_rows = {}, [], []
        for spec in text_specs:
            if retrain_text:
                model, tok = models[spec.name]
                run = raw[spec.name][0]
                source = "retrained here"
            else:
                model, tok = zoo.load(spec.name)
                record = zoo.shipped_record(spec.name)
                run = {"seconds": record["wall_seconds"], "train_seconds": record["seconds"], "steps": record["steps"],
                       "tokens_seen": record["tokens_seen"], "tokens_per_second": record["tokens_per_second"],
                       "final_val_loss": record["final_val_loss"], "final_train_loss": record["final_train_loss"]}
                source = f"shipped record ({record['made']}, {record['machine']['processor']})"
            v = zoo.val_loss(spec, val_batches, model=model, tokenizer=tok)
            results[spec.name] = {
                "description": spec.description, "parameters": model.num_parameters(), "training": source,
                "steps": run["steps"], "tokens_seen": run["tokens_seen"], "train_minutes": run["train_seconds"] / 60,
                "tokens_per_second": run["tokens_per_second"], "final_train_loss": run.get("final_train_loss"),
                "val_nats_per_token": v.nats_per_token, "val_nats_per_char": v.nats_per_char,
                "val_batches": v.n_batches, "val_batch_size": v.batch_size, "val_seed": v.seed, "context": v.context,
                "val_tokens": v.tokens, "val_characters": v.characters, "unk_share": v.unk_share,
                "vocab_size": tok.vocab_size, "spec": dataclasses.asdict(spec)}
            text_rows.append([spec.name, model.num_parameters(), run["steps"], f"{run['train_seconds'] / 60:.1f}",
                              v.nats_per_token, v.nats_per_char, source])
        for spec in toy_specs:
            model, tok = models[spec.name]
            g = zoo.gap(spec, n_sentences, model=model, tokenizer=tok)
            r = raw[spec.name]
            results[spec.name] = {
                "description": spec.description, "parameters": model.num_parameters(),
                "median_seconds_cold": common.median(r, "seconds"),
                "median_train_seconds": common.median(r, "train_seconds"),
                "steps": r[0]["steps"], "tokens_seen": r[0]["tokens_seen"],
                "median_tokens_per_second": common.median(r, "tokens_per_second"),
                "gap": g.gap, "gap_se": g.gap_se, "model_nll": g.model_nll, "exact_nll": g.exact_nll,
                "held_out_words": g.n_tokens, "held_out_sentences": g.n_sentences,
                "spec": dataclasses.asdict(spec), "raw": r}
            rows.append([spec.name, model.num_parameters(), results[spec.name]["median_seconds_cold"],
                         results[spec.name]["median_train_seconds"], r[0]["steps"], r[0]["tokens_seen"],
                         results[spec.name]["median_tokens_per_second"], f"{g.gap:.4f} ± {g.gap_se:.4f}",
                         g.model_nll, g.exact_nll])
    finally:
        if old_cache is None:
            os.environ.pop("LMLAB_CACHE", None)
        else:
            os.environ["LMLAB_CACHE"] = old_cache
        shutil.rmtree(cache, ignore_errors=True)
    if rows:
        print(common.table(["model", "parameters", "cold load s", "train s", "steps", "tokens seen", "tokens/s",
                            "gap (nats/word) ± se", "model NLL", "exact NLL"], rows))
        print(f"(median of {args.runs} alternating cold runs, {args.threads} threads, {n_sentences} held-out sentences; "
              f"load average before {before['load_average']})")
    if text_rows:
        print(common.table(["model", "parameters", "steps", "train min", "val nats/token", "val nats/char",
                            "training figures from"], text_rows))
        print(f"(validation loss: mean over {val_batches} seeded random windows of the last 10% of tiny Shakespeare, "
              f"recomputed here from the weights; word models: <unk> stands for the rarest words)")
    common.write("shakespeare_models" if args.text_only else "zoo_gaps", args,
                 {"held_out_sentences": n_sentences, "models": results}, before)


if __name__ == "__main__":
    main()

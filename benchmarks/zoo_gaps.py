"""Benchmark 4: the zoo on the toy language: training time from a cold cache and the gap to the exact loss.

For each zoo model (``lmlab.zoo``), ``zoo.load(name, retrain=True)`` in a fresh cache folder: the wall
time of the whole call (data generation, training, saving), the training time alone, steps, tokens
seen and tokens per second. Then the gap on the same held-out tokens for every model
(``zoo.held_out_sentences``, 2,000 sentences no model trained on): the mean over every held-out word of
the model's negative log-likelihood minus the exact one, each word scored with its whole sentence in
context (``lmlab.data.exact_gap``; the masked model: each word masked in turn, against the exact
distribution of the slot given both sides; the character model: a word's characters summed, the space
before it included). Timings: median of ``--runs`` alternating runs after a warm-up.

    python benchmarks/zoo_gaps.py                    # writes benchmarks/results/zoo_gaps.json
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import common


def tiny_specs():
    from lmlab import zoo

    small_model = dict(n_layer=1, n_head=2, d_model=16, d_ff=32)
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
    args = p.parse_args()
    common.setup(args)
    before = common.machine()

    from lmlab import zoo

    specs = tiny_specs() if args.tiny else [zoo.SPECS[name] for name in zoo.available()]
    n_sentences = args.sentences or (20 if args.tiny else 2000)
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

        raw = common.alternate({spec.name: cold(spec) for spec in specs}, args.runs, warmup=args.warmup)
        results, rows = {}, []
        for spec in specs:
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
    print(common.table(["model", "parameters", "cold load s", "train s", "steps", "tokens seen", "tokens/s",
                        "gap (nats/word) ± se", "model NLL", "exact NLL"], rows))
    print(f"(median of {args.runs} alternating cold runs, {args.threads} threads, {n_sentences} held-out sentences; "
          f"load average before {before['load_average']})")
    common.write("zoo_gaps", args, {"held_out_sentences": n_sentences, "models": results}, before)


if __name__ == "__main__":
    main()

"""Run the library-level code the chapters use on a CUDA GPU, and compare it with the CPU.

    python tools/gpu_check.py [--out FILE.json]

What it checks (each line printed as ``ok``/``FAIL`` and kept in the JSON report):

* every shipped zoo model loads on ``cuda`` and its logits on fixed inputs match the CPU model's;
* ids and tensors made on the CPU (as the chapters make them) are accepted by functions given a CUDA
  model: next-token distributions, sampling, greedy and beam search, attention capture, the exact gap;
* a few training steps of a small transformer on ``cuda`` lower its loss;
* asking for a device that is not there (``cuda:N`` past the last GPU) is one clear ``ValueError``.

Needs lmlab importable (``PYTHONPATH=lib``) and its dependencies; run where a GPU is present.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

RESULTS: list[dict] = []


def check(name: str):
    def wrap(fn):
        t0 = time.perf_counter()
        try:
            detail = fn()
            RESULTS.append({"check": name, "ok": True, "detail": detail, "seconds": time.perf_counter() - t0})
            print(f"ok    {name}: {detail}", flush=True)
        except Exception as err:  # report and go on: one run should show every problem
            RESULTS.append({"check": name, "ok": False, "detail": f"{type(err).__name__}: {err}",
                            "trace": traceback.format_exc(), "seconds": time.perf_counter() - t0})
            print(f"FAIL  {name}: {type(err).__name__}: {err}", flush=True)
        return fn
    return wrap


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu for a dry run of the script")
    args = parser.parse_args()
    dev = args.device

    import torch

    import lmlab
    from lmlab import corpus, data, generate, zoo

    if dev != "cpu" and not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check")
        return 2
    env_info = {"torch": torch.__version__, "device": dev, "python": sys.version.split()[0], "lmlab": lmlab.__version__,
                "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print("environment:", env_info, flush=True)
    lang = corpus.toy()

    @check("zoo models load on cuda and match the CPU")
    def _():
        out = {}
        for name in zoo.available():
            cpu, tok = zoo.load(name)
            gpu, _ = zoo.load(name, device=dev)
            assert next(gpu.parameters()).device.type == dev.split(":")[0] and next(cpu.parameters()).device.type == "cpu"
            ids = torch.arange(min(12, tok.vocab_size)).unsqueeze(0)
            with torch.no_grad():
                a, b = cpu(ids), gpu(ids.to(dev)).cpu()
            diff = float((a - b).abs().max())
            assert diff < 1e-3, f"{name}: logits differ by {diff}"
            out[name] = diff
        return {"max_abs_logit_difference": out}

    gpt, tok = zoo.load("toy-gpt", device=dev)
    prompt = tok.encode(". the dogs that the boy feeds")  # a list of ints, as the chapters pass them

    @check("next-token distribution from CPU ids on a CUDA model")
    def _():
        p = generate.next_token_distribution(gpt, prompt)
        cpu_p = generate.next_token_distribution(zoo.load("toy-gpt")[0], prompt)
        diff = float((p.cpu() - cpu_p.cpu()).abs().max())
        assert abs(float(p.sum()) - 1) < 1e-4 and diff < 1e-4, (float(p.sum()), diff)
        return {"sum": float(p.sum()), "max_abs_difference_to_cpu": diff}

    @check("sampling, greedy and beam search on a CUDA model")
    def _():
        ids = torch.tensor(prompt)  # a CPU tensor
        out = {}
        for kind, call in [("greedy", lambda: generate.generate(gpt, ids, max_new_tokens=8, strategy="greedy")),
                           ("sample", lambda: generate.generate(gpt, ids, max_new_tokens=8, seed=0)),
                           ("beam", lambda: generate.beam_search(gpt, prompt, num_beams=3, max_new_tokens=6)[0].ids)]:
            result = call()
            seq = result.tolist() if hasattr(result, "tolist") else list(result)
            seq = seq[0] if seq and isinstance(seq[0], list) else seq
            out[kind] = tok.decode([int(i) for i in seq])
        return out

    @check("attention capture on a CUDA model")
    def _():
        from lmlab import interpret

        enc = interpret.encode(lang.sample(20, seed=5), tok, gpt.config.context_length)
        patterns = interpret.attention_patterns(gpt, enc)
        rows = patterns.sum(-1)  # (n, layers, heads, seq): 1 for every real query, 0 for padding
        err = float(abs(rows[rows > 0.5] - 1).max())
        assert err < 1e-4, err
        return {"shape": list(patterns.shape), "rows_sum_to_one_max_error": err}

    @check("chapter 2's experiments (head search, ablation, attributions, logit lens) on a CUDA model")
    def _():
        from lmlab import interpret, viz

        cpu_gpt = zoo.load("toy-gpt")[0]
        enc = interpret.encode(lang.sample(60, seed=7), tok, gpt.config.context_length)
        sites = interpret.agreement_sites(enc, min_distance=2)
        out = {"sites": len(sites)}
        base_gpu, eff_gpu = interpret.head_ablation_effects(gpt, enc, sites, tok)
        base_cpu, eff_cpu = interpret.head_ablation_effects(cpu_gpt, enc, sites, tok)
        out["ablation_max_difference"] = float(abs(eff_gpu - eff_cpu).max())
        assert out["ablation_max_difference"] < 1e-3, out
        res = interpret.token_attributions(gpt, enc, sites[:5], tok, 1, 0)
        out["attributions"] = len(res)
        probs, guesses, names = viz.logit_lens_data(gpt, torch.tensor(prompt), tok.vocab)
        out["logit_lens_rows"] = len(names)
        return out

    @check("exact gap of a CUDA model equals the CPU model's")
    def _():
        sents = zoo.held_out_sentences(200)
        g_gpu = data.exact_gap(gpt, tok, lang, sents).gap
        g_cpu = data.exact_gap(zoo.load("toy-gpt")[0], tok, lang, sents).gap
        assert abs(g_gpu - g_cpu) < 1e-4, (g_gpu, g_cpu)
        return {"gpu": g_gpu, "cpu": g_cpu}

    @check("a few training steps on cuda lower the loss")
    def _():
        from lmlab.models import Transformer, TransformerConfig
        from lmlab.train import TrainConfig, train
        from lmlab.tokenizers import WordTokenizer

        wt = WordTokenizer.for_toy(lang)
        ids = data.stream_ids(lang.sentences(2000, seed=3), wt)
        val = data.stream_ids(lang.sentences(100, seed=4), wt)
        model = Transformer(TransformerConfig(vocab_size=wt.vocab_size, context_length=24, n_layer=2, n_head=4,
                                              d_model=64, d_ff=256))
        hist = train(model, ids, val, TrainConfig(steps=60, batch_size=32, lr=1e-2, device=dev, eval_every=0),
                     tokenizer=wt, progress=False)
        first, last = hist.train_loss[0], hist.final_train_loss
        assert next(model.parameters()).device.type == dev.split(":")[0] and last < first - 0.5, (first, last)
        return {"first_loss": first, "last_loss": last, "steps": hist.step[-1]}

    @check("a device that is not there is one clear ValueError")
    def _():
        n = torch.cuda.device_count() if dev != "cpu" else 0
        try:
            zoo.load("toy-gpt", device=f"cuda:{n}")
        except ValueError as err:
            assert "not available" in str(err), err
            return {"message": str(err)}
        raise AssertionError(f"cuda:{n} was accepted")

    report = {"environment": env_info, "results": RESULTS,
              "passed": sum(r["ok"] for r in RESULTS), "failed": sum(not r["ok"] for r in RESULTS)}
    print(f"{report['passed']} passed, {report['failed']} failed")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

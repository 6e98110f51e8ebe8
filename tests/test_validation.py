"""Every wrong call gets a clear error (issue 19).

For each public module a table of (function, a valid call, the kind of every argument checked). Two
halves, both over the same table:

* the valid call succeeds (so a function that refuses everything fails here);
* with one argument replaced by a wrong kind or an out-of-range value drawn by hypothesis, the call
  raises ``ValueError`` or ``TypeError`` whose message names that argument, within 5 s.

Then the cases the issue lists, one by one, and planted faults showing that each half catches what it
exists to catch.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab import checks, corpus, data, experiments, generate, geometry, interpret, measure, models, textstats
from lmlab import tokenizers, train, variants, viz
from lmlab.models import NGramLM, Transformer, TransformerConfig
from lmlab.tokenizers import WordTokenizer

SEED_MAX = 2**63 - 1
EXAMPLES = 12  # per (function, argument): the whole file runs in about a minute on one core
DEADLINE_S = 5.0

# --- small shared inputs -------------------------------------------------------------------------------

LANG = corpus.toy()
TOK = WordTokenizer.for_toy(LANG)
V = TOK.vocab_size
SENTS = [["the", "dog", "barks", "."], ["the", "cats", "sleep", "."]]
TRAIN_IDS = [TOK.encode_tokens(s) for s in LANG.sentences(40, seed=0)]
torch.manual_seed(0)
MODEL = Transformer(TransformerConfig(vocab_size=V, context_length=16, n_layer=1, n_head=2, d_model=16)).eval()
NGRAM = NGramLM(2, vocab_size=V).fit(TRAIN_IDS)
LOGITS = torch.tensor([2.0, 1.0, 0.5, -1.0])
PROBS = np.array([0.5, 0.3, 0.2])
VECS = np.random.default_rng(0).normal(size=(8, 5))
STREAM = torch.arange(60) % V


# --- wrong values, by kind ------------------------------------------------------------------------------

nan_inf = st.sampled_from([math.nan, math.inf, -math.inf])
not_a_number = st.one_of(st.text(max_size=4), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
non_integral = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer())


def bad_int(low: int | None = None, high: int | None = None, none_ok: bool = False):
    """Wrong kinds (floats, strings, bools, None unless allowed) and ints outside [low, high]."""
    kinds = [non_integral, nan_inf, st.text(max_size=4), st.booleans(), st.lists(st.integers(), max_size=2)]
    if not none_ok:
        kinds.append(st.none())
    if low is not None:
        kinds.append(st.integers(max_value=low - 1))
    if high is not None:
        kinds.append(st.integers(min_value=high + 1))
    return st.one_of(kinds)


def bad_real(low: float | None = None, high: float | None = None, low_open: bool = False,
             high_open: bool = False, none_ok: bool = False):
    """Non-finite numbers, wrong kinds, and finite numbers outside the range."""
    kinds = [nan_inf, st.text(max_size=4), st.booleans(), st.lists(st.floats(), max_size=2)]
    if not none_ok:
        kinds.append(st.none())
    if low is not None:
        kinds.append(st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False))
    if high is not None:
        kinds.append(st.floats(min_value=high, exclude_min=not high_open, allow_nan=False, allow_infinity=False))
    return st.one_of(kinds)


bad_seed = st.one_of(st.integers(max_value=-1), st.integers(min_value=SEED_MAX + 1), non_integral,
                     st.text(max_size=4), st.booleans(), st.none())
bad_bool = st.one_of(st.integers(), st.text(max_size=4), st.none(), st.floats(allow_nan=False))


def bad_choice(allowed):
    return st.one_of(st.text(max_size=6).filter(lambda s: s not in allowed), st.integers(), st.none(),
                     st.floats(allow_nan=False))


bad_ids = st.one_of(
    st.lists(st.integers(min_value=0, max_value=V - 1), max_size=3).map(lambda xs: xs + [7.9]),  # a float id
    st.lists(st.integers(min_value=V), min_size=1, max_size=3),                                  # past the vocab
    st.lists(st.integers(max_value=-1), min_size=1, max_size=3),                                 # negative
    st.just("the dog"), st.none(), st.floats(allow_nan=False))
bad_id = st.one_of(st.integers(max_value=-1), st.integers(min_value=V), non_integral, st.text(max_size=3),
                   st.booleans(), st.none())
bad_nonempty = st.just([])


# --- the table -----------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    fn: Callable
    valid: dict
    bad: dict = field(default_factory=dict)  # argument -> strategy of wrong values
    words: dict = field(default_factory=dict)  # argument -> the name its message uses, if not the argument's

    def call(self, **changes):
        return self.fn(**{**self.valid, **changes})


def _rows():
    return TOK.pad([TOK.encode_tokens(s) for s in SENTS])


CASES = [
    # corpus
    Case("corpus.sentences", LANG.sentences, dict(n=3, seed=0), dict(n=bad_int(0), seed=bad_seed)),
    Case("corpus.sample", LANG.sample, dict(n=2, seed=0), dict(n=bad_int(0), seed=bad_seed)),
    Case("corpus.token_stream", LANG.token_stream, dict(n_tokens=10, seed=0),
         dict(n_tokens=bad_int(0), seed=bad_seed)),
    Case("corpus.text", LANG.text, dict(n=2, seed=0), dict(n=bad_int(0), seed=bad_seed)),
    Case("corpus.masked_distribution", LANG.masked_distribution, dict(tokens="the dog barks .", position=1),
         dict(position=bad_int(0, 3, none_ok=True))),
    Case("corpus.toy", corpus.toy, dict(variant="standard"), dict(variant=bad_choice(["standard", "shifted"]))),
    # tokenizers
    Case("tokenizers.decode", TOK.decode, dict(ids=[5, 6]), dict(ids=bad_ids, skip_special=bad_bool)),
    Case("tokenizers.id_to_token", TOK.id_to_token, dict(i=5), dict(i=bad_id), dict(i="id")),
    Case("tokenizers.pad", TOK.pad, dict(rows=[[5, 6], [7]]), dict(max_length=bad_int(1, none_ok=True))),
    Case("tokenizers.encode", TOK.encode, dict(text="the dog"), dict(text=not_a_number.filter(
        lambda x: not isinstance(x, str)))),
    Case("tokenizers.encode_batch", TOK.encode_batch, dict(texts=["the dog"]),
         dict(add_bos=bad_bool, max_length=bad_int(1, none_ok=True))),
    Case("tokenizers.WordTokenizer.from_text", WordTokenizer.from_text, dict(text="a b a", min_count=1),
         dict(min_count=bad_int(1))),
    # data
    Case("data.next_token_batch", data.next_token_batch, dict(ids=STREAM, batch_size=2, context=4),
         dict(batch_size=bad_int(1), context=bad_int(1))),
    Case("data.masked_batch", data.masked_batch, dict(rows=_rows(), tokenizer=TOK, mask_prob=0.15),
         dict(mask_prob=bad_real(0, 1, low_open=True), protect_special=bad_bool)),
    Case("data.sentence_rows", data.sentence_rows, dict(sentences=SENTS, tokenizer=TOK),
         dict(max_len=bad_int(1, none_ok=True), return_attention_mask=bad_bool)),
    Case("data.evaluate_sentences", data.evaluate_sentences, dict(model=MODEL, tokenizer=TOK, sentences=SENTS),
         dict(batch_size=bad_int(1), per=bad_choice(["word", "token"]))),
    Case("data.exact_gap", data.exact_gap, dict(model=MODEL, tokenizer=TOK, lang=LANG, sentences=SENTS),
         dict(sentences=bad_nonempty)),
    # models
    Case("models.TransformerConfig", TransformerConfig, dict(vocab_size=V, context_length=8, d_model=16, n_head=2),
         dict(vocab_size=bad_int(1), n_layer=bad_int(1), dropout=bad_real(0, 1), init_std=bad_real(0, low_open=True),
              layer_norm_eps=bad_real(0, 1, low_open=True), rotary_base=bad_real(1, low_open=True),
              activation=bad_choice(models.ACTIVATIONS), causal=bad_bool)),
    Case("models.NGramLM", NGramLM, dict(n=2, vocab_size=V),
         dict(n=bad_int(1), vocab_size=bad_int(1, none_ok=True), k=bad_real(0), discount=bad_real(0, 1, low_open=True),
              smoothing=bad_choice(NGramLM.SMOOTHINGS))),
    Case("models.NGramLM.prob", NGRAM.prob, dict(token=5, context=[4]), dict(token=bad_id)),
    Case("models.MLPConfig", models.MLPConfig, dict(vocab_size=V), dict(window=bad_int(1), dropout=bad_real(0, 1))),
    Case("models.RNNConfig", models.RNNConfig, dict(vocab_size=V), dict(d_hidden=bad_int(1), dropout=bad_real(0, 1))),
    Case("models.sinusoidal_positions", models.sinusoidal_positions, dict(n_positions=4, d_model=8),
         dict(n_positions=bad_int(1), d_model=bad_int(1))),
    Case("models.apply_rotary", models.apply_rotary, dict(x=torch.ones(1, 1, 3, 4), positions=torch.arange(3)),
         dict(base=bad_real(0, low_open=True))),
    # train
    Case("train.TrainConfig", train.TrainConfig, dict(steps=5),
         dict(steps=bad_int(1), batch_size=bad_int(1), lr=bad_real(0, low_open=True), weight_decay=bad_real(0),
              grad_clip=bad_real(0, none_ok=True), mask_prob=bad_real(0, 1, low_open=True, high_open=True),
              warmup_steps=bad_int(0), seed=bad_seed,
              objective=bad_choice(["next", "masked"]).filter(lambda s: s is not None))),
    Case("train.train", train.train,
         dict(model=MODEL, train_data=STREAM, val_data=None, config=train.TrainConfig(steps=1, batch_size=2, context=8),
              progress=False),
         dict(progress=bad_bool, resume=bad_bool)),
    # generate
    Case("generate.generate", generate.generate, dict(model=MODEL, prompt=[5, 6], max_new_tokens=2, seed=0),
         dict(max_new_tokens=bad_int(0), temperature=bad_real(0, low_open=True), top_k=bad_int(1, none_ok=True),
              top_p=bad_real(0, 1, low_open=True, none_ok=True), seed=bad_seed.filter(lambda s: s is not None),
              num_samples=bad_int(1), strategy=bad_choice(generate.STRATEGIES).filter(lambda s: s is not None),
              prompt=bad_ids, use_cache=bad_bool)),
    Case("generate.beam_search", generate.beam_search, dict(model=MODEL, prompt=[5], num_beams=2, max_new_tokens=2),
         dict(num_beams=bad_int(1), max_new_tokens=bad_int(0), length_penalty=bad_real(0), prompt=bad_ids)),
    Case("generate.next_token_distribution", generate.next_token_distribution, dict(model=MODEL, prompt=[5]),
         dict(temperature=bad_real(0, low_open=True), top_k=bad_int(1, none_ok=True), prompt=bad_ids)),
    Case("generate.apply_temperature", generate.apply_temperature, dict(logits=LOGITS, temperature=0.5),
         dict(temperature=bad_real(0, low_open=True))),
    Case("generate.sample_from_logits", generate.sample_from_logits, dict(logits=LOGITS),
         dict(temperature=bad_real(0, low_open=True), top_k=bad_int(1, none_ok=True),
              top_p=bad_real(0, 1, low_open=True, none_ok=True))),
    Case("generate.top_k_filter", generate.top_k_filter, dict(logits=LOGITS, k=2), dict(k=bad_int(1))),
    Case("generate.top_p_filter", generate.top_p_filter, dict(logits=LOGITS, p=0.9), dict(p=bad_real(0, 1, low_open=True))),
    Case("generate.top_tokens", generate.top_tokens, dict(probs=torch.softmax(LOGITS, 0), tokenizer=TOK, k=2),
         dict(k=bad_int(1))),
    # measure
    Case("measure.perplexity", measure.perplexity, dict(cross_entropy=1.0),
         dict(cross_entropy=st.one_of(st.just(math.nan), st.just(-math.inf), st.floats(max_value=-1e-9),
                                      st.text(max_size=3), st.none(), st.booleans()))),
    Case("measure.fit_ngrams", measure.fit_ngrams, dict(sequences=TRAIN_IDS, orders=[1, 2], vocab_size=V),
         dict(orders=st.one_of(st.just([]), st.lists(bad_int(1), min_size=1, max_size=2)))),
    Case("measure.with_counts", measure.with_counts, dict(lm=NGRAM, n=1), dict(n=bad_int(1, 2, none_ok=True))),
    Case("measure.evaluate", measure.evaluate, dict(model=NGRAM, tokenizer=TOK, sentences=SENTS),
         dict(per=bad_choice(["word", "token"]))),
    # viz
    Case("viz.softmax", viz.softmax, dict(logits=[1.0, 2.0], temperature=1.0), dict(temperature=bad_real(0, low_open=True))),
    Case("viz.top_k_keep", viz.top_k_keep, dict(probs=PROBS, k=2), dict(k=bad_int(1))),
    Case("viz.top_p_keep", viz.top_p_keep, dict(probs=PROBS, p=0.5), dict(p=bad_real(0, 1, low_open=True))),
    Case("viz.project", viz.project, dict(vectors=VECS, dims=2, seed=0), dict(dims=bad_choice([2, 3]), seed=bad_seed)),
    # geometry, interpret, experiments, variants, textstats
    Case("geometry.control_labels", geometry.control_labels, dict(labels=["a", "b", "a"], seed=0), dict(seed=bad_seed)),
    Case("interpret.random_purity", interpret.random_purity,
         dict(vocab=["a", "b", "c"], label=str.upper, k=2, n=5, seed=0), dict(seed=bad_seed)),
    Case("experiments.tiny_transformer", experiments.tiny_transformer, dict(vocab_size=V, d_model=8, n_head=2, seed=0),
         dict(seed=bad_seed, vocab_size=bad_int(1), n_layer=bad_int(1))),
    Case("experiments.TinyNet.create", experiments.TinyNet.create, dict(seed=0), dict(seed=bad_seed, hidden=bad_int(1))),
    Case("experiments.copy_enriched_sentences", experiments.copy_enriched_sentences,
         dict(lang=LANG, n_sentences=5, share=0.2, seed=0),
         dict(n_sentences=bad_int(1), share=bad_real(0, 1, high_open=True), seed=bad_seed)),
    Case("experiments.descend", experiments.descend, dict(w0=1.0, lr=0.1, steps=3),
         dict(w0=bad_real(), lr=bad_real(0), steps=bad_int(0), curvature=bad_real())),
    Case("variants.agreement_pairs", variants.agreement_pairs, dict(n=3, seed=0), dict(n=bad_int(1), seed=bad_seed)),
    Case("variants.shuffled_sentences", variants.shuffled_sentences, dict(n=3, seed=0),
         dict(n=bad_int(1), seed=bad_seed)),
    Case("variants.random_codes", variants.random_codes, dict(n=3, length=2, seed=0),
         dict(n=bad_int(1), length=bad_int(1), seed=bad_seed)),
    Case("textstats.ngrams", textstats.ngrams, dict(words=["a", "b", "c"], n=2), dict(n=bad_int(1))),
    Case("textstats.distinct_n", textstats.distinct_n, dict(texts=["a b c", "a b"], n=2), dict(n=bad_int(1))),
]

ARGUMENTS = [(case, arg) for case in CASES for arg in case.bad]


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        elapsed = time.perf_counter() - t0
        assert elapsed < DEADLINE_S, f"took {elapsed:.1f} s (limit {DEADLINE_S} s)"


def check_valid(case: Case) -> None:
    """The valid call of ``case`` succeeds."""
    try:
        _timed(case.call)
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"{case.name}: the valid call {case.valid} raised {type(err).__name__}: {err}") from err


def check_refused(case: Case, arg: str, value: Any) -> None:
    """``case`` with ``arg=value`` raises a ValueError/TypeError whose message names ``arg``."""
    word = case.words.get(arg, arg)
    try:
        _timed(case.call, **{arg: value})
    except (ValueError, TypeError) as err:
        assert word in str(err), f"{case.name}({arg}={value!r}): the message does not name {word!r}: {err}"
        return
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"{case.name}({arg}={value!r}) raised {type(err).__name__} (not ValueError/TypeError):"
                             f" {err}") from err
    raise AssertionError(f"{case.name}({arg}={value!r}) was accepted")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_valid_calls_succeed(case):
    check_valid(case)


@pytest.mark.parametrize("case, arg", ARGUMENTS, ids=[f"{c.name}-{a}" for c, a in ARGUMENTS])
def test_wrong_arguments_get_a_clear_error(case, arg):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(value=case.bad[arg])
    def run(value):
        check_refused(case, arg, value)

    run()


def test_every_module_has_cases():
    modules = {c.name.split(".")[0] for c in CASES}
    assert modules >= {"corpus", "tokenizers", "data", "models", "train", "generate", "measure", "viz", "geometry",
                       "interpret", "experiments", "variants", "textstats"}


# --- planted faults: each half catches what it exists for -------------------------------------------------

def test_a_function_that_refuses_everything_fails_the_valid_half():
    def refuses(**kwargs):
        raise ValueError("n must be an int >= 0")

    with pytest.raises(AssertionError, match="the valid call"):
        check_valid(Case("refuses", refuses, dict(n=3), dict(n=bad_int(0))))


def test_a_function_that_accepts_everything_fails_the_refusal_half():
    def accepts(n=0):
        return n

    with pytest.raises(AssertionError, match="was accepted"):
        check_refused(Case("accepts", accepts, dict(n=3)), "n", -1)


def test_an_unnamed_argument_or_a_crash_fails_the_refusal_half():
    def vague(count=0):
        raise ValueError("bad input")

    def crashes(count=0):
        return [1, 2][count]

    with pytest.raises(AssertionError, match="does not name"):
        check_refused(Case("vague", vague, dict(count=3)), "count", -1)
    with pytest.raises(AssertionError, match="IndexError"):
        check_refused(Case("crashes", crashes, dict(count=0)), "count", 5)


# --- the list, case by case ------------------------------------------------------------------------

def _raises(fn, error, *words):
    with pytest.raises(error) as info:
        fn()
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def test_non_finite_numbers_are_refused():
    _raises(lambda: train.TrainConfig(lr=math.inf), ValueError, "lr", "finite")
    _raises(lambda: train.TrainConfig(weight_decay=math.inf), ValueError, "weight_decay")
    _raises(lambda: TransformerConfig(vocab_size=V, init_std=math.inf), ValueError, "init_std")
    _raises(lambda: generate.beam_search(MODEL, [5], length_penalty=math.nan), ValueError, "length_penalty")
    _raises(lambda: generate.sample_from_logits(torch.tensor([10.0, 1.0]), temperature=1e-38), ValueError,
            "temperature", "greedy")
    _raises(lambda: generate.sample_from_logits(torch.tensor([1.0, math.nan])), ValueError, "logits")
    _raises(lambda: generate.sample_from_logits(torch.full((3,), -math.inf)), ValueError, "logits")
    _raises(lambda: measure.perplexity(math.nan), ValueError, "cross_entropy")
    assert measure.perplexity(math.inf) == math.inf  # a zero-probability token: allowed


def test_wrong_kinds_of_ids():
    _raises(lambda: TOK.decode([7.9]), TypeError, "ids", "7.9")
    _raises(lambda: NGRAM.prob(1.5, [4]), TypeError, "token")
    small = NGramLM(2, vocab_size=V - 3).fit([[1, 2, 3]])
    _raises(lambda: measure.evaluate(small, TOK, SENTS), ValueError, "vocab_size")
    large = NGramLM(2, vocab_size=V + 3).fit(TRAIN_IDS)
    _raises(lambda: data.exact_gap(large, TOK, LANG, SENTS), ValueError, "vocab_size")
    _raises(lambda: generate.generate(MODEL, [V + 5], 2), ValueError, "prompt", "vocab_size")


def test_empty_and_out_of_range():
    _raises(lambda: data.exact_gap(MODEL, TOK, LANG, []), ValueError, "sentences")
    _raises(lambda: generate.generate(MODEL, [5], 2, seed=2**70), ValueError, "seed", "2**63 - 1")
    _raises(lambda: LANG.sentences(3, seed="abc"), TypeError, "seed")


def test_resume_with_a_changed_config_says_what_changed(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cfg = train.TrainConfig(steps=2, batch_size=2, context=8, eval_batches=0)
    m = experiments.tiny_transformer(V, d_model=8, n_head=2, context=8)
    train.train(m, STREAM, None, cfg, checkpoint=path, progress=False)
    grown = train.TrainConfig(steps=3, batch_size=2, context=8, eval_batches=0)
    train.train(m, STREAM, None, grown, checkpoint=path, resume=True, progress=False)  # only steps grew: fine
    changed = train.TrainConfig(steps=4, batch_size=2, context=8, eval_batches=0, lr=1e-2)
    _raises(lambda: train.train(m, STREAM, None, changed, checkpoint=path, resume=True, progress=False),
            ValueError, "lr", "0.003", "0.01", "only steps may grow")


def test_damaged_files_name_their_path(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    cfg = train.TrainConfig(steps=1, batch_size=2, context=8, eval_batches=0)
    m = experiments.tiny_transformer(V, d_model=8, n_head=2, context=8)
    train.train(m, STREAM, None, cfg, checkpoint=path, progress=False)
    path.write_bytes(path.read_bytes()[:100])
    _raises(lambda: train.load_checkpoint(path, m), ValueError, str(path))
    tok_path = tmp_path / "tok.json"
    TOK.save(tok_path)
    import json

    state = json.loads(tok_path.read_text())
    del state["tokens"]
    tok_path.write_text(json.dumps(state))
    _raises(lambda: tokenizers.Tokenizer.load(tok_path), ValueError, str(tok_path), "'tokens'")


def test_seeds_follow_the_offset(monkeypatch):
    """A seed a reader passes is shifted by $LMLAB_SEED_OFFSET; fixed inputs are not."""
    from lmlab import env

    base = LANG.sentences(3, seed=5)
    monkeypatch.setenv("LMLAB_SEED_OFFSET", "1")
    assert LANG.sentences(3, seed=4) == base
    with env.fixed_seeds():
        assert LANG.sentences(3, seed=5) == base
    assert checks.seed_of(np.int64(4)) == 5


def test_checks_accept_what_chapters_pass():
    assert checks.check_int(np.int64(3), "n", 1) == 3
    assert checks.check_real(np.float32(0.5), "p", 0, 1) == 0.5
    assert checks.check_real(torch.tensor(0.25), "p", 0, 1) == 0.25
    assert checks.check_ids(np.array([1, 2]), "ids", 5) == [1, 2]
    assert checks.check_ids(torch.tensor([1, 2]), "ids", 5) == [1, 2]
    assert TOK.decode(np.array([5, 6])) == TOK.decode([5, 6])
    assert checks.check_seed is __import__("lmlab.env", fromlist=["check_seed"]).check_seed

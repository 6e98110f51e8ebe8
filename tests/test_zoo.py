"""lmlab.zoo: trained on demand, cached under a key, damaged files detected and retrained.

The real zoo models take ~20 s each to train, so these tests use tiny specs of the same kinds (a
ZooSpec is the public way to define a zoo model); benchmarks/zoo_gaps.py measures the real ones.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lmlab import zoo


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LMLAB_BOOK", raising=False)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path / "cache"
    torch.set_num_threads(old)


def tiny(name="toy-gpt", **changes) -> zoo.ZooSpec:
    spec = zoo.SPECS[name]
    return dataclasses.replace(spec, name=f"test-{name}", model={**spec.model, "n_layer": 1, "n_head": 2, "d_model": 16,
                                                                  "d_ff": 32},
                               train={**spec.train, "steps": 6, "batch_size": 4}, train_sentences=200,
                               val_sentences=40, **changes)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_zoo_lists_its_models():
    assert {"toy-gpt", "toy-bert", "toy-char"} <= set(zoo.available())
    assert set(zoo.describe()) == set(zoo.available())
    with pytest.raises(ValueError, match="toy-gpt"):  # the message lists what is available
        zoo.load("toy-gtp")
    with pytest.raises(TypeError, match="name"):
        zoo.load(3)


def test_zoo_contexts_hold_every_held_out_sentence():
    """The gap evaluation feeds "." + a whole sentence; each model's context must hold the longest."""
    sentences = zoo.held_out_sentences(2000)
    longest_words = max(len(s) for s in sentences)
    longest_chars = max(len(" ".join(s)) for s in sentences)
    for name in zoo.available():
        spec = zoo.SPECS[name]
        need = longest_words + 1 if spec.tokenizer == "word" else longest_chars + 2
        assert spec.model["context_length"] >= need, name


def test_first_load_trains_then_the_cache_serves(fresh_cache, capsys):
    spec = tiny()
    model, tok = zoo.load(spec)
    first = model.zoo_info
    assert not first.from_cache and first.steps == 6 and first.tokens_seen == 6 * 4 * spec.model["context_length"]
    assert "training 'test-toy-gpt'" in capsys.readouterr().out
    path = zoo.cache_path(spec)
    assert path.is_file() and path.parent == fresh_cache / "zoo"
    assert zoo.cache_key(spec)[:16] in path.name
    again, tok2 = zoo.load(spec)
    assert again.zoo_info.from_cache and again.zoo_info.key == first.key
    assert same_weights(model, again) and tok2.vocab == tok.vocab
    assert not again.training
    idx = torch.tensor([tok.encode(". the dog")])
    assert torch.equal(model(idx), again(idx))
    assert capsys.readouterr().out == ""  # a cache hit is silent


def test_training_is_deterministic_and_retrain_ignores_the_cache():
    spec = tiny()
    a, _ = zoo.load(spec, verbose=False)
    b, _ = zoo.load(spec, retrain=True, verbose=False)
    assert not b.zoo_info.from_cache and same_weights(a, b)


def test_the_key_covers_the_spec():
    spec = tiny()
    keys = {zoo.cache_key(spec),
            zoo.cache_key(dataclasses.replace(spec, train={**spec.train, "steps": 7})),
            zoo.cache_key(dataclasses.replace(spec, model={**spec.model, "d_model": 32})),
            zoo.cache_key(dataclasses.replace(spec, data_seed=7)),
            zoo.cache_key(dataclasses.replace(spec, train_sentences=201)),
            zoo.cache_key(dataclasses.replace(spec, variant="shifted"))}
    assert len(keys) == 6
    assert zoo.cache_key(spec) == zoo.cache_key(tiny())  # and nothing else


@pytest.mark.parametrize("damage", ["flip", "truncate", "checksum"])
def test_a_damaged_cache_file_is_detected_and_retrained(damage, capsys):
    spec = tiny()
    original, _ = zoo.load(spec, verbose=False)
    path = zoo.cache_path(spec)
    if damage == "flip":
        raw = bytearray(path.read_bytes())
        raw[-10] ^= 0xFF  # inside the last tensor's data
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.with_name(path.name + ".sha256").unlink()
    capsys.readouterr()
    model, _ = zoo.load(spec, verbose=False)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "damaged" in out[0] and "retraining" in out[0] and "test-toy-gpt" in out[0]
    assert not model.zoo_info.from_cache and same_weights(model, original)
    healed, _ = zoo.load(spec, verbose=False)  # the file was rewritten and is trusted again
    assert healed.zoo_info.from_cache


def test_masked_and_character_models(capsys):
    bert, wtok = zoo.load(tiny("toy-bert"), verbose=False)
    assert not bert.causal and wtok.kind == "word"
    char, ctok = zoo.load(tiny("toy-char"), verbose=False)
    assert char.causal and ctok.kind == "char"
    text = "the dog that the cats see barks ."
    assert ctok.decode(ctok.encode(text)) == text  # every character of the language is in the vocabulary
    gap = zoo.gap(tiny("toy-gpt"), n_sentences=10)
    assert gap.n_sentences == 10 and gap.gap > 0  # an untrained model is far above the exact loss


def test_sentence_layout_trains_on_whole_sentences():
    spec = tiny(layout="sentences")
    model, _ = zoo.load(spec, verbose=False)
    assert model.zoo_info.tokens_seen == 6 * 4 * spec.model["context_length"]
    with pytest.raises(ValueError, match="layout"):
        tiny(layout="rows")


def test_train_load_zoo_model_is_the_same_call():
    from lmlab import train

    spec = tiny()
    a, _ = train.load_zoo_model(spec, verbose=False)
    b, _ = zoo.load(spec, verbose=False)
    assert same_weights(a, b) and b.zoo_info.from_cache


def test_training_uses_the_specs_thread_count_not_the_callers(monkeypatch):
    """Float sums over another thread count round differently: the spec fixes the count, so a chapter
    that set one thread for its own work trains the same model as the book; the caller's is restored."""
    import lmlab.train

    seen = []
    real_train = lmlab.train.train

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_train(*args, **kwargs)

    monkeypatch.setattr(lmlab.train, "train", spy)
    spec = tiny(threads=2)
    models = []
    for caller in (1, 3):
        torch.set_num_threads(caller)
        model, _ = zoo.load(spec, retrain=True, verbose=False)
        assert torch.get_num_threads() == caller
        assert model.zoo_info.threads == 2
        models.append(model)
    assert seen == [2, 2]
    assert same_weights(*models)
    assert all(spec.threads == 2 for spec in zoo.SPECS.values())  # 2 cores: the course machines, Colab
    with pytest.raises(ValueError, match="threads must be an int >= 1"):
        tiny(threads=0)

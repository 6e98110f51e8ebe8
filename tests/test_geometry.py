"""lmlab.geometry: vectors, neighbours, projections, regularities, context, probes, figures, checker."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lmlab import corpus, geometry as G, viz
from lmlab.models import Transformer, TransformerConfig
from lmlab.tokenizers import WordTokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lang():
    return corpus.toy()


@pytest.fixture(scope="module")
def tok(lang):
    return WordTokenizer.for_toy(lang)


def tiny(tok, causal: bool) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=tok.vocab_size, context_length=24, n_layer=2, n_head=2, d_model=16,
                            d_ff=32, causal=causal)
    return Transformer(cfg).eval()


# --- vectors ---------------------------------------------------------------------------------------

def test_embedding_matrix_reads_our_and_hf_models(tok):
    model = tiny(tok, True)
    E = G.embedding_matrix(model)
    assert E.shape == (tok.vocab_size, 16)
    assert np.array_equal(E, model.wte.weight.detach().numpy())
    E[0, 0] += 1.0  # a copy: editing it leaves the model alone
    assert E[0, 0] != model.wte.weight[0, 0].item()

    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16))
    assert G.embedding_matrix(bert).shape == (50, 8)
    with pytest.raises(TypeError, match="embedding table"):
        G.embedding_matrix(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("causal", [True, False])
def test_collect_activations_shapes_positions_and_padding(lang, tok, causal):
    model = tiny(tok, causal)
    sents = lang.sample(12, seed=4)
    acts = G.collect_activations(model, tok, sents, batch_size=5)
    wanted = [(w, t) for s in sents for w, t in zip(s.tokens, s.tags) if t.pos in ("NOUN", "VERB", "ADJ")]
    assert len(acts) == len(wanted) and acts.words == [w for w, _ in wanted]
    assert acts.vectors.shape == (3, len(wanted), 16)
    assert acts.layer_names == ["0 (embedding)", "1", "2"]
    # layer 0 is the token embedding plus the position embedding (word i sits at position i + 1)
    for i in (0, len(acts) - 1):
        ident = tok.token_to_id(acts.words[i])
        expect = model.wte.weight[ident] + model.wpe.weight[acts.position[i] + 1]
        np.testing.assert_allclose(acts.vectors[0, i], expect.detach().numpy(), atol=1e-6)
        assert acts.sentences[acts.sentence[i]][acts.position[i]] == acts.words[i]
    # padding inside a batch changes nothing: each sentence alone gives the same vectors
    alone = [G.collect_activations(model, tok, [s]) for s in sents[:4]]
    stacked = np.concatenate([a.vectors for a in alone], axis=1)
    n = stacked.shape[1]
    np.testing.assert_allclose(acts.vectors[:, :n], stacked, atol=1e-5)


def test_collect_activations_layer_0_with_rotary_positions_is_the_word_alone(lang, tok):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=tok.vocab_size, context_length=24, n_layer=1, n_head=2,
                                          d_model=16, positions="rotary")).eval()
    acts = G.collect_activations(model, tok, lang.sample(6, seed=2), keep=lambda w, t: t.pos == "NOUN")
    for i in range(len(acts)):
        np.testing.assert_allclose(acts.vectors[0, i], model.wte.weight[tok.token_to_id(acts.words[i])].detach().numpy(),
                                   atol=1e-6)


def test_collect_activations_keep_select_and_labels(lang, tok):
    model = tiny(tok, False)
    sents = lang.sample(30, seed=5)
    acts = G.collect_activations(model, tok, sents, keep=lambda w, t: t.pos == "NOUN")
    assert set(acts.label("pos")) == {"NOUN"}
    numbers = acts.label("number")
    assert set(numbers) <= {"sg", "pl"} and len(numbers) == len(acts)
    plural = acts.select(numbers == "pl")
    assert len(plural) == int(np.sum(numbers == "pl")) and set(plural.label("number")) == {"pl"}
    with pytest.raises(ValueError, match="unknown tag attribute"):
        acts.label("colour")
    with pytest.raises(TypeError, match="lang.sample"):
        G.collect_activations(model, tok, [["the", "dog", "barks", "."]])
    with pytest.raises(ValueError, match="mask"):
        acts.select([True])


def test_hf_word_activations_with_a_small_bert():
    from transformers import AutoTokenizer, BertConfig, BertModel

    from lmlab.hub import _minilm_dir

    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir(), local_files_only=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32), add_pooling_layer=False).eval()
    texts = ["the bat flew away .", "he swung the bat hard ."]
    V = G.hf_word_activations(model, tokenizer, texts, "bat")
    assert V.shape == (3, 2, 16)
    # layer 0 = word embedding + position + type, layer-normed: the word sits at different positions
    assert not np.allclose(V[0, 0], V[0, 1])
    with pytest.raises(ValueError, match="does not occur"):
        G.hf_word_activations(model, tokenizer, ["no such word here ."], "bat")
    with pytest.raises(ValueError, match="tokens for this tokenizer"):
        G.hf_word_activations(model, tokenizer, texts, "bat flew")


# --- neighbours and projections --------------------------------------------------------------------

def clusters(n_per=10, d=6, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:3] * 5
    X = np.concatenate([c + spread * rng.normal(size=(n_per, d)) for c in centres])
    return X, np.repeat(["a", "b", "c"], n_per)


def test_cosine_matrix():
    S = G.cosine_matrix([[1, 0], [0, 2], [-3, 0]])
    np.testing.assert_allclose(S, [[1, 0, -1], [0, 1, 0], [-1, 0, 1]], atol=1e-12)


def test_neighbor_agreement_against_chance():
    X, labels = clusters()
    agree, chance = G.neighbor_agreement(X, labels, k=5)
    assert agree == 1.0
    assert chance == pytest.approx(9 / 29)
    rng = np.random.default_rng(1)
    agree_random, _ = G.neighbor_agreement(rng.normal(size=(30, 6)), labels, k=5)
    assert agree_random < 0.7
    with pytest.raises(ValueError, match="k must be smaller"):
        G.neighbor_agreement(X, labels, k=30)
    with pytest.raises(ValueError, match="entries"):
        G.neighbor_agreement(X, labels[:5])


def test_neighborhood_preservation_and_centroid_correlation():
    X, labels = clusters(spread=1.0)
    assert G.neighborhood_preservation(X, X.copy(), k=5) == 1.0
    rng = np.random.default_rng(0)
    shuffled = X[rng.permutation(len(X))]
    assert G.neighborhood_preservation(X, shuffled, k=5) < 0.5
    # four groups on a line keep their distance order under a scaling, and reverse it when swapped
    Y = np.concatenate([np.full((5, 2), float(i)) + 0.01 * rng.normal(size=(5, 2)) for i in (0, 1, 3, 7)])
    groups = np.repeat(list("pqrs"), 5)
    assert G.centroid_distance_correlation(Y, 3 * Y, groups) == pytest.approx(1.0)
    scrambled = Y.copy()
    scrambled[:5], scrambled[15:] = Y[15:], Y[:5]  # p and s swap places
    assert G.centroid_distance_correlation(Y, scrambled, groups) < 0.5
    with pytest.raises(ValueError, match="3 groups"):
        G.centroid_distance_correlation(Y[:10], Y[:10], groups[:10])


# --- regularities ----------------------------------------------------------------------------------

def parallelogram(noise=0.01, seed=0):
    """Words a_i and b_i = a_i + v, plus distractors; returns (E, vocab, pairs)."""
    rng = np.random.default_rng(seed)
    d, n = 12, 6
    A = rng.normal(size=(n, d)) * 3
    v = np.zeros(d)
    v[0] = 1.0  # a small offset: b_i is still closest to a_i
    B = A + v + noise * rng.normal(size=(n, d))
    D = rng.normal(size=(8, d)) * 3
    vocab = [f"a{i}" for i in range(n)] + [f"b{i}" for i in range(n)] + [f"x{i}" for i in range(8)]
    return np.concatenate([A, B, D]), vocab, [(f"a{i}", f"b{i}") for i in range(n)]


def test_offset_parallelism_matched_vs_mismatched():
    E, vocab, pairs = parallelogram()
    matched, mismatched = G.offset_parallelism(E, vocab, pairs)
    assert matched > 0.95 and mismatched < 0.5
    rng = np.random.default_rng(3)
    R = rng.normal(size=E.shape)
    m_rand, _ = G.offset_parallelism(R, vocab, pairs)
    assert abs(m_rand) < 0.3
    with pytest.raises(ValueError, match="not in the vocabulary"):
        G.offset_parallelism(E, vocab, [("a0", "zzz"), ("a1", "b1")])


def test_analogy_accuracy_exclusion_baselines_and_candidates():
    E, vocab, pairs = parallelogram(noise=0.8)  # offsets parallel up to noise larger than the offset
    questions = G.analogy_questions(pairs)
    assert len(questions) == 30 and questions[0] == ("a0", "b0", "a1", "b1")
    assert G.analogy_accuracy(E, vocab, questions) == 1.0
    # the offset is small next to the noise, so without leaving the inputs out, c itself mostly wins
    acc, answers = G.analogy_accuracy(E, vocab, questions, exclude_inputs=False, return_answers=True)
    assert acc <= 0.2 and np.mean([ans in q[:3] for ans, q in zip(answers, questions)]) >= 0.8
    # the nearest neighbour of c is its partner here: the baseline solves it without any offset
    assert G.analogy_accuracy(E, vocab, questions, method="nearest_c") == 1.0
    # restrict the answers to the distractors: nothing can be right
    assert G.analogy_accuracy(E, vocab, questions, candidates=[w for w in vocab if w[0] == "x"]) == 0.0
    assert G.random_analogy_baseline(20) == pytest.approx(1 / 17)
    assert G.random_analogy_baseline(20, exclude_inputs=False) == pytest.approx(1 / 20)
    with pytest.raises(ValueError, match="method"):
        G.analogy_accuracy(E, vocab, questions, method="3cosmul")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        G.analogy_accuracy(E, vocab, [("a0", "b0", "a1", "nope")])
    with pytest.raises(ValueError, match="rows"):
        G.analogy_accuracy(E[:-1], vocab, questions)


def test_analogy_offset_beats_nearest_c_when_partners_are_far():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(6, 10))
    A[:, 1] += 20.0  # every word far out along one axis, so cosine ranks like distance
    v = np.zeros(10)
    v[0] = 8.0  # a large shared offset: partners are farther apart than two unrelated words
    B = A + v
    E = np.concatenate([A, B])
    vocab = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]
    q = G.analogy_questions([(f"a{i}", f"b{i}") for i in range(6)])
    assert G.analogy_accuracy(E, vocab, q) == 1.0
    assert G.analogy_accuracy(E, vocab, q, method="nearest_c") == 0.0


# --- context ---------------------------------------------------------------------------------------

def test_separation_score():
    X, labels = clusters()
    assert G.separation_score(X, labels) > 0.9
    rng = np.random.default_rng(0)
    assert abs(G.separation_score(X, rng.permutation(labels))) < 0.15
    assert G.separation_score(np.ones((6, 3)), list("aabbcc")) == 0.0
    by_layer = G.separation_by_layer(np.stack([np.ones_like(X), X]), labels)
    assert by_layer[0] == 0.0 and by_layer[1] > 0.9
    with pytest.raises(ValueError, match="two different"):
        G.separation_score(X, ["a"] * len(X))


def test_senses_allowed(lang):
    flies = "the bat flies .".split()
    assert G.senses_allowed(lang, flies, 1) == {"animal"}
    assert G.senses_allowed(lang, flies, 1, left_only=True) == {"animal", "tool"}
    swings = "the boy swings the bat .".split()
    assert G.senses_allowed(lang, swings, 4) == {"tool"}
    assert G.senses_allowed(lang, swings, 4, left_only=True) == {"tool"}
    sees = "the girl sees the bats .".split()
    assert G.senses_allowed(lang, sees, 4) == {"animal", "tool"}
    with pytest.raises(ValueError, match="'bat' or 'bats'"):
        G.senses_allowed(lang, flies, 0)


# --- probes ----------------------------------------------------------------------------------------

def fake_acts(n_sent=40, per=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    n = n_sent * per
    words = [f"w{i % 7}" for i in range(n)]
    return G.Activations(rng.normal(size=(2, n, d)), words, [corpus.Tag("NOUN")] * n,
                         np.repeat(np.arange(n_sent), per), np.tile(np.arange(per), n_sent), [[]] * n_sent)


def test_split_by_sentence_keeps_sentences_whole():
    acts = fake_acts()
    train, test = G.split_by_sentence(acts, 0.25, seed=1)
    assert not np.any(train & test) and np.all(train | test)
    assert set(acts.sentence[train]).isdisjoint(acts.sentence[test])
    assert len(set(acts.sentence[test])) == 10
    with pytest.raises(ValueError, match="test_fraction"):
        G.split_by_sentence(acts, 1.5)


def test_control_labels_per_type_and_shuffled():
    words = ["dog", "dogs", "cat", "dog", "cats", "cat", "dog"] * 20
    labels = ["sg", "pl", "sg", "sg", "pl", "sg", "sg"] * 20
    ctrl = G.control_labels(labels, words, seed=3)
    assert ctrl.shape == (len(words),)
    for w in set(words):  # one label per word type
        assert len({c for c, ww in zip(ctrl, words) if ww == w}) == 1
    assert set(ctrl) <= {"sg", "pl"}
    shuffled = G.control_labels(labels, seed=3)
    assert sorted(shuffled) == sorted(labels) and list(shuffled) != labels
    with pytest.raises(ValueError, match="words has"):
        G.control_labels(labels, words[:3])


def test_probe_accuracy_and_layers():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = np.where(X[:, 0] > 0, "pl", "sg")
    assert G.probe_accuracy(X[:200], y[:200], X[200:], y[200:]) > 0.95
    noise = rng.permutation(y)
    assert G.probe_accuracy(X[:200], noise[:200], X[200:], noise[200:]) < 0.7
    with pytest.raises(ValueError, match="one class"):
        G.probe_accuracy(X[:10], ["sg"] * 10, X[10:20], y[10:20])
    acts = fake_acts(n_sent=100, d=8)
    acts.vectors[1, :, 0] = np.where(np.arange(len(acts)) % 2 == 0, 3.0, -3.0)  # layer 1 encodes parity
    labels = np.where(np.arange(len(acts)) % 2 == 0, "even", "odd")
    train, test = G.split_by_sentence(acts, 0.3)
    accs = G.probe_layers(acts, labels, train, test)
    assert len(accs) == 2 and accs[1] == 1.0 and accs[0] < 0.75
    with pytest.raises(ValueError, match="overlap"):
        G.probe_layers(acts, labels, train, train)


# --- counting --------------------------------------------------------------------------------------

def test_cooccurrence_embeddings(lang):
    # "cat" and "dog" occur in exactly the same contexts: their vectors point the same way
    sents = [["the", "cat", "sleeps", "."], ["the", "dog", "sleeps", "."], ["a", "bird", "flies", "."]] * 5
    vocab = ["the", "a", "cat", "dog", "bird", "sleeps", "flies", "."]
    C = G.cooccurrence_embeddings(sents, vocab, window=1, dims=4)
    assert C.shape == (8, 4)
    S = G.cosine_matrix(C)
    assert S[2, 3] == pytest.approx(1.0) and S[2, 4] < 0.9
    with pytest.raises(ValueError, match="no word"):
        G.cooccurrence_embeddings([["zzz"]], vocab)
    # on the toy language, counting alone groups words by class far above chance
    C = G.cooccurrence_embeddings(lang.sentences(400, seed=1), lang.vocab, window=2, dims=16)
    agree, chance = G.neighbor_agreement(C, [lang.word_class(w) for w in lang.vocab], k=5)
    assert agree > 2 * chance


# --- figures ---------------------------------------------------------------------------------------

def test_offsets_figure():
    E, vocab, pairs = parallelogram()
    fig = G.offsets_figure(E, vocab, pairs, names=("singular", "plural"))
    assert len(fig.data) == 2 and len(fig.layout.annotations) == len(pairs)
    assert [t.name for t in fig.data] == ["singular", "plural"]
    assert "a0 to b0" in viz.alt_text(fig) and "PC 1" in fig.layout.xaxis.title.text


def test_layer_scores_figure():
    fig = G.layer_scores_figure({"task": [0.5, 0.9, 0.95], "control": [0.5, 0.6, 0.55]}, ["0", "1", "2"],
                                y_title="probe accuracy", chance=0.5, dashed=["control"])
    assert len(fig.data) == 2 and list(fig.data[0].y) == [0.5, 0.9, 0.95]
    assert fig.data[0].line.dash == "solid" and fig.data[1].line.dash == "dash"
    assert "chance at 0.50" in viz.alt_text(fig)
    with pytest.raises(ValueError, match="values but there are"):
        G.layer_scores_figure({"x": [1, 2]}, ["0", "1", "2"])
    with pytest.raises(ValueError, match="not in scores"):
        G.layer_scores_figure({"x": [1, 2, 3]}, ["0", "1", "2"], dashed=["y"])


# --- the exercise checker --------------------------------------------------------------------------

def run_check(capsys, fn):
    result = G.check_probe(fn)
    return result, capsys.readouterr().out


def test_check_probe_accepts_reference_and_variants(capsys):
    from sklearn.linear_model import LogisticRegression

    def ok(Xtr, ytr, Xte, yte):
        return LogisticRegression(max_iter=1000).fit(Xtr, ytr).score(Xte, yte)

    def ok_predictions(Xtr, ytr, Xte, yte):
        pred = LogisticRegression(max_iter=1000).fit(Xtr, ytr).predict(Xte)
        return float((pred == yte).mean())

    for fn in (ok, ok_predictions, G.probe_accuracy):
        result, out = run_check(capsys, fn)
        assert result and "correct on all 3" in out


@pytest.mark.parametrize("kind, message", [
    ("train", "scored on held-out data"),
    ("fit_test", "fit the probe on the test split"),
    ("fit_both", "training and the test data together"),
    ("error", "error rate"),
    ("predict", "predictions"),
    ("percent", "percentage"),
    ("todo", "not attempted yet"),
])
def test_check_probe_names_mistakes(capsys, kind, message):
    from sklearn.linear_model import LogisticRegression

    def wrong(Xtr, ytr, Xte, yte):
        if kind == "todo":
            raise NotImplementedError
        if kind == "fit_test":
            return LogisticRegression(max_iter=1000).fit(Xte, yte).score(Xte, yte)
        if kind == "fit_both":
            probe = LogisticRegression(max_iter=1000).fit(np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]))
            return probe.score(Xte, yte)
        probe = LogisticRegression(max_iter=1000).fit(Xtr, ytr)
        return {"train": lambda: probe.score(Xtr, ytr), "error": lambda: 1 - probe.score(Xte, yte),
                "predict": lambda: probe.predict(Xte), "percent": lambda: 100 * probe.score(Xte, yte)}[kind]()

    result, out = run_check(capsys, wrong)
    assert bool(result) is False and message in out

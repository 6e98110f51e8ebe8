"""Tokenizers: round trips on each stated input domain, unknown input, specials, batches, save/load."""
from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmlab.tokenizers import SPECIAL_TOKENS, BPETokenizer, CharTokenizer, TextWordTokenizer, Tokenizer, WordTokenizer

torch.set_num_threads(1)

TRAIN_TEXT = (
    "the dogs that the boy feeds bark .\nthe cat sleeps . every girl sees her cat .\n"
    "two princes laugh . a bat flies . the boy hits the ball with a bat .\t(tab) 'quote' 42 !"
) * 3
ALPHABET = sorted(set(TRAIN_TEXT))
WORDS = sorted(set(TRAIN_TEXT.split()))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_cache: dict = {}


def bpe(byte_level: bool = False) -> BPETokenizer:
    """Trained once per test session (training takes a few milliseconds, but hypothesis calls often)."""
    if byte_level not in _cache:
        _cache[byte_level] = BPETokenizer.train(TRAIN_TEXT, vocab_size=300 if byte_level else 80,
                                                byte_level=byte_level)
    return _cache[byte_level]


def all_tokenizers() -> list[Tokenizer]:
    return [CharTokenizer.from_text(TRAIN_TEXT), WordTokenizer.from_text(TRAIN_TEXT), bpe(False), bpe(True),
            TextWordTokenizer.from_text(TRAIN_TEXT)]


# --- the shared interface -----------------------------------------------------------------------

@pytest.mark.parametrize("tok", all_tokenizers(), ids=["char", "word", "bpe", "bpe-bytes", "textword"])
def test_specials_come_first_with_distinct_ids(tok):
    assert tok.vocab[:5] == list(SPECIAL_TOKENS)
    ids = [tok.pad_id, tok.unk_id, tok.mask_id, tok.bos_id, tok.eos_id]
    assert ids == [0, 1, 2, 3, 4]
    assert tok.vocab_size == len(tok.vocab) == len(set(tok.vocab))
    for i, t in enumerate(tok.vocab):
        assert tok.token_to_id(t) == i and tok.id_to_token(i) == t
    with pytest.raises(KeyError, match="not in the vocabulary"):
        tok.token_to_id("no-such-token-xyz")
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(tok.vocab_size)


@pytest.mark.parametrize("tok", all_tokenizers(), ids=["char", "word", "bpe", "bpe-bytes", "textword"])
def test_save_load_round_trip(tok, tmp_path):
    path = tok.save(tmp_path / "tok.json")
    assert json.loads(path.read_text())["lmlab_tokenizer"] == tok.kind
    back = Tokenizer.load(path)
    assert type(back) is type(tok) and back == tok
    assert back.vocab == tok.vocab and back.eos_id == tok.eos_id
    sample = "the boy feeds two cats . zebra é"
    assert back.encode(sample) == tok.encode(sample)
    assert back.decode(tok.encode(TRAIN_TEXT)) == tok.decode(tok.encode(TRAIN_TEXT))
    assert type(type(tok).load(path)) is type(tok)


def test_load_rejects_wrong_class_and_foreign_files(tmp_path):
    path = CharTokenizer.from_text("abc").save(tmp_path / "c.json")
    with pytest.raises(ValueError, match="holds a CharTokenizer, not a WordTokenizer"):
        WordTokenizer.load(path)
    (tmp_path / "x.json").write_text('{"something": 1}')
    with pytest.raises(ValueError, match="not an lmlab tokenizer"):
        Tokenizer.load(tmp_path / "x.json")


@pytest.mark.parametrize("tok", all_tokenizers(), ids=["char", "word", "bpe", "bpe-bytes", "textword"])
def test_encode_batch_pads_and_masks(tok):
    texts = ["the cat sleeps .", "the", "the dogs that the boy feeds bark ."]
    batch, mask = tok.encode_batch(texts, add_bos=True, add_eos=True, return_attention_mask=True)
    lengths = [len(tok.encode(t)) + 2 for t in texts]
    assert batch.dtype == torch.long and batch.shape == (3, max(lengths))
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == lengths
    for row, m, t in zip(batch, mask, texts):
        assert row[m].tolist() == [tok.bos_id] + tok.encode(t) + [tok.eos_id]
        assert (row[~m] == tok.pad_id).all()
    assert tok.encode_batch(texts, max_length=2).shape == (3, 2)
    with pytest.raises(TypeError, match="list of strings"):
        tok.encode_batch("the cat")
    with pytest.raises(TypeError, match="must be a str"):
        tok.encode(["the"])


# --- CharTokenizer: domain = characters seen in training; unknown -> <unk> -----------------------

@FAST
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_char_round_trip_on_its_alphabet(text):
    tok = CharTokenizer.from_text(TRAIN_TEXT)
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.unk_id not in ids
    assert tok.decode(ids) == text


@FAST
@given(st.text(alphabet=ALPHABET, max_size=50), st.text(min_size=1, max_size=20))
def test_char_unknown_characters_map_to_unk(known, other):
    tok = CharTokenizer.from_text(TRAIN_TEXT)
    text = known + other
    ids = tok.encode(text)
    assert [i == tok.unk_id for i in ids] == [c not in ALPHABET for c in text]


def test_char_specials_are_plain_characters_in_text():
    tok = CharTokenizer.from_text("<mask>ab")
    assert tok.encode("<mask>") == [tok.token_to_id(c) for c in "<mask>"]
    assert tok.decode([tok.bos_id, tok.token_to_id("a"), tok.pad_id], skip_special=True) == "a"
    assert tok.decode(torch.tensor([tok.unk_id, tok.token_to_id("b")])) == "<unk>b"


# --- WordTokenizer: domain = vocabulary words separated by single spaces -------------------------

@FAST
@given(st.lists(st.sampled_from(WORDS), max_size=40))
def test_word_round_trip_on_vocabulary_words(words):
    tok = WordTokenizer.from_text(TRAIN_TEXT)
    text = " ".join(words)
    ids = tok.encode(text)
    assert len(ids) == len(words) and tok.unk_id not in ids
    assert tok.decode(ids) == text


@FAST
@given(st.lists(st.one_of(st.sampled_from(WORDS),
                          st.text(alphabet="XYZäß0123456789", min_size=1, max_size=6)), max_size=30))
def test_word_unknown_words_map_to_unk(words):
    tok = WordTokenizer.from_text(TRAIN_TEXT)
    ids = tok.encode(" ".join(words))
    assert [i == tok.unk_id for i in ids] == [w not in WORDS for w in words]
    decoded = tok.decode(ids).split(" ") if words else []
    assert decoded == [w if w in WORDS else "<unk>" for w in words]


def test_word_vocabulary_order_min_count_and_whitespace():
    tok = WordTokenizer.from_text("b a b c c c", min_count=2)
    assert tok.vocab[5:] == ["c", "b"]  # most frequent first; "a" (1 time) left out
    assert tok.encode("a b") == [tok.unk_id, tok.token_to_id("b")]
    assert tok.decode(tok.encode("  c\n\tb  ")) == "c b"  # other whitespace becomes one space
    assert tok.encode("c <mask> b")[1] == tok.mask_id
    with pytest.raises(ValueError, match="min_count"):
        WordTokenizer.from_text("a", min_count=0)
    with pytest.raises(ValueError, match="without whitespace"):
        WordTokenizer(["a b"])


def test_word_eos_can_be_an_ordinary_word():
    tok = WordTokenizer.from_text("the cat sleeps . the dog barks .", eos_token=".")
    assert tok.eos_id == tok.token_to_id(".")
    assert "<eos>" not in tok.vocab and "." not in tok.special_tokens
    assert tok.decode(tok.encode("the cat ."), skip_special=True) == "the cat ."


# --- BPETokenizer: domain = any text over the training alphabet (byte-level: any text) ------------

@FAST
@given(st.text(alphabet=ALPHABET, max_size=200))
def test_bpe_round_trip_on_its_alphabet(text):
    tok = bpe(False)
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == text


@FAST
@given(st.text(alphabet=ALPHABET, max_size=30), st.text(alphabet="ZQé日€", min_size=1, max_size=10))
def test_bpe_unknown_characters_map_to_unk(known, other):
    tok = bpe(False)
    text = known + other
    ids = tok.encode(text)
    assert ids.count(tok.unk_id) == sum(c not in ALPHABET for c in text)


@FAST
@given(st.text(max_size=100))
def test_byte_level_bpe_round_trips_any_text(text):
    tok = bpe(True)
    ids = tok.encode(text)
    assert (tok.unk_id in ids) == ("<unk>" in text)  # only the special token's own string
    assert tok.decode(ids) == text


def test_byte_level_bpe_reads_special_strings_as_specials():
    tok = bpe(True)
    text = "x<unk> <mask><pad>é"
    ids = tok.encode(text)
    assert [i for i in ids if i < 5] == [tok.unk_id, tok.mask_id, tok.pad_id]
    assert tok.decode(ids) == text


def test_bpe_learns_merges_and_reads_specials():
    tok = bpe(False)
    pieces = tok.tokens("the dogs that the boy feeds bark .")
    assert len(pieces) < len("the dogs that the boy feeds bark .") / 2  # merges happened
    assert "▁the" in pieces
    assert tok.encode("the <mask> .").count(tok.mask_id) == 1
    assert tok.decode(tok.encode("a <mask> b"), skip_special=True).split() == ["a", "b"]
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer.train("abc", vocab_size=100, byte_level=True)


def test_bpe_offsets_cover_the_text():
    tok = bpe(False)
    text = ". the boy feeds two cats ."
    ids, spans = tok.encode_with_offsets(text)
    assert len(ids) == len(spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


# --- the toy language -----------------------------------------------------------------------------

def test_for_toy_has_fixed_vocabulary_and_dot_as_eos():
    corpus = pytest.importorskip("lmlab.corpus")
    lang = corpus.toy()
    tok = WordTokenizer.for_toy(lang)
    assert tok.vocab == ["<pad>", "<unk>", "<mask>", "<bos>"] + list(lang.vocab)
    assert tok.eos_id == tok.token_to_id(".") and tok.id_to_token(tok.eos_id) == "."
    assert tok.token_to_id(".") not in tok.special_ids
    assert WordTokenizer.for_toy(corpus.toy()).vocab == tok.vocab  # same order every time
    text = lang.text(200, seed=3)
    ids = tok.encode(text)
    assert tok.unk_id not in ids and tok.decode(ids) == text
    with pytest.raises(TypeError, match="ToyLanguage"):
        WordTokenizer.for_toy("not a language")


def test_char_and_bpe_tokenizers_on_toy_text():
    corpus = pytest.importorskip("lmlab.corpus")
    lang = corpus.toy()
    train, held_out = lang.text(500, seed=1), lang.text(100, seed=2)
    char = CharTokenizer.from_text(train)
    assert char.decode(char.encode(held_out)) == held_out
    tok = BPETokenizer.train(train, vocab_size=200)
    ids = tok.encode(held_out)
    assert tok.decode(ids) == held_out
    assert len(ids) < len(held_out.split()) * 2  # most words became one or two pieces


# --- words of real text ---------------------------------------------------------------------------

TEXT_WORDS = st.lists(st.sampled_from(sorted(set(TextWordTokenizer.split(TRAIN_TEXT)))), max_size=30)


@FAST
@given(TEXT_WORDS)
def test_textword_round_trip_on_its_normal_form(words):
    tok = TextWordTokenizer.from_text(TRAIN_TEXT)
    text = tok.decode(tok.encode_tokens(words))
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode(text) == tok.encode_tokens(words)
    assert tok.unk_id not in tok.encode(text)


def test_textword_splits_words_punctuation_and_line_breaks():
    tok = TextWordTokenizer.from_text("First Citizen:\nBefore we proceed, O'er the hill.\n\nAll: 42!")
    assert TextWordTokenizer.split("First Citizen:\nBefore we proceed, O'er the hill.") == \
        ["first", "citizen", ":", "\n", "before", "we", "proceed", ",", "o'er", "the", "hill", "."]
    assert TextWordTokenizer.split("'Tis   the <mask> --x") == ["'", "tis", "the", "<mask>", "-", "-", "x"]
    ids = tok.encode("First Citizen:\nBefore we proceed,  o'er the hill.\n\nAll: 42!")
    assert tok.decode(ids) == "first citizen :\nbefore we proceed , o'er the hill .\n\nall : 42 !"
    assert tok.pretty(ids) == "First citizen:\nBefore we proceed, o'er the hill.\n\nAll: 42!"
    words = "o , i think i'll go . o'er the hill\n, is it i ?"
    said = TextWordTokenizer.from_text(words)
    assert said.pretty(said.encode(words)) == "O, I think I'll go. O'er the hill, is it I?"
    assert tok.encode("the <mask> hill") == [tok.token_to_id("the"), tok.mask_id, tok.token_to_id("hill")]
    assert tok.encode("the unheard-of hill")[1] == tok.unk_id
    assert tok.decode(tok.encode("\n")) == "\n"


def test_textword_vocabulary_is_the_most_frequent_tokens_capped_and_deterministic():
    text = "b b b a a c c d . . . . \n"
    tok = TextWordTokenizer.from_text(text, max_words=3)
    assert tok.vocab[5:] == [".", "b", "a"]  # most frequent first; ties alphabetical ("a" < "c")
    assert TextWordTokenizer.from_text(text, max_words=3) == tok
    assert TextWordTokenizer.from_text(text, max_words=None).vocab_size == 5 + 6
    assert TextWordTokenizer.from_text(text, min_count=2).vocab[5:] == [".", "b", "a", "c"]
    assert tok.coverage("b a d") == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="max_words"):
        TextWordTokenizer.from_text(text, max_words=0)
    with pytest.raises(ValueError, match="whitespace"):
        TextWordTokenizer(["two words"])


def test_the_shakespeare_word_vocabulary():
    """The zoo's word models read tiny Shakespeare with the 4,000 most frequent tokens of the training split;
    the lecture's blank ("the world is everything that is the ___") is expressible: one <mask> for one word
    ("everything" never occurs in tiny Shakespeare, so it is <unk>)."""
    from lmlab import texts

    train, val = texts.load_split("tinyshakespeare")
    tok = TextWordTokenizer.from_text(train, max_words=4000)
    assert tok.vocab_size == 4005 and tok.vocab[5:10] == ["\n", ",", ":", ".", "the"]
    assert 0.92 < tok.coverage(val) < 0.93
    ids = tok.encode("the world is everything that is the <mask>")
    assert ids.count(tok.mask_id) == 1 and ids[-1] == tok.mask_id and len(ids) == 8
    assert [tok.id_to_token(i) for i in ids[:3]] == ["the", "world", "is"] and ids[3] == tok.unk_id
    assert TextWordTokenizer.from_text(train, max_words=4000) == tok  # deterministic

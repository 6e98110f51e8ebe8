"""Tokenizers: characters, words and byte-pair encoding behind one interface.

Every tokenizer maps text to a list of integer ids and back, and shares the same special tokens::

    <pad>   fills short rows of a batch            (pad_id)
    <unk>   stands for input outside the domain    (unk_id)
    <mask>  hides a token for masked-LM training   (mask_id)
    <bos>   begins a sequence                      (bos_id)
    <eos>   ends a sentence                        (eos_id; the word "." for the toy language)

The special tokens take the first ids (0, 1, 2, ...), then come the ordinary tokens.

=================  ======================================  ===================================
tokenizer          input domain (round-trips exactly)       input outside the domain
=================  ======================================  ===================================
``CharTokenizer``  any text over the characters seen in     each unseen character -> ``<unk>``
                   training
``WordTokenizer``  words of the vocabulary separated by     each unknown word -> ``<unk>``;
                   single spaces (no leading/trailing       other whitespace decodes as one
                   whitespace)                              space
``TextWord-``      real text, lowercased: words, single     each unknown word -> ``<unk>``;
``Tokenizer``      punctuation marks and line breaks as     case and spacing are normalised
                   tokens (``decode`` writes them
                   separated by single spaces, no space
                   around a line break)
``BPETokenizer``   any text over the training alphabet,     each unseen character -> ``<unk>``
                   without the marker "▁" (U+2581);         (byte-level: every text is in the
                   byte-level: any text at all              domain, nothing is unknown)
=================  ======================================  ===================================

A special token's string in the text (``"the <mask> barks ."``) is read as that special token by
the word and BPE tokenizers (``decode`` writes it back, so round trips still hold);
``CharTokenizer`` reads it as six characters. ``decode`` writes special tokens as their strings
unless ``skip_special=True``. Every tokenizer maps unknown input to ``<unk>``; none raises on it.

>>> tok = CharTokenizer.from_text("abc")
>>> tok.encode("cab")
[7, 5, 6]
>>> tok.decode(tok.encode("cab"))
'cab'
"""
from __future__ import annotations

import os
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from . import checks

PAD, UNK, MASK, BOS, EOS = "<pad>", "<unk>", "<mask>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, MASK, BOS, EOS)
_FORMAT_VERSION = 1


def _check_text(text: Any, what: str = "text") -> str:
    return checks.check_str(text, what, allow_empty=True)


class UnknownTokenError(KeyError, ValueError):
    """A token string that is not in the vocabulary (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class Tokenizer:
    """The shared interface. Subclasses implement ``_encode`` and ``_decode_tokens``.

    ``vocab`` lists every token string in id order; specials come first. ``eos_token`` may be an
    ordinary word of the vocabulary (``"."`` for the toy language); it then is not a *special* token
    (it is never skipped, masked-out or protected), only the token that ends a sentence.
    """

    kind = "base"

    def __init__(self, tokens: Sequence[str], eos_token: str = EOS):
        if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Iterable):
            raise TypeError(f"tokens must be a list of token strings, got {type(tokens).__name__}")
        tokens = list(tokens)
        bad = [t for t in tokens if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"tokens must be non-empty strings, got {bad[:5]!r}")
        checks.check_str(eos_token, "eos_token")
        specials = [t for t in SPECIAL_TOKENS if t != EOS or eos_token == EOS]
        clash = sorted(set(specials) & set(tokens))
        if clash:
            raise ValueError(f"ordinary tokens must not repeat special tokens, got {clash}")
        if len(set(tokens)) != len(tokens):
            dup = sorted(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"tokens must be unique, got duplicates {dup[:10]}")
        if eos_token != EOS and eos_token not in tokens:
            raise ValueError(f"eos_token {eos_token!r} must be one of the tokens (or the default {EOS!r})")
        self.eos_token = eos_token
        self._specials = specials
        self._vocab = specials + tokens
        self._index = {t: i for i, t in enumerate(self._vocab)}

    # --- vocabulary -------------------------------------------------------------------------
    @property
    def vocab(self) -> list[str]:
        """Every token string, in id order (a copy)."""
        return list(self._vocab)

    @property
    def vocab_size(self) -> int:
        return len(self._vocab)

    def __len__(self) -> int:
        return len(self._vocab)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``; raises ``KeyError`` if it is not in the vocabulary."""
        if not isinstance(token, str):
            raise TypeError(f"token must be a token string, got {token!r:.60}")
        try:
            return self._index[token]
        except KeyError:
            raise UnknownTokenError(f"token {token!r} is not in the vocabulary ({self.vocab_size} tokens); "
                                    "see tokenizer.vocab") from None

    def id_to_token(self, i: int) -> str:
        return self._vocab[checks.check_id(i, "id", self.vocab_size)]

    @property
    def special_tokens(self) -> list[str]:
        """The special token strings (``"."`` is not one of them when it serves as eos)."""
        return list(self._specials)

    @property
    def special_ids(self) -> list[int]:
        return [self._index[t] for t in self._specials]

    pad_id = property(lambda self: self._index[PAD])
    unk_id = property(lambda self: self._index[UNK])
    mask_id = property(lambda self: self._index[MASK])
    bos_id = property(lambda self: self._index[BOS])
    eos_id = property(lambda self: self._index[self.eos_token])

    # --- encoding ---------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no bos/eos added)."""
        return self._encode(_check_text(text))

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = False) -> str:
        """The text of ``ids`` (a list or a 1-D tensor); special tokens as their strings unless
        ``skip_special`` (then ``<pad>``, ``<bos>`` ... are left out)."""
        if isinstance(ids, torch.Tensor) and ids.dim() != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}")
        ids = checks.check_ids(ids, "ids", self.vocab_size)
        checks.check_bool(skip_special, "skip_special")
        special = set(self.special_ids) if skip_special else set()
        return self._decode_ids([i for i in ids if i not in special])

    def encode_batch(
        self,
        texts: Sequence[str],
        add_bos: bool = False,
        add_eos: bool = False,
        max_length: int | None = None,
        return_attention_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Encode ``texts`` into one padded LongTensor ``(batch, seq)``.

        Rows are padded on the right with ``pad_id`` to the longest row, or cut to ``max_length``.
        With ``return_attention_mask`` also returns a bool tensor ``(batch, seq)``, True on real
        tokens.
        """
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}; "
                            "for one text use encode(text)")
        for flag, value in (("add_bos", add_bos), ("add_eos", add_eos),
                            ("return_attention_mask", return_attention_mask)):
            checks.check_bool(value, flag)
        rows = []
        for text in texts:
            ids = self.encode(text)
            rows.append(([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else []))
        return self.pad(rows, max_length=max_length, return_attention_mask=return_attention_mask)

    def pad(
        self, rows: Sequence[Sequence[int]], max_length: int | None = None, return_attention_mask: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Pad lists of ids on the right with ``pad_id`` into a LongTensor ``(batch, seq)``."""
        max_length = checks.check_int(max_length, "max_length", 1, allow_none=True)
        checks.check_bool(return_attention_mask, "return_attention_mask")
        if isinstance(rows, (str, bytes, torch.Tensor)) and not (isinstance(rows, torch.Tensor) and rows.dim() == 2):
            raise TypeError(f"rows must be a list of lists of ids, got {type(rows).__name__}")
        rows = [checks.check_ids(r, f"rows[{b}]", self.vocab_size) for b, r in enumerate(rows)]
        rows = [r[:max_length] if max_length is not None else r for r in rows]
        seq = max((len(r) for r in rows), default=0)
        out = torch.full((len(rows), seq), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), seq), dtype=torch.bool)
        for b, r in enumerate(rows):
            out[b, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, : len(r)] = True
        return (out, mask) if return_attention_mask else out

    # --- saving -----------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"tokens": self._vocab[len(self._specials):], "eos_token": self.eos_token}

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON; ``Tokenizer.load(path)`` reads it back."""
        path = Path(path)
        state = {"lmlab_tokenizer": self.kind, "version": _FORMAT_VERSION, **self._state()}
        path.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        """Read a tokenizer saved with ``save``; returns the right subclass."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or Path), got {type(path).__name__}")
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path} is not a tokenizer JSON file ({e})") from None
        kind = state.get("lmlab_tokenizer") if isinstance(state, dict) else None
        classes = {c.kind: c for c in (CharTokenizer, WordTokenizer, TextWordTokenizer, BPETokenizer)}
        if kind not in classes:
            raise ValueError(f"{path} is not an lmlab tokenizer file (its 'lmlab_tokenizer' is {kind!r}, "
                             f"expected one of {sorted(classes)})")
        if cls is not Tokenizer and classes[kind] is not cls:
            raise ValueError(f"{path} holds a {classes[kind].__name__}, not a {cls.__name__}; "
                             "use Tokenizer.load to get whichever it is")
        try:
            return classes[kind]._from_state(state)
        except KeyError as err:
            raise ValueError(f"{path} is a damaged {classes[kind].__name__} file: it has no {err.args[0]!r} entry "
                             "(save the tokenizer again with tokenizer.save(path))") from None
        except (TypeError, AttributeError) as err:
            raise ValueError(f"{path} is a damaged {classes[kind].__name__} file ({err}); save the tokenizer "
                             "again with tokenizer.save(path)") from None

    @classmethod
    def _from_state(cls, state: dict) -> "Tokenizer":
        return cls(state["tokens"], eos_token=state.get("eos_token", EOS))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._state() == other._state()

    def __hash__(self) -> int:
        return hash((self.kind, tuple(self._vocab)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, eos_token={self.eos_token!r})"

    # --- subclass hooks ---------------------------------------------------------------------
    def _encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def _decode_ids(self, ids: list[int]) -> str:
        raise NotImplementedError


class CharTokenizer(Tokenizer):
    """One token per character.

    Domain: any text over the characters seen in training; ``decode(encode(t)) == t`` there.
    Unknown characters map to ``<unk>`` (which decodes as the string ``"<unk>"``).
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], eos_token: str = EOS):
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"CharTokenizer takes single characters, got {bad[:5]}")
        super().__init__(chars, eos_token=eos_token)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """A tokenizer for every character of ``text``, in sorted order after the specials."""
        return cls(sorted(set(_check_text(text))))

    def _encode(self, text: str) -> list[int]:
        unk, index = self.unk_id, self._index
        return [index.get(c, unk) for c in text]

    def _decode_ids(self, ids: list[int]) -> str:
        return "".join(self.id_to_token(i) for i in ids)


class WordTokenizer(Tokenizer):
    """One token per whitespace-separated word.

    Domain: words of the vocabulary separated by single spaces; ``decode`` joins tokens with
    single spaces, so other whitespace is normalised. Unknown words map to ``<unk>``. Special token
    strings in the text (``"the <mask> barks ."``) are read as special tokens.
    """

    kind = "word"

    def __init__(self, words: Sequence[str], eos_token: str = EOS):
        bad = [w for w in words if not isinstance(w, str) or not w or w != w.strip() or len(w.split()) != 1]
        if bad:
            raise ValueError(f"words must be non-empty strings without whitespace, got {bad[:5]}")
        super().__init__(words, eos_token=eos_token)

    @classmethod
    def from_text(cls, text: str, min_count: int = 1, eos_token: str = EOS) -> "WordTokenizer":
        """A vocabulary of the words of ``text`` seen at least ``min_count`` times, most frequent
        first (ties alphabetical). Pass ``eos_token="."`` if ``"."`` ends the text's sentences."""
        checks.check_int(min_count, "min_count", 1)
        counts = Counter(_check_text(text).split())
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        if eos_token != EOS and eos_token not in words:
            words.append(eos_token)
        return cls(words, eos_token=eos_token)

    @classmethod
    def for_toy(cls, lang: Any) -> "WordTokenizer":
        """The tokenizer for a toy language: specials, then ``lang.vocab`` in its fixed order;
        ``"."`` is the end-of-sentence token (``eos_id`` is the id of ``"."``)."""
        vocab = getattr(lang, "vocab", None)
        if vocab is None:
            raise TypeError(f"for_toy takes a ToyLanguage (lmlab.corpus.toy()), got {type(lang).__name__}")
        return cls(list(vocab), eos_token=".")

    def encode_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Ids of an already split list of words (unknown words -> ``<unk>``)."""
        unk, index = self.unk_id, self._index
        return [index.get(w, unk) for w in tokens]

    def _encode(self, text: str) -> list[int]:
        return self.encode_tokens(text.split())

    def _decode_ids(self, ids: list[int]) -> str:
        return " ".join(self.id_to_token(i) for i in ids)


# A word: letters with apostrophes inside ("o'er", "know't"); a number; else one character (punctuation),
# a line break included; other whitespace separates. Special tokens in the text are read as themselves.
_TEXT_TOKEN = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS) +
                         r"|[^\W\d_]+(?:'[^\W\d_]+)*|\d+|\n|[^\s]")


class TextWordTokenizer(WordTokenizer):
    """Whole words of real text, lowercased, with punctuation marks and line breaks as tokens of their own.

    ``"First Citizen:\nBefore we proceed"`` -> ``first citizen : \n before we proceed``. A word is a run
    of letters, with apostrophes inside it kept (``"o'er"``, ``"know't"``); a number is a run of digits;
    every other character but whitespace is a token by itself; ``"\n"`` (a line break) is a token. The
    vocabulary (:meth:`from_text`) is the most frequent tokens of a training text, capped at
    ``max_words``; every other word maps to ``<unk>``. ``decode`` writes tokens separated by single
    spaces, with no space around a line break; :meth:`pretty` also attaches punctuation to the word
    before it, for reading. Special token strings in the text (``"the <mask> of"``) are read as special
    tokens, so a masked model's blank is written as in the toy language.

    Domain (``decode(encode(t)) == t``): lowercase text in the form ``decode`` writes, over the
    vocabulary.
    """

    kind = "textword"

    def __init__(self, words: Sequence[str], eos_token: str = EOS):
        bad = [w for w in words if not isinstance(w, str) or not w
               or (w != "\n" and (w != w.strip() or len(w.split()) != 1))]
        if bad:
            raise ValueError(f"words must be non-empty strings without whitespace (or a line break), got {bad[:5]}")
        Tokenizer.__init__(self, words, eos_token=eos_token)

    @staticmethod
    def split(text: str) -> list[str]:
        """The token strings of ``text`` (lowercased; before any vocabulary is applied)."""
        return _TEXT_TOKEN.findall(_check_text(text).lower())

    @classmethod
    def from_text(cls, text: str, max_words: int | None = 4000, min_count: int = 1,
                  eos_token: str = EOS) -> "TextWordTokenizer":
        """A vocabulary of the ``max_words`` most frequent tokens of ``text`` (ties alphabetical),
        each seen at least ``min_count`` times; ``max_words=None``: no cap. Deterministic."""
        checks.check_int(min_count, "min_count", 1)
        checks.check_int(max_words, "max_words", 1, allow_none=True)
        counts = Counter(cls.split(text))
        words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                       key=lambda w: (-counts[w], w))
        if max_words is not None:
            words = words[:max_words]
        if eos_token != EOS and eos_token not in words:
            words.append(eos_token)
        return cls(words, eos_token=eos_token)

    def encode_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Ids of an already split list of words (lowercased; unknown words -> ``<unk>``)."""
        unk, index = self.unk_id, self._index
        return [index.get(w if w in index else w.lower(), unk) for w in tokens]

    def _encode(self, text: str) -> list[int]:
        unk, index = self.unk_id, self._index
        return [index.get(w, unk) for w in self.split(text)]

    def _decode_ids(self, ids: list[int]) -> str:
        out: list[str] = []
        for i in ids:
            token = self.id_to_token(i)
            if out and token != "\n" and out[-1] != "\n":
                out.append(" ")
            out.append(token)
        return "".join(out)

    def coverage(self, text: str) -> float:
        """The share of ``text``'s tokens that are in the vocabulary (not ``<unk>``)."""
        ids = self.encode(text)
        return sum(i != self.unk_id for i in ids) / max(1, len(ids))

    def pretty(self, ids: Sequence[int] | torch.Tensor, skip_special: bool = False) -> str:
        """``decode`` for reading: punctuation attached to the word before it (``"lord , sir ."`` ->
        ``"lord, sir."``, also across a line break), a capital at the start of each line and sentence,
        and for the pronoun *I* and the interjection *O*. Not a round trip (case is lost anyway)."""
        text = self.decode(ids, skip_special=skip_special)
        text = re.sub(r"[ \n]+([,.;:!?])", r"\1", text)       # no punctuation after a space or a line break
        text = re.sub(r"\b([io])\b(?!')|\bi(?='(?:ll|m|d|ve)\b)", lambda m: m.group(0).upper(), text)
        return re.sub(r"(^|\n|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


class BPETokenizer(Tokenizer):
    """Byte-pair encoding trained with Hugging Face ``tokenizers``.

    Default (``byte_level=False``): the text is split at spaces, each space kept as the marker
    ``"▁"`` at the start of the next piece (as in SentencePiece), and merges are learnt over the
    characters of the training text. Domain: any text over that alphabet without ``"▁"``; unseen
    characters map to ``<unk>``. With ``byte_level=True`` (GPT-2 style, spaces shown as ``"Ġ"``)
    the alphabet is all 256 bytes: every text round-trips and nothing is unknown.
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer: Any, byte_level: bool = False):
        vocab = hf_tokenizer.get_vocab()  # token -> id
        tokens = [None] * len(vocab)
        for t, i in vocab.items():
            tokens[i] = t
        if tokens[: len(SPECIAL_TOKENS)] != list(SPECIAL_TOKENS) or None in tokens:
            raise ValueError("the Hugging Face tokenizer must have the special tokens "
                             f"{list(SPECIAL_TOKENS)} as ids 0..4 and contiguous ids; train one with BPETokenizer.train")
        super().__init__(tokens[len(SPECIAL_TOKENS):])
        self.hf = hf_tokenizer
        self.byte_level = byte_level

    @classmethod
    def train(cls, text: str | Sequence[str], vocab_size: int, byte_level: bool = False,
              min_frequency: int = 2) -> "BPETokenizer":
        """Learn merges on ``text`` (a string or a list of strings) until ``vocab_size`` tokens
        (specials and the alphabet included; fewer if the text runs out of pairs to merge)."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        texts = [text] if isinstance(text, str) else list(text)
        for t in texts:
            _check_text(t)
        checks.check_bool(byte_level, "byte_level")
        checks.check_int(min_frequency, "min_frequency", 1)
        if not texts or not any(texts):
            raise ValueError("text must hold some characters to learn merges from, got none")
        floor = len(SPECIAL_TOKENS) + (256 if byte_level else 1)
        checks.check_int(vocab_size, "vocab_size", floor,
                         hint=f"at least {'256 bytes + ' if byte_level else 'one character + '}"
                              f"the {len(SPECIAL_TOKENS)} specials")
        if byte_level:
            hf = HFTokenizer(models.BPE())
            hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            hf.decoder = decoders.ByteLevel()
            alphabet = pre_tokenizers.ByteLevel.alphabet()
        else:
            hf = HFTokenizer(models.BPE(unk_token=UNK))
            hf.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
            hf.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")
            alphabet = []
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), initial_alphabet=alphabet,
                                      show_progress=False)
        hf.train_from_iterator(texts, trainer)
        return cls(hf, byte_level=byte_level)

    def _encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and, per token, the ``(start, end)`` character span it covers in ``text``."""
        enc = self.hf.encode(_check_text(text), add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def tokens(self, text: str) -> list[str]:
        """The token strings of ``text`` (``"▁the"``, or ``"Ġthe"`` byte-level)."""
        return self.hf.encode(_check_text(text), add_special_tokens=False).tokens

    def _decode_ids(self, ids: list[int]) -> str:
        for i in ids:
            self.id_to_token(i)  # range check with a clear message
        return self.hf.decode(ids, skip_special_tokens=False)

    def _state(self) -> dict:
        return {"byte_level": self.byte_level, "hf_tokenizer": json.loads(self.hf.to_str())}

    @classmethod
    def _from_state(cls, state: dict) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(json.dumps(state["hf_tokenizer"])), byte_level=state["byte_level"])


def _char_offsets(text: str) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(len(text))]


def _word_offsets(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, c in enumerate(text + " "):
        if c.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    return spans


def encode_with_offsets(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Ids of ``text`` and the ``(start, end)`` character span of each token, for any tokenizer."""
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"tokenizer must be an lmlab tokenizer, got {type(tokenizer).__name__}")
    _check_text(text)
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode_with_offsets(text)
    ids = tokenizer.encode(text)
    spans = _char_offsets(text) if isinstance(tokenizer, CharTokenizer) else _word_offsets(text)
    assert len(spans) == len(ids)
    return ids, spans

"""torchtext's `basic_english` tokenizer and its vocab rules, rebuilt without torchtext, plus the compact
encoded form (token ids + offsets) that training reads.

Vocab order is torchtext's `build_vocab_from_iterator`: specials first (`<pad>` = 0, `<unk>` = 1), then
tokens by descending frequency, ties broken by the token string ascending.
"""

from __future__ import annotations

import codecs
import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from agnews.storage import AgnewsError, atomic_write_text

PAD, UNK = "<pad>", "<unk>"
PAD_INDEX, UNK_INDEX = 0, 1

# torchtext.data.utils._basic_english_normalize, in its order. Every pattern but the last is a literal,
# so str.replace gives the same result as re.sub; the last (r"\s+" -> " ") followed by split() is what
# str.split() does by itself.
_BASIC_ENGLISH_REPLACEMENTS = (
    ("'", " '  "),
    ('"', ""),
    (".", " . "),
    ("<br />", " "),
    (",", " , "),
    ("(", " ( "),
    (")", " ) "),
    ("!", " ! "),
    ("?", " ? "),
    (";", " "),
    (":", " "),
)


def decode_utf8(data: bytes, source: str | os.PathLike[str], fix: str = "; re-save it as UTF-8") -> str:
    """Text of a user's file: UTF-8, a leading byte-order mark (spreadsheet programs add one) dropped; bytes
    that are not UTF-8 give an AgnewsError naming the file and the line, ending with `fix`."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.end]
        raise AgnewsError(f"{source}, line {line}: bytes {bad!r} are not UTF-8 ({error.reason}){fix}") from error


def basic_english(text: str) -> list[str]:
    """Lowercase, space out punctuation, split on whitespace. Hyphens, `$`, `#`, `\\` stay in tokens."""
    text = text.lower()
    for old, new in _BASIC_ENGLISH_REPLACEMENTS:
        text = text.replace(old, new)
    return text.split()


def tokenize_all(texts: Iterable[str]) -> list[list[str]]:
    return [basic_english(text) for text in texts]


class Vocab:
    """Token <-> index, with `<pad>` at 0 and `<unk>` at 1; unknown tokens map to `<unk>`."""

    def __init__(self, itos: Sequence[str]):
        if list(itos[:2]) != [PAD, UNK]:
            raise AgnewsError(f"a vocab must start with {PAD!r}, {UNK!r}; got {list(itos[:2])}")
        self.itos = list(itos)
        self.stoi = {token: index for index, token in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            duplicated = [token for token, count in Counter(self.itos).items() if count > 1]
            raise AgnewsError(f"vocab has duplicated tokens: {duplicated[:5]}")

    def __len__(self) -> int:
        return len(self.itos)

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, UNK_INDEX)

    def lookup_indices(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(token, UNK_INDEX) for token in tokens]

    def to_text(self) -> str:
        """The saved form: one token per line, line i = index i. Tokens never contain whitespace."""
        return "".join(token + "\n" for token in self.itos)

    @cached_property
    def digest(self) -> str:
        """sha256 of the saved form: equal digests, equal vocabs (order included)."""
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, self.to_text())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError as error:
            raise AgnewsError(f"vocab file {path} does not exist") from error
        except OSError as error:
            raise AgnewsError(f"vocab file {path} cannot be read ({error.strerror})") from error
        lines = decode_utf8(data, path, "; it is not a vocab.txt that agnews wrote").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, token in enumerate(lines, start=1):
            if not token or any(char.isspace() for char in token):
                raise AgnewsError(f"{path} line {number}: {token!r} is not a token; the file is not a saved vocab")
        try:
            return cls(lines)
        except AgnewsError as error:
            raise AgnewsError(f"{path}: {error}") from error


def build_vocab(token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """Vocab from the train split's tokens. `max_size` counts the two specials, like torchtext's max_tokens."""
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = [token for token, count in ordered if count >= min_freq and token not in (PAD, UNK)]
    if max_size is not None:
        words = words[: max_size - 2]
    return Vocab([PAD, UNK, *words])


@dataclass(frozen=True)
class EncodedTexts:
    """A split as token ids: text i is `token_ids[offsets[i]:offsets[i + 1]]`, its class `labels[i]`."""

    token_ids: np.ndarray  # int64 [total_tokens], every text's ids concatenated
    offsets: np.ndarray  # int64 [num_texts + 1], offsets[0] = 0
    labels: np.ndarray  # int64 [num_texts], 0..3

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def ids_of(self, index: int) -> np.ndarray:
        return self.token_ids[self.offsets[index] : self.offsets[index + 1]]

    def subset(self, indices: np.ndarray) -> EncodedTexts:
        """The texts at `indices`, in that order, as a new compact split."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Position j of the new token_ids reads token starts[text] + (j - offsets[text]) of the old one.
        starts = np.repeat(self.offsets[indices] - offsets[:-1], lengths)
        token_ids = self.token_ids[starts + np.arange(offsets[-1])]
        return EncodedTexts(token_ids=token_ids, offsets=offsets, labels=self.labels[indices])


def encode(
    token_lists: Sequence[Sequence[str]], labels: np.ndarray, vocab: Vocab, max_tokens: int | None = None
) -> EncodedTexts:
    """Numericalise tokenised texts, each cut to its first `max_tokens`. A text with no tokens becomes a
    single `<unk>`, so every text has a last token for the LSTM to end on."""
    ids = [vocab.lookup_indices(tokens[:max_tokens]) or [UNK_INDEX] for tokens in token_lists]
    lengths = np.fromiter((len(text_ids) for text_ids in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    token_ids = np.fromiter((index for text_ids in ids for index in text_ids), dtype=np.int64, count=offsets[-1])
    return EncodedTexts(token_ids=token_ids, offsets=offsets, labels=np.asarray(labels, dtype=np.int64))

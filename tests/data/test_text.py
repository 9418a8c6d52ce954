import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agnews.data.text import PAD, UNK, UNK_INDEX, Vocab, basic_english, build_vocab, encode, tokenize_all
from agnews.storage import AgnewsError

# torchtext 0.18's _basic_english_normalize, written out with re as torchtext did it, as the reference.
_PATTERNS = [r"\'", r"\"", r"\.", r"<br \/>", r",", r"\(", r"\)", r"\!", r"\?", r"\;", r"\:", r"\s+"]
_REPLACEMENTS = [" '  ", "", " . ", " ", " , ", " ( ", " ) ", " ! ", " ? ", " ", " ", " "]


def torchtext_basic_english(line: str) -> list[str]:
    line = line.lower()
    for pattern, replacement in zip(_PATTERNS, _REPLACEMENTS, strict=True):
        line = re.sub(pattern, replacement, line)
    return line.split()


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, World! It's (a) test.", ["hello", ",", "world", "!", "it", "'", "s", "(", "a", ")", "test", "."]),
        ('He said "no"; then: yes?', ["he", "said", "no", "then", "yes", "?"]),
        ("line<br />break", ["line", "break"]),
        ("Wall St. Bears Claw Back", ["wall", "st", ".", "bears", "claw", "back"]),
        # hyphens, $, # and backslashes stay inside tokens; AG News keeps escaped newlines as backslash + n
        ("A $10 #39;s co-op\\nnext", ["a", "$10", "#39", "s", "co-op\\nnext"]),
        ("  tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
        ("", []),
    ],
)
def test_basic_english_examples(text, tokens):
    assert basic_english(text) == tokens


@given(st.text(alphabet=st.sampled_from(list("aZ .,'\"<br />()!?;:-$#\\\t\n\u00a0\u2003é")), max_size=60))
def test_basic_english_matches_torchtext_regexes(text):
    assert basic_english(text) == torchtext_basic_english(text)


def test_vocab_orders_by_frequency_then_token():
    token_lists = [["b", "a", "c"], ["c", "a", "d"], ["c", "e", "b"], ["a"]]
    # counts: a=3, c=3, b=2, d=1, e=1 -> ties broken by the token string ascending
    vocab = build_vocab(token_lists)
    assert vocab.itos == [PAD, UNK, "a", "c", "b", "d", "e"]
    assert vocab.lookup_indices(["c", "zzz", "e"]) == [3, UNK_INDEX, 6]
    assert vocab["never-seen"] == UNK_INDEX


def test_vocab_min_freq_and_max_size():
    token_lists = [["x", "y", "y", "z", "z", "z"]]
    assert build_vocab(token_lists, min_freq=2).itos == [PAD, UNK, "z", "y"]
    assert build_vocab(token_lists, max_size=3).itos == [PAD, UNK, "z"]  # max_size counts the specials


def test_vocab_save_load_round_trip(tmp_path):
    vocab = build_vocab([["déjà", "vu", "$10", "co-op"], ["vu"]])
    vocab.save(tmp_path / "vocab.txt")
    loaded = Vocab.load(tmp_path / "vocab.txt")
    assert loaded.itos == vocab.itos
    assert loaded.stoi == vocab.stoi


def test_vocab_load_rejects_foreign_file(tmp_path):
    path = tmp_path / "not_a_vocab.txt"
    path.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(AgnewsError, match=r"not_a_vocab\.txt"):
        Vocab.load(path)
    with pytest.raises(AgnewsError, match="does not exist"):
        Vocab.load(tmp_path / "missing.txt")


def test_encode_and_subset_round_trip_to_token_ids():
    texts = ["The cat sat.", "", "A dog, a cat!", "sat sat sat"]
    token_lists = tokenize_all(texts)
    vocab = build_vocab(token_lists)
    encoded = encode(token_lists, np.array([0, 1, 2, 3]), vocab)
    for index, tokens in enumerate(token_lists):
        expected = vocab.lookup_indices(tokens) or [UNK_INDEX]  # an empty text becomes one <unk>
        assert encoded.ids_of(index).tolist() == expected
    picked = encoded.subset(np.array([3, 0]))
    assert picked.labels.tolist() == [3, 0]
    assert picked.ids_of(0).tolist() == encoded.ids_of(3).tolist()
    assert picked.ids_of(1).tolist() == encoded.ids_of(0).tolist()
    assert picked.offsets.tolist() == [0, 3, 7]

import numpy as np

from agnews.data.batches import Batches, batch_indices, equal_length_batches, stratified_split
from agnews.data.text import PAD_INDEX, EncodedTexts


def encoded_from(lists: list[list[int]]) -> EncodedTexts:
    offsets = np.cumsum([0] + [len(ids) for ids in lists])
    token_ids = np.array([i for ids in lists for i in ids], dtype=np.int64)
    return EncodedTexts(token_ids=token_ids, offsets=offsets, labels=np.arange(len(lists)) % 4)


def test_stratified_split_is_disjoint_stratified_and_reproducible():
    labels = np.repeat([0, 1, 2, 3], [100, 200, 40, 60])
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(np.intersect1d(train, val)) == 0
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[val]).tolist() == [10, 20, 4, 6]
    again_train, again_val = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=4)[1])


def test_batches_cover_every_index_once_and_shuffle_between_epochs():
    lengths = np.random.default_rng(0).integers(1, 60, size=1003)
    rng = np.random.default_rng(7)
    epochs = [batch_indices(lengths, 32, rng, bucket_by_length=True) for _ in range(2)]
    for batches in epochs:
        assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
        assert all(len(batch) <= 32 for batch in batches)
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
    first_batches = {tuple(sorted(batch)) for batch in epochs[0]}
    assert first_batches != {tuple(sorted(batch)) for batch in epochs[1]}


def test_bucketing_wastes_less_padding():
    lengths = np.random.default_rng(1).integers(1, 100, size=3200)

    def padded_cells(batches):
        return sum(lengths[batch].max() * len(batch) for batch in batches)

    plain = batch_indices(lengths, 64, np.random.default_rng(0), bucket_by_length=False)
    bucketed = batch_indices(lengths, 64, np.random.default_rng(0), bucket_by_length=True)
    assert padded_cells(bucketed) < 0.7 * padded_cells(plain)


def test_evaluation_order_is_fixed():
    lengths = np.array([5, 1, 3, 2])
    assert [b.tolist() for b in batch_indices(lengths, 2, None, bucket_by_length=False)] == [[0, 1], [2, 3]]
    assert [b.tolist() for b in batch_indices(lengths, 2, None, bucket_by_length=True)] == [[1, 3], [2, 0]]


def test_batches_right_pad_with_pad_index():
    data = encoded_from([[5, 6, 7], [8], [9, 10], [11]])
    (token_ids, lengths, labels), (single_ids, _, single_label) = Batches(data, [np.array([1, 0, 2]), np.array([3])])
    assert token_ids.tolist() == [[8, PAD_INDEX, PAD_INDEX], [5, 6, 7], [9, 10, PAD_INDEX]]
    assert lengths.tolist() == [1, 3, 2]
    assert labels.tolist() == [1, 0, 2]
    assert single_ids.tolist() == [[11]] and single_label.tolist() == [3]


def test_batches_built_ahead_equal_batches_built_one_by_one():
    rng = np.random.default_rng(0)
    texts = [rng.integers(2, 50, size=rng.integers(1, 40)).tolist() for _ in range(300)]
    data = encoded_from(texts)
    order = batch_indices(data.lengths, 16, np.random.default_rng(1), bucket_by_length=True)
    built = list(Batches(data, order))
    assert len(built) == len(order)
    for indices, (token_ids, lengths, labels) in zip(order, built, strict=True):
        longest = max(len(texts[i]) for i in indices)
        assert token_ids.tolist() == [texts[i] + [PAD_INDEX] * (longest - len(texts[i])) for i in indices]
        assert lengths.tolist() == [len(texts[i]) for i in indices]
        assert labels.tolist() == data.labels[indices].tolist()


def test_evaluation_batches_hold_texts_of_one_length_each():
    lengths = np.array([3, 1, 3, 2, 3, 1, 3])
    batches = [b.tolist() for b in equal_length_batches(lengths, batch_size=2)]
    assert batches == [[1, 5], [3], [0, 2], [4, 6]]  # by length, then in input order; none padded
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert equal_length_batches(np.array([], dtype=np.int64)) == []

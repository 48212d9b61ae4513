import numpy as np
import pytest

from keras_stn.experiments.data import _pipeline


def _epochs(dataset, count=2):
    return [
        [(int(i), tuple(seed)) for i, seed in dataset.as_numpy_iterator()]
        for _ in range(count)
    ]


def test_evaluation_seeds_are_fixed():
    first = _epochs(_pipeline.example_seeds(5, 25, False, None, "t"))
    again = _epochs(_pipeline.example_seeds(5, 25, False, None, "t"))
    assert first[0] == first[1] == again[0]
    assert [i for i, _ in first[0]] == list(range(5, 25))
    assert len({seed for _, seed in first[0]}) == 20
    other = _epochs(_pipeline.example_seeds(5, 25, False, 1, "t"), 1)
    assert other[0] != first[0]
    other_tag = _epochs(_pipeline.example_seeds(5, 25, False, None, "u"), 1)
    assert other_tag[0] != first[0]


def test_training_draws_afresh_every_epoch():
    epochs = _epochs(_pipeline.example_seeds(0, 50, True, None, "t"))
    assert epochs[0] != epochs[1]
    for epoch in epochs:
        assert sorted(i for i, _ in epoch) == list(range(50))
    seeds = [dict(epoch) for epoch in epochs]
    assert all(seeds[0][i] != seeds[1][i] for i in range(50))


def test_a_training_seed_makes_the_epochs_repeatable():
    first = _epochs(_pipeline.example_seeds(0, 50, True, 3, "t"))
    again = _epochs(_pipeline.example_seeds(0, 50, True, 3, "t"))
    assert first == again
    assert first[0] != first[1]


def _epoch(seed, epoch, tag="t"):
    dataset = _pipeline.epoch_example_seeds(5, 25, seed, tag, epoch)
    return [(int(i), tuple(s)) for i, s in dataset.as_numpy_iterator()]


def test_a_numbered_epoch_is_a_function_of_seed_tag_and_epoch():
    first = _epoch(3, 0)
    assert sorted(i for i, _ in first) == list(range(5, 25))
    assert [i for i, _ in first] != list(range(5, 25))
    assert len({seed for _, seed in first}) == 20
    assert _epoch(3, 0) == first
    for other in (_epoch(3, 1), _epoch(4, 0), _epoch(3, 0, tag="u")):
        assert [i for i, _ in other] != [i for i, _ in first]
        seeds = dict(other)
        assert all(seeds[i] != seed for i, seed in first)


@pytest.mark.parametrize(
    "split, expected",
    [
        ("train", True),
        ("train[:50000]", True),
        ("test", False),
        ("test[:10%]", False),
        ("validation", False),
    ],
)
def test_training_defaults_to_the_training_splits(split, expected):
    assert _pipeline.resolve_training(None, split) is expected
    assert _pipeline.resolve_training(not expected, split) is (not expected)


def test_training_must_be_a_bool():
    with pytest.raises(ValueError, match="`training`"):
        _pipeline.resolve_training("yes", "train")


def test_clip_unit_and_to_unit_float():
    values = np.array([0, 128, 255], "uint8")
    np.testing.assert_allclose(
        _pipeline.to_unit_float(values), [0, 128 / 255, 1], rtol=1e-6
    )
    np.testing.assert_array_equal(
        _pipeline.clip_unit(np.array([-1e-7, 0.5, 1 + 1e-7], "float32")),
        [0, 0.5, 1],
    )

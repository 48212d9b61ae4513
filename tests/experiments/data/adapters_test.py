"""The two adapters serve the same batches: tf.data == PyDataset.

On the TensorFlow backend both run the same `render` on the same host
inputs, the PyDataset eagerly and tf.data inside its graph, on the CPU:
the images are equal bit for bit (tolerance 0). On a GPU the PyDataset's
eager ops run on the GPU and tf.data's on the CPU, so they may differ by
float32 rounding (fused multiply-adds); the labels and parameters are
equal everywhere (NumPy).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_stn import models
from keras_stn.experiments.data import distorted
from keras_stn.experiments.data import source
from keras_stn.experiments.data import tfdata
from keras_stn.experiments.data import two_digit

BACKEND = keras.backend.backend()


def _tensorflow():
    if BACKEND != "tensorflow":
        pytest.skip(f"tf.data needs the TensorFlow backend, not {BACKEND}")
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        pytest.skip("bit-equality holds on the CPU (see module docstring)")
    return tf


def _numpy(x):
    return ops.convert_to_numpy(x)


def _sets(manual_dir):
    common = {"manual_dir": manual_dir, "with_params": True}
    training = {**common, "seed": 11, "epochs": 3, "initial_epoch": 1}
    sets = {
        f"{variant} test": distorted.DistortedMNIST(
            variant, "test[:100]", 48, **common
        )
        for variant in distorted.VARIANTS
    }
    sets.update(
        {
            f"{variant} train": distorted.DistortedMNIST(
                variant, "train[:100]", 48, **training
            )
            for variant in distorted.VARIANTS
        }
    )
    sets["addition"] = two_digit.MNISTAddition("train[:100]", 48, **training)
    sets["canvas"] = two_digit.TwoDigitCanvas("test[:100]", 48, **common)
    return sets


def test_tf_data_serves_the_pydatasets_batches_bit_for_bit(manual_dir):
    _tensorflow()
    for name, batches in _sets(manual_dir).items():
        pydataset = source.PyDatasetSource(batches, return_numpy=True)
        served = list(tfdata.dataset(batches).as_numpy_iterator())
        assert len(served) == len(pydataset) == batches.num_batches, name
        for index, (images, labels, params) in enumerate(served):
            expected = pydataset[index]
            np.testing.assert_array_equal(images, expected[0], err_msg=name)
            np.testing.assert_array_equal(labels, expected[1], err_msg=name)
            assert sorted(params) == sorted(expected[2])
            for key, value in params.items():
                np.testing.assert_array_equal(value, expected[2][key])


def test_an_epochless_training_set_gives_a_fresh_epoch_per_iteration(
    manual_dir,
):
    _tensorflow()
    batches = distorted.DistortedMNIST(
        "RTS",
        "train[:64]",
        32,
        manual_dir=manual_dir,
        seed=4,
        with_params=True,
    )
    data = tfdata.dataset(batches)
    first, second = (list(data.as_numpy_iterator()) for _ in range(2))
    assert len(first) == len(second) == 2  # one epoch each: fit's epochs
    for epoch in (first, second):
        seen = np.concatenate([params["index"] for _, _, params in epoch])
        np.testing.assert_array_equal(np.sort(seen), np.arange(64))
    assert not np.array_equal(first[0][0], second[0][0])
    # The same seed gives the same sequence of epochs.
    again = list(tfdata.dataset(batches).as_numpy_iterator())
    np.testing.assert_array_equal(again[1][0], first[1][0])


def test_the_one_call_builders_are_the_adapter_on_a_set(manual_dir):
    _tensorflow()
    kwargs = {"manual_dir": manual_dir, "with_params": True}
    cases = [
        (
            tfdata.distorted_mnist("E", "test[:20]", 8, **kwargs),
            distorted.DistortedMNIST("E", "test[:20]", 8, **kwargs),
        ),
        (
            tfdata.mnist_addition("test[:20]", 8, **kwargs),
            two_digit.MNISTAddition("test[:20]", 8, **kwargs),
        ),
        (
            tfdata.two_digit_canvas("test[:20]", 8, **kwargs),
            two_digit.TwoDigitCanvas("test[:20]", 8, **kwargs),
        ),
    ]
    for data, batches in cases:
        served = list(data.as_numpy_iterator())
        assert len(served) == 3
        expected = batches.element(2)
        np.testing.assert_array_equal(served[2][0], _numpy(expected[0]))
        np.testing.assert_array_equal(served[2][1], expected[1])


def test_other_keras_backends_get_a_clear_error(manual_dir, monkeypatch):
    batches = distorted.DistortedMNIST("R", "test[:8]", manual_dir=manual_dir)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        tfdata.dataset(batches)


class _Recording(source.PyDatasetSource):
    """Records the items it serves, in order."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = []

    def __getitem__(self, index):
        self.served.append(index)
        return super().__getitem__(index)


def _fit(train):
    keras.utils.set_random_seed(0)
    model = models.st_cnn((42, 42, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(
        train,
        epochs=2,
        steps_per_epoch=3,
        shuffle=False,
        verbose=0,
    )
    return history.history["loss"], model


def _rts(manual_dir):
    return distorted.DistortedMNIST(
        "RTS", "train[:96]", 32, manual_dir=manual_dir, seed=3, epochs=2
    )


@pytest.mark.large
def test_fit_st_cnn_runs_through_the_numbered_epochs(manual_dir):
    train = _Recording(_rts(manual_dir))
    losses, _ = _fit(train)
    assert np.all(np.isfinite(losses))
    # Keras first reads a batch or two for its build and the data's specs
    # (a pure function of the index), then every item once, in order:
    # epoch 0's batches, then epoch 1's.
    assert train.served[-6:] == list(range(6))


@pytest.mark.large
def test_fit_on_either_adapter_trains_alike(manual_dir):
    _tensorflow()
    from_pydataset, first = _fit(source.PyDatasetSource(_rts(manual_dir)))
    from_tf_data, second = _fit(tfdata.dataset(_rts(manual_dir)))
    # Same batches, same seeded weights: the same steps, up to the order
    # in which TensorFlow sums (the same for both feeds on one CPU).
    np.testing.assert_allclose(from_pydataset, from_tf_data, rtol=1e-6)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=1e-6
        )

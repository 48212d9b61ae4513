"""The deterministic image gradient and the gather layouts, on every backend.

`deterministic=True` replaces the float scatter-add of the image gradient by
an exact integer sum (`deterministic.deterministic_segment_sum`); the
`"clipped"` layout reads taps from the image itself instead of a framed
copy. Neither may change a value or a gradient beyond float rounding: both
are checked against the default path and against NumPy's float64 sums.
Bitwise reproducibility across calls is what the integer sum guarantees by
construction; on a CPU the default is reproducible too, so the GPU side is
measured by `benchmarks/sampler_benchmark.py` (its `repeatable` lines).
"""

import math

import keras
import numpy as np
import pytest
from keras import ops

import keras_stn
from keras_stn import layers
from keras_stn import ops as stn_ops
from keras_stn.ops import backend
from keras_stn.ops import deterministic
from tests import test_case


@pytest.fixture(autouse=True)
def _restore():
    yield
    keras_stn.config.set_deterministic(None)
    keras_stn.config.set_gather_layout("auto")


def _numpy_sum(updates, indices, num_rows):
    """The exactly rounded float64 sums (`math.fsum`): a plain float64 sum
    of magnitudes over 16 decades is less exact than the integer sum."""
    updates = np.asarray(updates, np.float64)
    indices = np.asarray(indices)
    expected = np.zeros((num_rows, updates.shape[1]), np.float64)
    for row in np.unique(indices):
        for col in range(updates.shape[1]):
            expected[row, col] = math.fsum(updates[indices == row, col])
    return expected


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_integer_sum_equals_the_exact_sum(dtype):
    gen = test_case.rng(3)
    # Magnitudes over 16 decades, signs mixed, one row receiving 4096
    # updates (so fewer bits per word), rows receiving none, exact zeros.
    updates = gen.normal(size=(6000, 3)) * np.exp(gen.normal(size=(6000, 1)) * 6)
    updates[:100] = 0.0
    indices = np.concatenate(
        [np.full(4096, 7), gen.integers(0, 300, 6000 - 4096)]
    ).astype("int32")
    updates = updates.astype(dtype)
    actual = test_case.to_numpy(
        deterministic.deterministic_segment_sum(
            ops.convert_to_tensor(updates), ops.convert_to_tensor(indices), 300
        )
    )
    expected = _numpy_sum(updates, indices, 300)
    # Each update is rounded by less than 2**(1 - b) of its row's largest,
    # with b = 30 - ceil(log2 n) for float32 (62 - ... for float64), n the
    # row's updates (12 for the row of 4096 in float32, >= 24 for the others);
    # the sum is then rounded to the dtype.
    counts = np.bincount(indices, minlength=300)[:, None]
    word_bits = {"float32": 30, "float64": 62}[dtype]
    bits = word_bits - np.ceil(np.log2(np.maximum(counts, 1)))
    row_largest = np.zeros((300, 1))
    np.maximum.at(row_largest, indices, np.abs(updates).max(1, keepdims=True))
    atol = counts * row_largest * 2.0 ** (1 - bits)
    # The integer sum is rounded to the dtype: one ulp.
    rtol = {"float32": 2.0**-23, "float64": 2.0**-52}[dtype]
    assert np.all(np.abs(actual - expected) <= atol + rtol * np.abs(expected))
    assert not np.any(actual[np.bincount(indices, minlength=300) == 0])


def test_integer_sum_poisons_only_rows_with_non_finite_updates():
    updates = np.array([[1.0, 2.0], [np.inf, 0.0], [3.0, np.nan], [4.0, 5.0]])
    indices = ops.convert_to_tensor(np.array([0, 1, 1, 2], "int32"))
    actual = test_case.to_numpy(
        deterministic.deterministic_segment_sum(
            ops.convert_to_tensor(updates.astype("float32")), indices, 3
        )
    )
    np.testing.assert_array_equal(actual[[0, 2]], [[1.0, 2.0], [4.0, 5.0]])
    assert np.all(np.isnan(actual[1]))


def test_integer_sum_of_zeros_and_of_tiny_values():
    indices = ops.convert_to_tensor(np.array([0, 0, 2], "int32"))
    zeros = ops.zeros((3, 2), "float32")
    actual = deterministic.deterministic_segment_sum(zeros, indices, 4)
    np.testing.assert_array_equal(test_case.to_numpy(actual), 0.0)
    # Normal float32s near the smallest (denormals are flushed to zero by
    # some backends' CPU kernels, the default sum's too).
    tiny = np.array([[1e-36, -3e-37], [2e-36, 0.0], [-2e-37, 5e-37]], "float32")
    actual = deterministic.deterministic_segment_sum(
        ops.convert_to_tensor(tiny), indices, 4
    )
    expected = _numpy_sum(tiny, [0, 0, 2], 4)
    np.testing.assert_allclose(
        test_case.to_numpy(actual), expected, rtol=1e-6, atol=0.0
    )


def test_integer_sum_gradient_is_the_gather():
    gen = test_case.rng(4)
    updates = gen.normal(size=(9, 2))
    indices = ops.convert_to_tensor(gen.integers(0, 4, 9).astype("int32"))
    upstream = gen.normal(size=(4, 2))
    _, (grad,) = test_case.gradients(
        lambda u: deterministic.deterministic_segment_sum(u, indices, 4),
        updates,
        upstream=upstream,
    )
    np.testing.assert_array_equal(
        grad, upstream[test_case.to_numpy(indices)]
    )


def _sample_and_gradients(kernel, images, grid, padding_mode, deterministic):
    def fn(i, g):
        return stn_ops.sample(
            i,
            g,
            kernel=kernel,
            padding_mode=padding_mode,
            deterministic=deterministic,
        )

    return test_case.gradients(fn, images, grid)


# The layout switch is the bilinear sampler's; the other kernels take the
# deterministic switch.
CASES = [
    ("bilinear", layout, deterministic)
    for layout in ("framed", "clipped", "split")
    for deterministic in (False, True)
] + [
    (kernel, "framed", True) for kernel in ("nearest", "bicubic")
]


@pytest.mark.parametrize("kernel,layout,deterministic", CASES)
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_values_and_gradients_equal_the_default(
    kernel, padding_mode, layout, deterministic
):
    gen = test_case.rng(5)
    # Channels 1 and 3: the framed layout's corner table and its quads.
    for channels in (1, 3):
        images = gen.normal(size=(2, 6, 7, channels))
        # Points inside, on the border, one pixel out and far out, NaN.
        grid = test_case.off_kink_grid(gen, (2, 5, 6, 2), (6, 7), -1.6, 1.6)
        grid[0, 0, 0] = np.nan
        keras_stn.config.set_gather_layout("framed")
        expected = _sample_and_gradients(
            kernel, images, grid, padding_mode, False
        )
        keras_stn.config.set_gather_layout(layout)
        actual = _sample_and_gradients(
            kernel, images, grid, padding_mode, deterministic
        )
        # float64: the integer sum keeps >= 40 bits of each image-gradient
        # contribution; everything else is the same arithmetic.
        test_case.assert_close(actual[0], expected[0], atol=1e-12)
        for a, e in zip(actual[1], expected[1]):
            test_case.assert_close(a, e, atol=1e-10)


@pytest.mark.parametrize("layout", ["framed", "clipped", "split"])
def test_deterministic_gradient_is_the_same_bits_every_call(layout):
    keras_stn.config.set_gather_layout(layout)
    gen = test_case.rng(6)
    images = gen.random((2, 9, 9, 2)).astype("float32")
    grid = gen.uniform(-1.1, 1.1, (2, 12, 12, 2)).astype("float32")
    runs = [
        _sample_and_gradients("bilinear", images, grid, "zeros", True)[1]
        for _ in range(2)
    ]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layout", ["framed", "clipped", "split"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_second_derivatives_match_torch(layout, deterministic):
    test_case.requires_torch()
    from tests.ops import second_derivatives_test

    keras_stn.config.set_gather_layout(layout)
    keras_stn.config.set_deterministic(deterministic)
    for padding_mode, align_corners in (("zeros", False), ("border", True)):
        second_derivatives_test.test_second_derivatives_match_torch(
            padding_mode, align_corners
        )


def test_switch_validates_and_ops_follow_it():
    with pytest.raises(ValueError, match=r"`enabled` must be True or False"):
        keras_stn.config.set_deterministic("yes")
    with pytest.raises(ValueError, match=r"`layout` must be one of"):
        keras_stn.config.set_gather_layout("planar")
    with pytest.raises(ValueError, match=r"`deterministic` must be True"):
        stn_ops.bilinear_sample(
            np.zeros((1, 2, 2, 1), "float32"),
            np.zeros((1, 1, 1, 2), "float32"),
            deterministic=1,
        )
    with pytest.raises(ValueError, match=r"`deterministic` must be True"):
        layers.SpatialTransformer(deterministic="True")
    keras_stn.config.set_deterministic(True)
    assert keras_stn.config.deterministic() is True
    assert keras_stn.config.resolve_deterministic(None) is True
    assert keras_stn.config.resolve_deterministic(False) is False


def test_default_follows_the_environment_and_the_framework(monkeypatch):
    keras_stn.config.set_deterministic(None)
    monkeypatch.delenv(keras_stn.config.DETERMINISTIC_ENV, raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert keras_stn.config.deterministic() is False
    monkeypatch.setenv(keras_stn.config.DETERMINISTIC_ENV, "1")
    assert keras_stn.config.deterministic() is True
    monkeypatch.delenv(keras_stn.config.DETERMINISTIC_ENV)
    backend = keras.backend.backend()
    if backend == "jax":
        monkeypatch.setenv(
            "XLA_FLAGS",
            "--xla_force_host_platform_device_count=1 "
            "--xla_gpu_deterministic_ops=true",
        )
        assert keras_stn.config.deterministic() is True
        monkeypatch.delenv("XLA_FLAGS")
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
        try:
            assert keras_stn.config.deterministic() is True
        finally:
            torch.use_deterministic_algorithms(False)
    else:
        # `enable_op_determinism()` has no public reader; the environment
        # variable it replaced has.
        monkeypatch.setenv("TF_DETERMINISTIC_OPS", "1")
        assert keras_stn.config.deterministic() is True
        monkeypatch.delenv("TF_DETERMINISTIC_OPS")
    assert keras_stn.config.deterministic() is False


def test_auto_layout_on_a_cpu_is_framed_for_few_channels_but_on_jax():
    from keras_stn.ops import tuning

    few, many = tuning.SPLIT_MIN_CHANNELS - 1, tuning.SPLIT_MIN_CHANNELS
    name = backend.name()
    jax = test_case.backend() == "jax"
    assert tuning.gather_layout(few, 2, name, False) == (
        "split" if jax else "framed"
    )
    assert tuning.gather_layout(many, 2, name, False) == "split"
    assert tuning.gather_layout(1, 3, name, False) == "framed"
    assert tuning.gather_layout(1, 2, name, True) == "split"
    assert tuning.gather_layout(1, 3, name, True) == "clipped"
    keras_stn.config.set_gather_layout("clipped")
    assert tuning.gather_layout(few, 2, name, False) == "clipped"
    assert tuning.gather_layout(many, 2, name, False) == "clipped"


def test_layer_passes_and_serializes_deterministic():
    layer = layers.SpatialTransformer(
        transform="attention", deterministic=True
    )
    config = layer.get_config()
    assert config["deterministic"] is True
    clone = layers.SpatialTransformer.from_config(config)
    assert clone.deterministic is True
    images = test_case.rng(8).random((2, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(
        test_case.to_numpy(clone(images)),
        test_case.to_numpy(layers.SpatialTransformer(transform="attention")(
            images
        )),
        atol=1e-6,
    )


@pytest.mark.parametrize("channels", [1, 9])  # corner table / framed slabs
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize(
    "layout,deterministic",
    [("framed", True), ("clipped", False), ("clipped", True)],
)
def test_volumes_equal_the_default(channels, padding_mode, layout, deterministic):
    gen = test_case.rng(9)
    volumes = gen.normal(size=(2, 4, 5, 6, channels))
    grid = gen.uniform(-1.4, 1.4, (2, 3, 4, 5, 3))
    grid[1, 0, 0, 0] = np.nan

    def fn(v, g, deterministic):
        return stn_ops.trilinear_sample(
            v, g, padding_mode, deterministic=deterministic
        )

    keras_stn.config.set_gather_layout("framed")
    expected = test_case.gradients(
        lambda v, g: fn(v, g, False), volumes, grid
    )
    keras_stn.config.set_gather_layout(layout)
    actual = test_case.gradients(
        lambda v, g: fn(v, g, deterministic), volumes, grid
    )
    test_case.assert_close(actual[0], expected[0], atol=1e-12)
    for a, e in zip(actual[1], expected[1]):
        test_case.assert_close(a, e, atol=1e-10)
    nearest = test_case.gradients(
        lambda v: stn_ops.nearest_sample_3d(v, grid, deterministic=True),
        volumes,
    )
    keras_stn.config.set_gather_layout("framed")
    default = test_case.gradients(
        lambda v: stn_ops.nearest_sample_3d(v, grid), volumes
    )
    test_case.assert_close(nearest[0], default[0], atol=0.0)
    test_case.assert_close(nearest[1][0], default[1][0], atol=1e-12)


@pytest.mark.parametrize("layout", ["framed", "clipped", "split"])
@pytest.mark.parametrize("deterministic", [False, True])
def test_jitted_samplers_differentiate_on_jax(layout, deterministic):
    # `jax.vjp(jax.jit(f))` (a jitted model differentiated from outside)
    # cannot lower a custom gradient that closes over an array: every
    # layout's gathers take their indices as inputs.
    jax = pytest.importorskip("jax")
    if test_case.backend() != "jax":
        pytest.skip(f"JAX-only; Keras backend is {test_case.backend()}")
    keras_stn.config.set_gather_layout(layout)
    gen = test_case.rng(10)
    images = gen.normal(size=(2, 5, 6, 2))
    volumes = gen.normal(size=(2, 3, 4, 5, 2))
    grid = gen.uniform(-1.2, 1.2, (2, 3, 4, 2))
    grid_3d = gen.uniform(-1.2, 1.2, (2, 2, 3, 4, 3))
    for inputs, points in ((images, grid), (volumes, grid_3d)):

        def fn(x, g):
            return stn_ops.sample(x, g, deterministic=deterministic)

        out, pullback = jax.vjp(jax.jit(fn), inputs, points)
        eager_out, eager_pullback = jax.vjp(fn, inputs, points)
        upstream = gen.normal(size=out.shape)
        test_case.assert_close(out, eager_out, 1e-12)
        for a, e in zip(pullback(upstream), eager_pullback(upstream)):
            test_case.assert_close(a, e, 1e-12)

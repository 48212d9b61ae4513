"""Shared test helpers: dtype-keyed tolerances, Jacobian and oracle checks."""

import numpy as np
import pytest
import tensorflow as tf

# The registered families of the paper's Table 1, plus TPS.
FAMILIES = [
    "translation",
    "rigid",
    "similarity",
    "attention",
    "affine",
    "projective",
    "tps",
]

# Absolute tolerances for values of order 1, keyed by the compute dtype.
TOLERANCES = {
    "float64": 1e-7,
    "float32": 1e-5,
    "float16": 1e-3,
    "bfloat16": 1e-2,
}


def tolerance(dtype):
    return TOLERANCES[tf.as_dtype(dtype).name]


def assert_close(actual, expected, atol, rtol=0.0, msg=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, msg)
    np.testing.assert_allclose(
        actual, expected, atol=atol, rtol=rtol, err_msg=msg
    )


def gradients(fn, *inputs, upstream=None):
    """Returns `(output, [d <output, upstream> / d input...])` by tape."""
    inputs = [tf.convert_to_tensor(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        output = fn(*inputs)
        if upstream is None:
            upstream = np.random.default_rng(7).normal(size=output.shape)
        loss = tf.reduce_sum(output * tf.cast(upstream, output.dtype))
    return output, tape.gradient(loss, inputs)


def assert_jacobian_close(fn, inputs, delta=1e-6, atol=1e-6):
    """Compares the theoretical Jacobian of `fn` (the custom gradient) with
    float64 central finite differences of step `delta`."""
    inputs = [tf.constant(np.asarray(x, np.float64)) for x in inputs]
    theoretical, numerical = tf.test.compute_gradient(fn, inputs, delta=delta)
    for t, n in zip(theoretical, numerical):
        assert_close(t, n, atol=atol)


def requires_torch():
    return pytest.importorskip(
        "torch", reason="PyTorch is an optional peer: pip install torch"
    )


def rng(seed=0):
    return np.random.default_rng(seed)


def off_kink_grid(
    generator, shape, size, low=-0.9, high=0.9, margin=0.02, align_corners=False
):
    """Random grid points whose pixel coordinates stay `margin` away from
    integers (the bilinear kernel's kinks), for finite differences."""
    height, width = size
    grid = generator.uniform(low, high, size=shape)

    def to_index(c, n):
        if align_corners:
            return (c + 1) / 2 * (n - 1)
        return ((c + 1) * n - 1) / 2

    def from_index(i, n):
        if align_corners:
            return i / (n - 1) * 2 - 1
        return (2 * i + 1) / n - 1

    for axis, n in ((0, width), (1, height)):
        index = to_index(grid[..., axis], n)
        frac = index - np.floor(index)
        frac = np.clip(frac, margin, 1 - margin)
        grid[..., axis] = from_index(np.floor(index) + frac, n)
    return grid


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    symbolic_shapes=None,
    run_training=True,
    tmp_path=None,
):
    """Keras-style layer checks (after `keras.src.testing.run_layer_test`).

    - `get_config` / `from_config` round trip (equal configs);
    - a symbolic call on `keras.Input`s with `symbolic_shapes` (None batch
      and, where given, None spatial dims); `compute_output_shape` equals
      the real output shape of an eager call;
    - `.keras` save and load (`safe_mode=True`) reproduce outputs exactly;
    - one `fit` step on a functional model changes the trainable weights.

    Args:
        input_data: an array or a list of arrays (multi-input layers).
        symbolic_shapes: per-input shapes without batch; default: static.
    Returns:
        The eager outputs.
    """
    import keras

    inputs = list(input_data) if isinstance(input_data, list) else [input_data]
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    revived = layer_cls.from_config(config)
    assert revived.get_config() == config

    outputs = layer(*inputs)
    expected = layer.compute_output_shape(*[x.shape for x in inputs])
    flat_out = keras.tree.flatten(outputs)
    flat_expected = _flatten_shapes(expected)
    assert [tuple(o.shape) for o in flat_out] == [
        tuple(s) for s in flat_expected
    ]

    shapes = symbolic_shapes or [x.shape[1:] for x in inputs]
    symbolic = [keras.Input(shape=s) for s in shapes]
    sym_out = layer_cls(**init_kwargs)(*symbolic)
    for sym, real in zip(keras.tree.flatten(sym_out), flat_out):
        assert len(sym.shape) == len(real.shape)
        for a, b in zip(sym.shape, real.shape):
            assert a is None or a == b, (sym.shape, real.shape)

    model_in = [keras.Input(shape=x.shape[1:]) for x in inputs]
    model = keras.Model(model_in, layer_cls(**init_kwargs)(*model_in))
    before = [np.array(w) for w in model.trainable_weights]
    reference = keras.tree.map_structure(np.asarray, model(inputs))
    if tmp_path is not None:
        path = str(tmp_path / f"{layer_cls.__name__}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        again = keras.tree.map_structure(np.asarray, loaded(inputs))
        for a, b in zip(
            keras.tree.flatten(reference), keras.tree.flatten(again)
        ):
            np.testing.assert_array_equal(a, b)
    if run_training and before:
        targets = keras.tree.map_structure(
            lambda o: (
                np.random.default_rng(0).normal(size=o.shape).astype("float32")
            ),
            reference,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(
            inputs, targets, epochs=1, batch_size=len(inputs[0]), verbose=0
        )
        after = [np.array(w) for w in model.trainable_weights]
        assert any(np.any(a != b) for a, b in zip(before, after)), (
            "one fit step left every trainable weight unchanged"
        )
    return outputs


def _flatten_shapes(structure):
    if (
        isinstance(structure, (list, tuple))
        and structure
        and isinstance(structure[0], (list, tuple))
    ):
        out = []
        for s in structure:
            out.extend(_flatten_shapes(s))
        return out
    return [structure]

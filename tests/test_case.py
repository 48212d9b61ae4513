"""Shared test helpers: dtype-keyed tolerances, gradients, Jacobian and
oracle checks, and the Keras layer contract, on every Keras backend.

Gradients come from the backend's own machinery (a TensorFlow tape,
`jax.vjp`, `torch.autograd`), so a test written once checks the custom
gradients on TensorFlow, JAX and PyTorch.
"""

import keras
import numpy as np
import pytest

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


def backend():
    """The Keras backend's name: `"tensorflow"`, `"jax"` or `"torch"`."""
    return keras.backend.backend()


def tolerance(dtype):
    return TOLERANCES[keras.backend.standardize_dtype(dtype)]


def to_numpy(x):
    """Any backend's tensor (or a NumPy value) as a NumPy array; bfloat16
    as float32, which every NumPy reads."""
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(x)
    if keras.backend.standardize_dtype(x.dtype) == "bfloat16":
        x = keras.ops.cast(x, "float32")
    return keras.ops.convert_to_numpy(x)


def assert_close(actual, expected, atol, rtol=0.0, msg=""):
    actual = to_numpy(actual).astype(np.float64)
    expected = to_numpy(expected).astype(np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape, msg)
    np.testing.assert_allclose(
        actual, expected, atol=atol, rtol=rtol, err_msg=msg
    )


def _pullback(fn, inputs):
    """`(output, pullback)`: `fn(*inputs)` on the backend's tensors and the
    function mapping an upstream gradient (NumPy, like the output) to the
    list of NumPy gradients w.r.t. `inputs` (zeros where one is unused).
    The pullback may be called many times."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        tensors = [tf.convert_to_tensor(x) for x in inputs]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(tensors)
            output = fn(*tensors)

        def pullback(upstream):
            grads = tape.gradient(
                output,
                tensors,
                output_gradients=tf.cast(upstream, output.dtype),
            )
            return [
                np.zeros(x.shape, x.dtype.as_numpy_dtype)
                if g is None
                else to_numpy(g)
                for x, g in zip(tensors, grads)
            ]

        return output, pullback
    if name == "jax":
        import jax
        import jax.numpy as jnp

        output, vjp = jax.vjp(fn, *[jnp.asarray(x) for x in inputs])

        def pullback(upstream):
            grads = vjp(jnp.asarray(upstream, output.dtype))
            return [to_numpy(g) for g in grads]

        return output, pullback
    if name == "torch":
        import torch

        tensors = [
            keras.ops.convert_to_tensor(x).detach().requires_grad_(True)
            for x in inputs
        ]
        output = fn(*tensors)

        def pullback(upstream):
            grads = torch.autograd.grad(
                output,
                tensors,
                grad_outputs=torch.as_tensor(
                    np.asarray(upstream),
                    dtype=output.dtype,
                    device=output.device,
                ),
                retain_graph=True,
                allow_unused=True,
            )
            return [
                torch.zeros_like(x).numpy() if g is None else to_numpy(g)
                for x, g in zip(tensors, grads)
            ]

        return output, pullback
    raise NotImplementedError(f"no gradients for Keras backend {name!r}")


def gradients(fn, *inputs, upstream=None):
    """Returns `(output, [d <output, upstream> / d input...])` as NumPy
    arrays, by the backend's autodiff (tape, `jax.vjp`, `torch.autograd`).

    `upstream` defaults to a fixed standard-normal draw of the output's
    shape. A gradient the backend reports as absent is zeros.
    """
    inputs = [_as_input(x) for x in inputs]
    output, pullback = _pullback(fn, inputs)
    if upstream is None:
        upstream = np.random.default_rng(7).normal(size=tuple(output.shape))
    return to_numpy(output), pullback(upstream)


def _as_input(x):
    """NumPy for arrays, numbers and any backend's tensors (each backend
    makes its own watched tensors from them)."""
    if isinstance(x, (np.ndarray, np.generic, int, float, list, tuple)):
        return np.asarray(x)
    return keras.ops.convert_to_numpy(x)


def assert_jacobian_close(fn, inputs, delta=1e-6, atol=1e-6):
    """Compares the Jacobian of `fn` by the backend's gradient (its custom
    gradients) with float64 central finite differences of step `delta`:
    `J[:, i] = (fn(x + delta e_i) - fn(x - delta e_i)) / (2 delta)`.

    The theoretical Jacobian is built row by row, one pullback of a one-hot
    upstream per output entry; the numerical one column by column, two
    forward passes per input entry. Keep the shapes tiny.
    """
    inputs = [np.asarray(x, np.float64) for x in inputs]
    output, pullback = _pullback(fn, inputs)
    output = to_numpy(output)
    assert output.dtype == np.float64, (
        f"finite differences need a float64 output, got {output.dtype}"
    )
    rows = []
    for k in range(output.size):
        one_hot = np.zeros(output.size)
        one_hot[k] = 1.0
        rows.append(
            np.concatenate(
                [g.ravel() for g in pullback(one_hot.reshape(output.shape))]
            )
        )
    theoretical = np.stack(rows)
    forward = fn
    if backend() == "jax":
        import jax

        # One compilation for the 2N forward passes of the same shapes;
        # eager JAX dispatches them op by op.
        forward = jax.jit(fn)
    columns = []
    for i, x in enumerate(inputs):
        for j in range(x.size):
            shifted = []
            for step in (delta, -delta):
                moved = [y.copy() for y in inputs]
                moved[i].reshape(-1)[j] += step
                shifted.append(to_numpy(forward(*_backend_tensors(moved))))
            columns.append(((shifted[0] - shifted[1]) / (2 * delta)).ravel())
    numerical = np.stack(columns, axis=1)
    assert_close(theoretical, numerical, atol=atol)


def _backend_tensors(arrays):
    return [keras.ops.convert_to_tensor(x) for x in arrays]


def requires_torch():
    return pytest.importorskip(
        "torch", reason="PyTorch is an optional peer: pip install torch"
    )


def requires_tensorflow():
    """Skips unless Keras runs on TensorFlow; returns the `tensorflow`
    module (for the tests built on TensorFlow itself)."""
    if backend() != "tensorflow":
        pytest.skip(f"TensorFlow-only; Keras backend is {backend()}")
    return pytest.importorskip(
        "tensorflow",
        reason="TensorFlow is optional: pip install '.[tensorflow]'",
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
    before = [to_numpy(w) for w in model.trainable_weights]
    reference = keras.tree.map_structure(to_numpy, model(inputs))
    if tmp_path is not None:
        path = str(tmp_path / f"{layer_cls.__name__}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        again = keras.tree.map_structure(to_numpy, loaded(inputs))
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
        after = [to_numpy(w) for w in model.trainable_weights]
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

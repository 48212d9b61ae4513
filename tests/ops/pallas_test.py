"""The Pallas sampler (`keras_stn.ops.backend.jax_pallas`) in Pallas'
interpret mode on the CPU, against the package's XLA path and hand-computed
cases: values, both gradients, second derivatives, non-finite points, every
padding and `align_corners`, under `jax.jit` and `jax.vjp(jax.jit(...))`;
volumes (trilinear) against the package's XLA path too.

Interpret mode compiles each kernel slowly: shapes are tiny and each test
compiles as few functions as it can (one jitted value-and-gradients each).
"""

import contextlib

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="the Pallas kernel is JAX's (run with KERAS_BACKEND=jax)",
)

PADDINGS = ("zeros", "border", "reflection")
# float32 sums of four taps and of up to four channels; the grid gradient
# carries the scale W / 2 (or (W - 1) / 2) of the unnormalisation.
ATOL = {"float32": 2e-6, "float64": 1e-12}


@pytest.fixture(autouse=True)
def _pallas_mode():
    from keras_stn.ops.backend import jax_pallas

    before = jax_pallas.mode()
    jax_pallas.set_mode("pallas")
    yield
    jax_pallas.set_mode(before)


@contextlib.contextmanager
def _xla_path():
    """The package's own sampler, whatever the kernel seam would pick."""
    from keras_stn import config
    from keras_stn.ops.backend import jax_pallas

    has_switch = hasattr(config, "set_native_kernels")
    if has_switch:
        config.set_native_kernels(False)
    jax_pallas.set_mode("xla")
    try:
        yield
    finally:
        jax_pallas.set_mode("pallas")
        if has_switch:
            config.set_native_kernels(None)


def _pallas(padding_mode, align_corners):
    from keras_stn.ops.backend import jax_pallas

    return lambda i, g: jax_pallas.sample(
        i, g, "bilinear", padding_mode, align_corners
    )


def _xla(padding_mode, align_corners):
    from keras_stn import ops as stn_ops

    def sample(i, g):
        with _xla_path():
            return stn_ops.bilinear_sample(
                i, g, padding_mode=padding_mode, align_corners=align_corners
            )

    return sample


def _value_and_grads(sample, images, grid, upstream):
    """`(output, d images, d grid)` of `sum(sample * upstream)`, jitted."""
    import jax

    def run(i, g):
        out, pull = jax.vjp(sample, i, g)
        return (out, *pull(upstream))

    return [np.asarray(x) for x in jax.jit(run)(images, grid)]


def _case(dtype, seed=0, channels=3, extent=1.4):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(2, 4, 5, channels)).astype(dtype)
    # 15 points per image (interpret mode runs blocks of 2).
    grid = rng.uniform(-extent, extent, size=(2, 3, 5, 2)).astype(dtype)
    upstream = rng.normal(size=(2, 3, 5, channels)).astype(dtype)
    return images, grid, upstream


# align_corners=True changes only the unnormalisation, which every padding
# shares: checked here with reflection (whose axis it moves), and with
# border in the hand-computed and volume cases (interpret mode is slow).
@pytest.mark.parametrize(
    "padding_mode, align_corners",
    [(p, False) for p in PADDINGS] + [("reflection", True)],
)
def test_matches_xla_path(padding_mode, align_corners):
    images, grid, upstream = _case("float32")
    mine = _value_and_grads(
        _pallas(padding_mode, align_corners), images, grid, upstream
    )
    ref = _value_and_grads(
        _xla(padding_mode, align_corners), images, grid, upstream
    )
    for name, a, b in zip(("output", "d images", "d grid"), mine, ref):
        np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=ATOL["float32"] * 4, err_msg=name
        )


def test_hand_computed_values():
    import jax

    # Pixels 1 2 / 3 4 and a NaN column on the right edge (x = 2).
    images = np.array([[[1.0, 2.0, np.nan], [3.0, 4.0, np.nan]]], "float64")[
        ..., None
    ]
    points = [
        (-1 / 3, 0.0),  # amid 1, 2, 3, 4 (W = 3, H = 2): 2.5
        (-1.0, -1.0),  # the outer corner of pixel 1: a quarter of it
        (-2.0, 0.0),  # far left of the image: zero
        (3.0, 0.0),  # past the NaN edge column: zero, not NaN
        (np.nan, 0.0),  # NaN point: zero
        (-1 / 3, np.inf),  # infinite point (zeros padding): zero
    ]
    grid = np.array(points, "float64").reshape(1, 1, -1, 2)
    out = jax.jit(_pallas("zeros", False))(images, grid)
    np.testing.assert_allclose(
        np.asarray(out).ravel(),
        [2.5, 0.25, 0.0, 0.0, 0.0, 0.0],
        rtol=0,
        atol=1e-15,
    )
    # align_corners=True: -1 and 1 are pixel centres; border padding
    # reads the edge beyond them, reflection mirrors x = -2 to x = 0.
    clean = images[:, :, :2]
    grid = np.array(
        [(-1.0, -1.0), (1.0, 1.0), (-5.0, 1.0), (-np.inf, -1.0)], "float64"
    ).reshape(1, 1, -1, 2)
    border = jax.jit(_pallas("border", True))(clean, grid)
    np.testing.assert_array_equal(np.asarray(border).ravel(), [1, 4, 3, 1])
    reflection = jax.jit(_pallas("reflection", True))(clean, grid[:, :, :3])
    np.testing.assert_array_equal(np.asarray(reflection).ravel(), [1, 4, 3])
    # A non-finite point reads nothing, even where its stand-in index
    # (pixel 0, 0) holds NaN. (The package's XLA path reads that pixel
    # with weight zero there, and returns NaN.)
    clean[0, 0, 0, 0] = np.nan
    grid = np.array([(np.nan, 0.0), (0.0, np.inf)]).reshape(1, 1, 2, 2)
    sample = jax.jit(_pallas("zeros", False))
    out, pull = jax.vjp(sample, clean, grid)
    d_images, d_grid = pull(np.ones_like(out))
    np.testing.assert_array_equal(np.asarray(out), 0.0)
    np.testing.assert_array_equal(np.asarray(d_images), 0.0)
    np.testing.assert_array_equal(np.asarray(d_grid), 0.0)


@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_non_finite_points(padding_mode):
    images, grid, upstream = _case("float64", seed=1)
    images[0, -1, -1, 0] = np.nan  # a non-finite pixel in a corner
    grid[0, 0, 0] = (np.nan, 0.2)
    grid[0, 0, 1] = (np.inf, 0.2)
    grid[0, 0, 2] = (0.3, -np.inf)
    grid[0, 1, 0] = (3.0, 3.0)  # far outside, beside the NaN pixel
    grid[0, 1, 1] = (np.inf, np.nan)
    grid[1] = np.clip(grid[1], -0.5, 0.5)  # the other image: untouched
    mine = _value_and_grads(
        _pallas(padding_mode, False), images, grid, upstream
    )
    ref = _value_and_grads(_xla(padding_mode, False), images, grid, upstream)
    for name, a, b in zip(("output", "d images", "d grid"), mine, ref):
        np.testing.assert_allclose(
            a, b, rtol=1e-12, atol=ATOL["float64"], err_msg=name
        )
    out, d_images, d_grid = mine
    # The NaN pixel reaches only the points that read it.
    assert np.isfinite(out[1]).all() and np.isfinite(d_grid[1]).all()
    for j in (0, 1):
        assert np.isfinite(d_grid[0, 0, j]).all()
    np.testing.assert_array_equal(d_grid[0, 0, 0], 0.0)
    np.testing.assert_array_equal(d_grid[0, 1, 1], 0.0)
    if padding_mode == "zeros":
        # Far outside reads zero; the others read the NaN corner.
        np.testing.assert_array_equal(out[0, 1, 0], 0.0)
        np.testing.assert_array_equal(d_grid[0, 1, 0], 0.0)
    if padding_mode != "border":
        np.testing.assert_array_equal(out[0, 0, :3], 0.0)
        np.testing.assert_array_equal(d_grid[0, 0, :3], 0.0)
    else:
        # An infinite x reads the right border, with d/dx = 0.
        assert np.isfinite(out[0, 0, 1]).all()
        assert d_grid[0, 0, 1, 0] == 0.0
    assert np.isfinite(d_images[1]).all()


def _second_derivatives(sample, images, grid, u, v, w):
    """d / d (images, grid) of `sum(d grid * v) + sum(d images * w)`,
    where the first gradients are of `sum(sample * u)`."""
    import jax
    import jax.numpy as jnp

    def objective(i, g):
        _, pull = jax.vjp(sample, i, g)
        d_images, d_grid = pull(u)
        return jnp.sum(d_grid * v) + jnp.sum(d_images * w)

    return [
        np.asarray(x)
        for x in jax.jit(jax.grad(objective, (0, 1)))(images, grid)
    ]


def test_second_derivatives(padding_mode="reflection", align_corners=True):
    # One case (interpret mode is slow): reflection, whose padding has the
    # most derivative terms.
    images, grid, u = _case("float64", seed=2, channels=2)
    rng = np.random.default_rng(3)
    v = rng.normal(size=grid.shape)
    w = rng.normal(size=images.shape)
    args = (images, grid, u, v, w)
    mine = _second_derivatives(_pallas(padding_mode, align_corners), *args)
    ref = _second_derivatives(_xla(padding_mode, align_corners), *args)
    for name, a, b in zip(("d2 images", "d2 grid"), mine, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)
    # And against central differences of the first gradients (float64,
    # points off the kinks: a step of 1e-6 crosses no pixel boundary).
    import jax

    sample = _pallas(padding_mode, align_corners)
    first = jax.jit(lambda g: _first(sample, images, g, u, v, w))
    delta = 1e-6
    for index in ((0, 1, 2, 0), (1, 2, 3, 1)):
        step = np.zeros_like(grid)
        step[index] = delta
        numeric = (first(grid + step) - first(grid - step)) / (2 * delta)
        np.testing.assert_allclose(
            mine[1][index], numeric, rtol=1e-6, atol=1e-6
        )


def _first(sample, images, grid, u, v, w):
    import jax
    import jax.numpy as jnp

    _, pull = jax.vjp(sample, images, grid)
    d_images, d_grid = pull(u)
    return jnp.sum(d_grid * v) + jnp.sum(d_images * w)


def test_vjp_of_jit_matches_eager():
    import jax

    images, grid, upstream = _case("float64", seed=4, channels=1)
    sample = _pallas("border", False)
    out, pull = jax.vjp(jax.jit(sample), images, grid)
    ref = _value_and_grads(_xla("border", False), images, grid, upstream)
    for name, a, b in zip(
        ("output", "d images", "d grid"), (out, *pull(upstream)), ref
    ):
        np.testing.assert_allclose(
            np.asarray(a), b, rtol=1e-12, atol=ATOL["float64"], err_msg=name
        )


def test_supports_and_mode():
    from keras_stn.ops.backend import jax_pallas

    images = np.zeros((1, 4, 4, 3), "float32")
    assert jax_pallas.supports("bilinear", 2, "zeros", False, images, False)
    # Interpret mode on the CPU is deterministic; a GPU's atomics are not.
    assert not jax_pallas.supports("nearest", 2, "zeros", False, images, False)
    assert not jax_pallas.supports("bilinear", 3, "zeros", False, images, False)
    assert not jax_pallas.supports(
        "bilinear", 2, "zeros", False, images.astype("float16"), False
    )
    jax_pallas.set_mode("auto")
    on_gpu = __import__("jax").default_backend() == "gpu"
    assert (
        jax_pallas.supports("bilinear", 2, "zeros", False, images, False)
        == on_gpu
    )
    assert not jax_pallas.supports("bilinear", 2, "zeros", False, images, True)
    jax_pallas.set_mode("xla")
    assert not jax_pallas.supports("bilinear", 2, "zeros", False, images, False)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        jax_pallas.set_mode("triton")
    with pytest.raises(ValueError, match="padding_mode"):
        jax_pallas.sample(images, np.zeros((1, 1, 1, 2)), "bilinear", "wrap")


@pytest.mark.parametrize("padding_mode", PADDINGS)
def test_lowers_to_triton(padding_mode, monkeypatch):
    """Both kernels lower to Triton for CUDA (from this CPU, with
    `jax.export`): every primitive in them has a Triton lowering. (Compiling
    and running them needs a GPU: benchmarks/gpu_session.sh.)"""
    import jax
    from jax import export

    from keras_stn.ops.backend import jax_pallas

    monkeypatch.setattr(jax_pallas, "_interpret", lambda: False)

    def step(images, grid):
        out, pull = jax.vjp(
            _pallas(padding_mode, padding_mode == "reflection"), images, grid
        )
        return out, pull(out)

    triton = "__gpu$xla.gpu.triton"
    for dtype, channels in (("float32", 3), ("float64", 256)):
        exported = export.export(
            jax.jit(step),
            platforms=["cuda"],
            disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
        )(
            jax.ShapeDtypeStruct((2, 9, 7, channels), dtype),
            jax.ShapeDtypeStruct((2, 5, 6, 2), dtype),
        )
        text = exported.mlir_module()
        # The forward and the backward kernel, each one Triton call.
        assert text.count(f"@{triton}(") == 2, dtype
        assert '"_forward_kernel"' in text and '"_backward_kernel"' in text


def test_through_the_kernel_seam(monkeypatch):
    """Registered as the JAX backend's native sampler, the kernel serves
    `keras_stn.ops.bilinear_sample` (float16 computed in float32)."""
    import jax

    from keras_stn import config
    from keras_stn import ops as stn_ops
    from keras_stn.ops import backend

    monkeypatch.setitem(
        backend.NATIVE_SAMPLERS, "jax", "keras_stn.ops.backend.jax_pallas"
    )
    monkeypatch.setattr(config, "native_kernels", lambda: True)
    images, grid, upstream = _case("float32", seed=5)

    def sample(i, g):
        return stn_ops.bilinear_sample(i, g, padding_mode="border")

    assert "pallas_call" in str(jax.make_jaxpr(sample)(images, grid))
    mine = _value_and_grads(sample, images, grid, upstream)
    ref = _value_and_grads(_xla("border", False), images, grid, upstream)
    for name, a, b in zip(("output", "d images", "d grid"), mine, ref):
        np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=ATOL["float32"] * 4, err_msg=name
        )
    half = jax.jit(sample)(images.astype("float16"), grid)
    assert half.dtype == "float16"
    np.testing.assert_allclose(
        np.asarray(half, "float32"), mine[0], rtol=0, atol=2e-3
    )


@pytest.mark.parametrize(
    "padding_mode, align_corners",
    (("border", True), ("reflection", False)),
)
def test_volumes_match_xla_path(padding_mode, align_corners):
    rng = np.random.default_rng(6)
    volumes = rng.normal(size=(1, 3, 4, 5, 2))
    grid = rng.uniform(-1.3, 1.3, size=(1, 2, 3, 2, 3))
    grid[0, 0, 0, 0] = (np.nan, 0.0, 0.1)
    grid[0, 0, 0, 1] = (0.2, np.inf, 0.1)
    upstream = rng.normal(size=(1, 2, 3, 2, 2))
    mine = _value_and_grads(
        _pallas(padding_mode, align_corners), volumes, grid, upstream
    )
    ref = _value_and_grads(
        _xla(padding_mode, align_corners), volumes, grid, upstream
    )
    for name, a, b in zip(("output", "d volumes", "d grid"), mine, ref):
        np.testing.assert_allclose(
            a, b, rtol=1e-12, atol=ATOL["float64"], err_msg=name
        )
    assert np.isfinite(mine[2]).all()


def test_volumes_lower_to_triton(monkeypatch):
    import jax
    from jax import export

    from keras_stn.ops.backend import jax_pallas

    monkeypatch.setattr(jax_pallas, "_interpret", lambda: False)

    def step(volumes, grid):
        out, pull = jax.vjp(_pallas("reflection", False), volumes, grid)
        return out, pull(out)

    triton = "__gpu$xla.gpu.triton"
    exported = export.export(
        jax.jit(step),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
    )(
        jax.ShapeDtypeStruct((2, 4, 9, 7, 3), "float32"),
        jax.ShapeDtypeStruct((2, 3, 5, 6, 3), "float32"),
    )
    assert exported.mlir_module().count(f"@{triton}(") == 2

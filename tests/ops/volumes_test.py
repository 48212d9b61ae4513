"""3-D affine grids and trilinear / nearest sampling: PyTorch's 5-D
`affine_grid` and `grid_sample`, a plain-autodiff twin, finite differences,
second derivatives, hand-computed cases, non-finite input and bad input.

Backend-neutral: gradients come from the Keras backend's autodiff
(`test_case.gradients`); the twin below is written with `keras.ops` and no
custom gradient, so every backend differentiates it itself.
"""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

import keras_stn
from keras_stn import ops as stn_ops
from tests import test_case

MODES = list(
    itertools.product(("zeros", "border", "reflection"), (False, True))
)
# One pair of shapes for the random cases, so that backends which compile
# each op per shape (JAX's eager mode) reuse their kernels across tests.
VOLUMES_SHAPE = (2, 3, 5, 4, 3)
GRID_SHAPE = (2, 3, 4, 5, 3)
OUTPUT_SHAPE = (2, 3, 4, 5, 3)


def _to_torch_layout(x):
    return x.transpose(0, 4, 1, 2, 3)


def _from_torch_layout(x):
    return x.transpose(0, 2, 3, 4, 1)


def _torch_sample(volumes_, grid, mode, padding_mode, align_corners, upstream):
    """PyTorch's 5-D `grid_sample`: output, d volumes, d grid."""
    torch = test_case.requires_torch()
    tv = torch.tensor(_to_torch_layout(volumes_), requires_grad=True)
    tg = torch.tensor(grid, requires_grad=True)
    out = torch.nn.functional.grid_sample(
        tv,
        tg,
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    (out * torch.tensor(_to_torch_layout(upstream))).sum().backward()
    grid_grad = tg.grad.numpy() if tg.grad is not None else np.zeros_like(grid)
    return (
        _from_torch_layout(out.detach().numpy()),
        _from_torch_layout(tv.grad.numpy()),
        grid_grad,
    )


def _off_kink_grid(generator, shape, size, low, high, align_corners):
    """Random `(x, y, z)` points whose voxel coordinates stay 0.02 away
    from integers (the kernel's kinks) and from the reflection axes, for
    finite differences and the twin. `size` is `(D, H, W)`."""
    grid = generator.uniform(low, high, size=shape)
    for axis, n in enumerate(size[::-1]):  # x along W, y along H, z along D
        if align_corners:
            index = (grid[..., axis] + 1) / 2 * (n - 1)
        else:
            index = ((grid[..., axis] + 1) * n - 1) / 2
        # Reflection axes sit on integers (align_corners) or half-integers.
        for offset in (0.0, 0.5):
            shifted = index - offset
            frac = shifted - np.floor(shifted)
            shifted = np.floor(shifted) + np.clip(frac, 0.02, 0.98)
            index = shifted + offset
        if align_corners:
            grid[..., axis] = index / (n - 1) * 2 - 1
        else:
            grid[..., axis] = (2 * index + 1) / n - 1
    return grid


def _twin_trilinear(volumes_, grid, padding_mode, align_corners):
    """Trilinear sampling written plainly in `keras.ops`, differentiated
    by the backend's autodiff: eight gathers from the flat volume, weights
    masked outside. Finite points only; at the kinks its conventions are
    the autodiff ones, so compare off them.
    """
    batch, depth, height, width, channels = volumes_.shape
    flat = ops.reshape(volumes_, (-1, channels))

    def index_of(coord, n):
        if align_corners:
            index = (coord + 1.0) / 2.0 * (n - 1.0)
        else:
            index = ((coord + 1.0) * n - 1.0) / 2.0
        if padding_mode == "reflection":
            low = 0.0 if align_corners else -0.5
            span = n - 1.0 if align_corners else float(n)
            if span > 0:
                t = ops.abs(index - low)
                flips = ops.floor(t / span)
                extra = t - flips * span
                even = ops.equal(ops.floor(flips / 2.0) * 2.0, flips)
                index = ops.where(even, extra + low, span - extra + low)
            else:
                index = ops.zeros_like(index)
        if padding_mode != "zeros":
            index = ops.clip(index, 0.0, n - 1.0)
        return index

    x = index_of(grid[..., 0], width)
    y = index_of(grid[..., 1], height)
    z = index_of(grid[..., 2], depth)
    x0, y0, z0 = ops.floor(x), ops.floor(y), ops.floor(z)
    fx, fy, fz = x - x0, y - y0, z - z0
    offsets = ops.reshape(
        ops.arange(batch, dtype=grid.dtype),
        (-1,) + (1,) * (len(grid.shape) - 2),
    )
    output = 0.0
    for dz, dy, dx in itertools.product((0, 1), repeat=3):
        xi, yi, zi = x0 + dx, y0 + dy, z0 + dz
        weight = (
            (fx if dx else 1.0 - fx)
            * (fy if dy else 1.0 - fy)
            * (fz if dz else 1.0 - fz)
        )
        inside = (
            (xi >= 0)
            & (xi <= width - 1)
            & (yi >= 0)
            & (yi <= height - 1)
            & (zi >= 0)
            & (zi <= depth - 1)
        )
        weight = weight * ops.cast(inside, grid.dtype)
        xi = ops.clip(xi, 0, width - 1)
        yi = ops.clip(yi, 0, height - 1)
        zi = ops.clip(zi, 0, depth - 1)
        row = ((offsets * depth + zi) * height + yi) * width + xi
        row = ops.cast(ops.reshape(row, (-1,)), "int32")
        taps = ops.reshape(
            ops.take(flat, row, axis=0), (*grid.shape[:-1], channels)
        )
        output = output + taps * weight[..., None]
    return output


def _torch_affine_grid(theta, size, align_corners):
    torch = test_case.requires_torch()
    t = torch.tensor(theta, requires_grad=True)
    out = torch.nn.functional.affine_grid(
        t, (theta.shape[0], 1, *size), align_corners=align_corners
    )
    upstream = np.random.default_rng(7).normal(size=tuple(out.shape))
    (out * torch.tensor(upstream, dtype=out.dtype)).sum().backward()
    return out.detach().numpy(), t.grad.numpy()


# affine_grid_3d ------------------------------------------------------------


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_affine_grid_matches_torch(align_corners, dtype):
    theta = test_case.rng(0).normal(size=(2, 3, 4)).astype(dtype)
    size = (3, 4, 5)
    expected, expected_grad = _torch_affine_grid(theta, size, align_corners)
    out, (grad,) = test_case.gradients(
        lambda t: stn_ops.affine_grid_3d(t, size, align_corners), theta
    )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(out, expected, atol)
    # The theta gradient sums 60 points, up to about 21 here: a few ulps of
    # that (2e-6 in float32) in another summation order.
    test_case.assert_close(grad, expected_grad, 2 * atol)


def test_affine_grid_takes_flat_theta_and_one_voxel_axes():
    theta = test_case.rng(1).normal(size=(2, 12))
    size = (1, 2, 1)
    expected, _ = _torch_affine_grid(theta.reshape(2, 3, 4), size, False)
    out = stn_ops.affine_grid_3d(theta, size)
    test_case.assert_close(out, expected, 1e-12)


@pytest.mark.parametrize("align_corners", [False, True])
def test_affine_grid_jacobian_matches_finite_differences(align_corners):
    theta = test_case.rng(2).normal(size=(1, 3, 4))
    test_case.assert_jacobian_close(
        lambda t: stn_ops.affine_grid_3d(t, (2, 2, 3), align_corners),
        [theta],
        delta=1e-6,
        atol=1e-8,
    )


def test_non_finite_theta_samples_zeros_and_spares_the_batch():
    gen = test_case.rng(3)
    vols = gen.normal(size=(2, 3, 4, 4, 2))
    theta = np.tile(np.eye(3, 4), (2, 1, 1)) + 0.1 * gen.normal(size=(2, 3, 4))
    bad = theta.copy()
    bad[0, 1, 2] = np.nan

    def run(t):
        return test_case.gradients(
            lambda v, t: stn_ops.trilinear_sample(
                v, stn_ops.affine_grid_3d(t, (2, 3, 3)), "border"
            ),
            vols,
            t,
        )

    out, (d_vols, d_theta) = run(bad)
    ref_out, (_, ref_d_theta) = run(theta)
    for t in (out, d_vols, d_theta):
        assert np.all(np.isfinite(t))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_array_equal(d_theta[0], 0.0)
    np.testing.assert_array_equal(out[1], ref_out[1])
    np.testing.assert_array_equal(d_theta[1], ref_d_theta[1])
    assert np.abs(ref_d_theta[0]).max() > 0


# trilinear_sample and nearest_sample_3d against PyTorch ---------------------


def _parity_inputs(dtype, align_corners, seed=4):
    """Volumes, a grid with points inside, outside, on the border and on
    voxel centres, and an upstream gradient."""
    gen = test_case.rng(seed)
    vols = gen.normal(size=VOLUMES_SHAPE).astype(dtype)
    grid = gen.uniform(-1.6, 1.6, size=GRID_SHAPE).astype(dtype)
    identity = stn_ops.affine_grid_3d(
        np.tile(np.eye(3, 4), (2, 1, 1)), (1, 1, 5), align_corners
    )
    grid[:, 0, :1] = test_case.to_numpy(identity)[:, 0]
    grid[:, 1, 0, :4] = [[-1, -1, -1], [1, 1, 1], [1, -1, 1], [-1, 0.5, 1]]
    upstream = gen.normal(size=OUTPUT_SHAPE).astype(dtype)
    return vols, grid, upstream


# TensorFlow kernels in both dtypes for every mode, and the op-level XLA
# path users get, in float32, for two modes that between them cover every
# padding branch's kinds of index arithmetic (each compilation costs
# seconds; other backends have no op-level XLA).
PARITY_CASES = [
    (padding_mode, align_corners, dtype, False)
    for padding_mode, align_corners in MODES
    for dtype in ("float32", "float64")
] + [
    pytest.param(*case, marks=pytest.mark.tensorflow_only)
    for case in [
        ("zeros", False, "float32", True),
        ("reflection", True, "float32", True),
    ]
]


@pytest.mark.parametrize("padding_mode,align_corners,dtype,xla", PARITY_CASES)
def test_trilinear_matches_torch_grid_sample(
    padding_mode, align_corners, dtype, xla
):
    keras_stn.config.set_xla_samplers(xla)
    _assert_trilinear_matches_torch(padding_mode, align_corners, dtype)


def _assert_trilinear_matches_torch(padding_mode, align_corners, dtype):
    vols, grid, upstream = _parity_inputs(dtype, align_corners)
    expected = _torch_sample(
        vols, grid, "bilinear", padding_mode, align_corners, upstream
    )
    out, (d_vols, d_grid) = test_case.gradients(
        lambda v, g: stn_ops.trilinear_sample(
            v, g, padding_mode, align_corners
        ),
        vols,
        grid,
        upstream=upstream,
    )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(out, expected[0], atol)
    test_case.assert_close(d_vols, expected[1], atol)
    # d grid carries a factor of up to W / 2 = 2.5 and sums 3 channels.
    test_case.assert_close(d_grid, expected[2], 20 * atol)


# The corner table (few channels) and the framed slabs (many) gather the
# same taps: both layouts, each against PyTorch, on the same inputs.
@pytest.mark.parametrize("max_channels", [0, VOLUMES_SHAPE[-1]])
@pytest.mark.parametrize(
    "padding_mode,align_corners", [("zeros", False), ("border", True)]
)
def test_both_tap_layouts_match_torch_grid_sample(
    monkeypatch, max_channels, padding_mode, align_corners
):
    monkeypatch.setattr(volumes, "CORNER_TABLE_MAX_CHANNELS", max_channels)
    _assert_trilinear_matches_torch(padding_mode, align_corners, "float64")


@pytest.mark.parametrize("padding_mode,align_corners,dtype,xla", PARITY_CASES)
def test_nearest_matches_torch_grid_sample(
    padding_mode, align_corners, dtype, xla
):
    keras_stn.config.set_xla_samplers(xla)
    vols, grid, upstream = _parity_inputs(dtype, align_corners, seed=5)
    expected = _torch_sample(
        vols, grid, "nearest", padding_mode, align_corners, upstream
    )
    out, (d_vols, d_grid) = test_case.gradients(
        lambda v, g: stn_ops.nearest_sample_3d(
            v, g, padding_mode, align_corners
        ),
        vols,
        grid,
        upstream=upstream,
    )
    np.testing.assert_array_equal(out, expected[0])
    test_case.assert_close(d_vols, expected[1], test_case.tolerance(dtype))
    np.testing.assert_array_equal(d_grid, 0.0)


# Hand-written gradients: the twin, finite differences, second derivatives --


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("padding_mode,align_corners", MODES)
def test_gradient_matches_autodiff_twin(padding_mode, align_corners, dtype):
    gen = test_case.rng(6)
    vols = gen.normal(size=VOLUMES_SHAPE).astype(dtype)
    grid = _off_kink_grid(
        gen, GRID_SHAPE, VOLUMES_SHAPE[1:4], -1.4, 1.4, align_corners
    ).astype(dtype)
    upstream = gen.normal(size=OUTPUT_SHAPE).astype(dtype)
    ours = test_case.gradients(
        lambda v, g: stn_ops.trilinear_sample(
            v, g, padding_mode, align_corners
        ),
        vols,
        grid,
        upstream=upstream,
    )
    twin = test_case.gradients(
        lambda v, g: _twin_trilinear(v, g, padding_mode, align_corners),
        vols,
        grid,
        upstream=upstream,
    )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(ours[0], twin[0], atol)
    test_case.assert_close(ours[1][0], twin[1][0], atol)
    test_case.assert_close(ours[1][1], twin[1][1], 10 * atol)


@pytest.mark.parametrize("padding_mode,align_corners", MODES)
def test_jacobian_matches_finite_differences(padding_mode, align_corners):
    # Tiny: two forward passes per input entry, one pullback per output.
    gen = test_case.rng(7)
    vols = gen.normal(size=(1, 2, 3, 2, 1))
    grid = _off_kink_grid(
        gen, (1, 1, 2, 2, 3), (2, 3, 2), -1.3, 1.3, align_corners
    )
    test_case.assert_jacobian_close(
        lambda v, g: stn_ops.trilinear_sample(
            v, g, padding_mode, align_corners
        ),
        [vols, grid],
        delta=1e-6,
        atol=1e-6,
    )


def _hessian_probe(fn, vols, grid, probe):
    """d/d(volumes, grid) of `<d/d grid sum(fn(volumes, grid)^2), probe>`,
    by the backend's own second-order autodiff."""
    backend = test_case.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        v, g = tf.constant(vols), tf.constant(grid)
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([v, g])
            with tf.GradientTape() as inner:
                inner.watch([v, g])
                loss = tf.reduce_sum(fn(v, g) ** 2)
            directional = tf.reduce_sum(inner.gradient(loss, g) * probe)
        return [
            test_case.to_numpy(x) for x in outer.gradient(directional, [v, g])
        ]
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        def directional(v, g):
            d_grid = jax.grad(lambda v, g: jnp.sum(fn(v, g) ** 2), 1)(v, g)
            return jnp.sum(d_grid * probe)

        grads = jax.grad(directional, (0, 1))(
            jnp.asarray(vols), jnp.asarray(grid)
        )
        return [np.asarray(x) for x in grads]
    if backend == "torch":
        import torch

        v = torch.tensor(vols, requires_grad=True)
        g = torch.tensor(grid, requires_grad=True)
        (d_grid,) = torch.autograd.grad(
            (fn(v, g) ** 2).sum(), g, create_graph=True
        )
        directional = (d_grid * torch.tensor(probe)).sum()
        return [x.numpy() for x in torch.autograd.grad(directional, [v, g])]
    pytest.skip(f"no second derivatives for Keras backend {backend!r}")


@pytest.mark.parametrize("padding_mode,align_corners", MODES)
def test_second_derivatives_match_twin(padding_mode, align_corners):
    gen = test_case.rng(8)
    vols = gen.normal(size=VOLUMES_SHAPE)
    grid = _off_kink_grid(
        gen, GRID_SHAPE, VOLUMES_SHAPE[1:4], -1.2, 1.2, align_corners
    )
    probe = gen.normal(size=grid.shape)
    ours = _hessian_probe(
        lambda v, g: stn_ops.trilinear_sample(
            v, g, padding_mode, align_corners
        ),
        vols,
        grid,
        probe,
    )
    twin = _hessian_probe(
        lambda v, g: _twin_trilinear(v, g, padding_mode, align_corners),
        vols,
        grid,
        probe,
    )
    for a, b in zip(ours, twin):
        test_case.assert_close(a, b, 1e-9)
        assert np.abs(a).max() > 0


# Hand-computed cases -------------------------------------------------------


def _arange_volume(depth, height, width):
    size = depth * height * width
    return np.arange(size, dtype="float32").reshape(1, depth, height, width, 1)


@pytest.mark.parametrize("kernel", ["trilinear", "nearest"])
@pytest.mark.parametrize(
    "align_corners,size", [(False, (2, 4, 8)), (True, (3, 5, 9))]
)
def test_identity_grid_returns_input_exactly(kernel, align_corners, size):
    # Exact where the voxel centres are exact binary fractions: sizes a
    # power of two (align_corners=False) or one more (True).
    vols = test_case.rng(9).normal(size=(2, *size, 3)).astype("float32")
    theta = np.tile(np.eye(3, 4, dtype="float32"), (2, 1, 1))
    grid = stn_ops.affine_grid_3d(theta, size, align_corners)
    sampler = {
        "trilinear": stn_ops.trilinear_sample,
        "nearest": stn_ops.nearest_sample_3d,
    }[kernel]
    out = sampler(vols, grid, align_corners=align_corners)
    np.testing.assert_array_equal(test_case.to_numpy(out), vols)


@pytest.mark.parametrize("align_corners", [False, True])
def test_half_turn_about_the_x_axis_reverses_depth_and_rows(align_corners):
    vols = _arange_volume(3, 4, 5)
    theta = np.diag([1.0, -1.0, -1.0, 0.0])[:3][None].astype("float32")
    grid = stn_ops.affine_grid_3d(theta, (3, 4, 5), align_corners)
    out = stn_ops.trilinear_sample(vols, grid, align_corners=align_corners)
    test_case.assert_close(out, vols[:, ::-1, ::-1], 1e-5)


def test_one_voxel_translation_along_z_shifts_slices():
    vols = _arange_volume(4, 2, 3)
    # With align_corners=False one voxel is 2 / D in normalised units.
    theta = np.array([[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.5]]], "float32")
    grid = stn_ops.affine_grid_3d(theta, (4, 2, 3))
    out = stn_ops.trilinear_sample(vols, grid)
    expected = np.concatenate([vols[:, 1:], np.zeros((1, 1, 2, 3, 1))], 1)
    test_case.assert_close(out, expected, 1e-5)


def test_gradient_on_voxel_centres_is_the_forward_difference():
    # PyTorch's convention at the kinks: the upper tap's difference.
    vols = _arange_volume(2, 3, 3) ** 2 / 10.0
    theta = np.eye(3, 4, dtype="float32")[None]
    grid = stn_ops.affine_grid_3d(theta, (2, 3, 3), align_corners=True)
    _, (_, d_grid) = test_case.gradients(
        lambda v, g: stn_ops.trilinear_sample(v, g, align_corners=True),
        vols,
        grid,
        upstream=np.ones((1, 2, 3, 3, 1)),
    )
    v = vols[0, ..., 0].astype(np.float64)
    padded = np.pad(v, 1)[1:, 1:, 1:]  # the next voxel, zero past the end
    expected = np.stack(
        [
            (padded[:-1, :-1, 1:] - v) * 1.0,  # d / d x: (W - 1) / 2
            (padded[:-1, 1:, :-1] - v) * 1.0,  # d / d y: (H - 1) / 2
            (padded[1:, :-1, :-1] - v) * 0.5,  # d / d z: (D - 1) / 2
        ],
        axis=-1,
    )
    test_case.assert_close(d_grid[0], expected, 1e-4)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_non_finite_points_sample_zero_and_spare_the_batch(padding_mode):
    gen = test_case.rng(10)
    vols = gen.normal(size=(3, 3, 4, 4, 2)).astype("float32")
    grid = _off_kink_grid(gen, (3, 2, 3, 3, 3), (3, 4, 4), -0.9, 0.9, False)
    grid = grid.astype("float32")
    bad = grid.copy()
    bad[0, 0, 0, 0, 0] = np.nan
    bad[0, 1, 2, 1, 2] = np.inf
    bad[0, 1, 1, 1] = [-np.inf, 1e38, 0.0]
    bad[1] = np.nan  # a whole sample, as from a NaN theta

    def run(g):
        return test_case.gradients(
            lambda v, gg: stn_ops.trilinear_sample(v, gg, padding_mode),
            vols,
            g,
            upstream=np.ones((3, 2, 3, 3, 2)),
        )

    out, (d_vols, d_grid) = run(bad)
    ref_out, (_, ref_d_grid) = run(grid)
    for t in (out, d_vols, d_grid):
        assert np.all(np.isfinite(t))
    # Under border padding the infinite points read the border, as in 2-D
    # and PyTorch (`edge_cases_test.py` compares them with PyTorch).
    zeroed = [(1,), (0, 0, 0, 0)]
    if padding_mode != "border":
        zeroed += [(0, 1, 2, 1), (0, 1, 1, 1)]
    for index in zeroed:
        np.testing.assert_array_equal(out[index], 0.0)
        np.testing.assert_array_equal(d_grid[index], 0.0)
    np.testing.assert_array_equal(out[2], ref_out[2])
    np.testing.assert_array_equal(d_grid[2], ref_d_grid[2])
    np.testing.assert_array_equal(out[0, 0, 1], ref_out[0, 0, 1])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    gen = test_case.rng(11)
    vols = gen.normal(size=(2, 3, 4, 5, 2)).astype("float32")
    grid = gen.uniform(-1, 1, size=(2, 2, 3, 3, 3)).astype("float32")
    vols = test_case.to_numpy(ops.cast(ops.cast(vols, dtype), "float32"))
    grid = test_case.to_numpy(ops.cast(ops.cast(grid, dtype), "float32"))
    expected = stn_ops.trilinear_sample(vols, grid)
    out = stn_ops.trilinear_sample(ops.cast(vols, dtype), ops.cast(grid, dtype))
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    # The inputs are exactly representable, so only the output is rounded:
    # by half an ulp of values below 4 in magnitude (2^-10 in float16,
    # 2^-7 in bfloat16). Computed in half precision, the weights and sums
    # would round too.
    assert np.abs(test_case.to_numpy(expected)).max() < 4.0
    half_ulp = {"float16": 2.0**-10, "bfloat16": 2.0**-7}[dtype]
    test_case.assert_close(out, expected, half_ulp)


def test_volume_gradient_accumulates_duplicate_points():
    vols = np.ones((1, 2, 2, 2, 1), "float32")
    grid = np.zeros((1, 1, 3, 3, 3), "float32")  # nine points on the centre
    _, (d_vols, _) = test_case.gradients(
        stn_ops.trilinear_sample, vols, grid, upstream=np.ones((1, 1, 3, 3, 1))
    )
    np.testing.assert_allclose(d_vols, np.full((1, 2, 2, 2, 1), 9 / 8))


# Bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "volumes_shape,grid_shape,kwargs,pattern",
    [
        ((4, 5, 5, 1), (1, 3, 3, 3, 3), {}, r"`volumes` must have shape"),
        ((1, 4, 5, 5, 1), (1, 3, 3, 3, 2), {}, r"`grid` must have shape.*3\)"),
        ((1, 4, 5, 5, 1), (1, 3, 3, 3), {}, r"`grid` must have shape"),
        ((2, 4, 5, 5, 1), (3, 3, 3, 3, 3), {}, r"same batch size"),
        ((1, 4, 0, 5, 1), (1, 3, 3, 3, 3), {}, r"`volumes`.*non-empty"),
        (
            (1, 4, 5, 5, 1),
            (1, 3, 3, 3, 3),
            {"padding_mode": "wrap"},
            r"`padding_mode` must be one of .*'wrap'",
        ),
    ],
)
@pytest.mark.parametrize(
    "sampler", [stn_ops.trilinear_sample, stn_ops.nearest_sample_3d]
)
def test_bad_sampler_arguments_name_the_argument(
    sampler, volumes_shape, grid_shape, kwargs, pattern
):
    with pytest.raises(ValueError, match=pattern):
        sampler(
            np.zeros(volumes_shape, "float32"),
            np.zeros(grid_shape, "float32"),
            **kwargs,
        )


def test_integer_volumes_are_refused():
    with pytest.raises(
        ValueError, match=r"`volumes` must be a floating.*int32"
    ):
        stn_ops.trilinear_sample(
            ops.zeros((1, 2, 2, 2, 1), "int32"), np.zeros((1, 1, 1, 1, 3))
        )


@pytest.mark.parametrize(
    "theta_shape,size,pattern",
    [
        ((1, 2, 3), (2, 2, 2), r"`theta` must have shape \(B, 3, 4\)"),
        ((1, 6), (2, 2, 2), r"`theta` must have shape .*\(B, 12\)"),
        ((1, 3, 4, 1), (2, 2, 2), r"`theta` must have shape.*rank 4"),
        ((1, 12), (2, 2), r"`size` must be three positive ints.*\(2, 2\)"),
        ((1, 12), (2, 0, 2), r"`size` must be three positive ints"),
        ((1, 12), (2, 2.0, 2), r"`size` must be three positive ints"),
        ((1, 12), 8, r"`size` must be three positive ints.*size=8"),
    ],
)
def test_bad_affine_grid_arguments_name_the_argument(
    theta_shape, size, pattern
):
    with pytest.raises(ValueError, match=pattern):
        stn_ops.affine_grid_3d(np.zeros(theta_shape, "float32"), size)

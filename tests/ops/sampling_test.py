"""Bilinear sampling: PyTorch parity, the autodiff twin, finite differences,
hand-computed cases, XLA, dtypes, non-finite points and bad input.

Backend-neutral: gradients come from the Keras backend's autodiff
(`test_case.gradients`). The plain-autodiff twin is TensorFlow's; under the
other backends PyTorch's `grid_sample` takes its place as the oracle.
"""

import itertools

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn import ops as stn_ops
from tests import test_case

MODES = list(
    itertools.product(("zeros", "border", "reflection"), (False, True))
)


def _torch_sample(images, grid, mode, padding_mode, align_corners, upstream):
    torch = test_case.requires_torch()
    ti = torch.tensor(images.transpose(0, 3, 1, 2), requires_grad=True)
    tg = torch.tensor(grid, requires_grad=True)
    out = torch.nn.functional.grid_sample(
        ti,
        tg,
        mode=mode,
        padding_mode=padding_mode,
        align_corners=align_corners,
    )
    (out * torch.tensor(upstream.transpose(0, 3, 1, 2))).sum().backward()
    return (
        out.detach().numpy().transpose(0, 2, 3, 1),
        ti.grad.numpy().transpose(0, 2, 3, 1),
        tg.grad.numpy(),
    )


# TensorFlow kernels in both dtypes, and the op-level XLA path users get in
# float32 (each compilation costs seconds; other backends have no op-level
# XLA, so that case is TensorFlow's).
@pytest.mark.parametrize(
    "dtype,xla",
    [
        ("float32", False),
        ("float64", False),
        pytest.param("float32", True, marks=pytest.mark.tensorflow_only),
    ],
)
@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode,align_corners", MODES)
def test_matches_torch_grid_sample(
    xla, kernel, padding_mode, align_corners, dtype
):
    keras_stn.config.set_xla_samplers(xla)
    gen = test_case.rng(1)
    images = gen.normal(size=(2, 5, 7, 3)).astype(dtype)
    # Points inside, outside and on the border, plus exact pixel centres.
    grid = gen.uniform(-1.6, 1.6, size=(2, 6, 6, 2)).astype(dtype)
    grid[:, 0] = stn_ops.identity_grid((1, 6), 2, align_corners)[:, 0]
    grid[:, 1, :3] = [[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0]]
    upstream = gen.normal(size=(2, 6, 6, 3)).astype(dtype)
    expected = _torch_sample(
        images, grid, kernel, padding_mode, align_corners, upstream
    )
    out, (d_images, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.sample(i, g, kernel, padding_mode, align_corners),
        images,
        grid,
        upstream=upstream,
    )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(out, expected[0], atol)
    test_case.assert_close(d_images, expected[1], atol)
    # d grid carries a factor W / 2 (up to 3.5 here) and sums 3 channels.
    test_case.assert_close(d_grid, expected[2], 20 * atol)


@pytest.mark.parametrize("padding_mode,align_corners", MODES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradient_matches_autodiff_twin(padding_mode, align_corners, dtype):
    # The shapes of test_matches_torch_grid_sample (JAX reuses compilations).
    gen = test_case.rng(2)
    images = gen.normal(size=(2, 5, 7, 3)).astype(dtype)
    grid = test_case.off_kink_grid(
        gen, (2, 6, 6, 2), (5, 7), -1.4, 1.4, align_corners=align_corners
    ).astype(dtype)
    upstream = gen.normal(size=(2, 6, 6, 3)).astype(dtype)
    ours = test_case.gradients(
        lambda i, g: stn_ops.bilinear_sample(i, g, padding_mode, align_corners),
        images,
        grid,
        upstream=upstream,
    )
    if test_case.backend() == "tensorflow":
        from tests.ops import reference

        twin = test_case.gradients(
            lambda i, g: reference.bilinear_sample(
                i, g, padding_mode, align_corners
            ),
            images,
            grid,
            upstream=upstream,
        )
    else:
        # The twin is TensorFlow's; PyTorch's autodiff of its own sampler
        # is the independent oracle elsewhere.
        out, d_images, d_grid = _torch_sample(
            images, grid, "bilinear", padding_mode, align_corners, upstream
        )
        twin = out, (d_images, d_grid)
    atol = test_case.tolerance(dtype)
    test_case.assert_close(ours[0], twin[0], atol)
    test_case.assert_close(ours[1][0], twin[1][0], atol)
    test_case.assert_close(ours[1][1], twin[1][1], 10 * atol)


@pytest.mark.parametrize("padding_mode,align_corners", MODES)
def test_jacobian_matches_finite_differences(padding_mode, align_corners):
    gen = test_case.rng(3)
    images = gen.normal(size=(2, 4, 5, 2))
    grid = test_case.off_kink_grid(
        gen, (2, 3, 3, 2), (4, 5), -1.3, 1.3, align_corners=align_corners
    )
    test_case.assert_jacobian_close(
        lambda i, g: stn_ops.bilinear_sample(i, g, padding_mode, align_corners),
        [images, grid],
        delta=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize("xla_samplers", [False, True])
@pytest.mark.parametrize("channels", [40, 48])
def test_many_channels_match_the_reference(xla_samplers, channels):
    # The grid gradient sums over channels in 16-wide slices on TensorFlow
    # on a CPU (`bilinear._sum_over_channels`): two slices and a tail of 8,
    # then three slices; each with samplers compiled by themselves, whose
    # plan on a CPU differs from 16 channels on, and without.
    from keras_stn import config as stn_config

    if xla_samplers and test_case.backend() != "tensorflow":
        pytest.skip("samplers compile by themselves on TensorFlow only")
    stn_config.set_xla_samplers(xla_samplers)
    gen = test_case.rng(12)
    images = gen.normal(size=(2, 5, 7, channels))
    grid = test_case.off_kink_grid(gen, (2, 4, 3, 2), (5, 7), -1.3, 1.3)
    upstream = gen.normal(size=(2, 4, 3, channels))
    ours = test_case.gradients(
        lambda i, g: stn_ops.bilinear_sample(i, g, "zeros"),
        images,
        grid,
        upstream=upstream,
    )
    if test_case.backend() == "tensorflow":
        from tests.ops import reference

        twin = test_case.gradients(
            lambda i, g: reference.bilinear_sample(i, g, "zeros"),
            images,
            grid,
            upstream=upstream,
        )
    else:
        out, d_images, d_grid = _torch_sample(
            images, grid, "bilinear", "zeros", False, upstream
        )
        twin = out, (d_images, d_grid)
    test_case.assert_close(ours[0], twin[0], 1e-12)
    test_case.assert_close(ours[1][0], twin[1][0], 1e-12)
    test_case.assert_close(ours[1][1], twin[1][1], 1e-11)
    assert np.abs(ours[1][1]).max() > 1.0


@pytest.mark.tensorflow_only
@pytest.mark.xla_samplers
def test_second_derivatives_match_twin():
    tf = test_case.requires_tensorflow()
    from tests.ops import reference

    gen = test_case.rng(4)
    images = tf.constant(gen.normal(size=(2, 5, 5, 2)))
    grid = tf.constant(test_case.off_kink_grid(gen, (2, 3, 4, 2), (5, 5)))
    probe = tf.constant(gen.normal(size=(2, 3, 4, 2)))
    images_probe = tf.constant(gen.normal(size=(2, 5, 5, 2)))

    def hessian_probe(fn):
        # Both gradients' derivatives: on a CPU the image gradient is
        # written directly (`bilinear.images_gradient`), not the
        # autodiff of the forward pass.
        with tf.GradientTape(persistent=True) as outer:
            outer.watch([images, grid])
            with tf.GradientTape() as inner:
                inner.watch([images, grid])
                loss = tf.reduce_sum(fn(images, grid) ** 2)
            d_images, d_grid = inner.gradient(loss, [images, grid])
            directional = tf.reduce_sum(d_grid * probe) + tf.reduce_sum(
                d_images * images_probe
            )
        return outer.gradient(directional, [images, grid])

    ours = hessian_probe(stn_ops.bilinear_sample)
    twin = hessian_probe(reference.bilinear_sample)
    for a, b in zip(ours, twin):
        test_case.assert_close(a, b, 1e-9)
        assert np.abs(a).max() > 0


def _arange_image(height, width, channels=1, batch=1):
    values = np.arange(batch * height * width * channels, dtype="float32")
    return values.reshape(batch, height, width, channels)


@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize(
    "align_corners,size", [(False, (8, 16)), (True, (9, 17))]
)
def test_identity_grid_returns_input_exactly(kernel, align_corners, size):
    # Exact where the pixel centres are exact binary fractions: W a power
    # of two (align_corners=False) or W - 1 one (True).
    images = test_case.rng(5).normal(size=(2, *size, 3)).astype("float32")
    grid = stn_ops.identity_grid(size, 2, align_corners)
    out = stn_ops.sample(images, grid, kernel, align_corners=align_corners)
    np.testing.assert_array_equal(test_case.to_numpy(out), images)


@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype,atol", [("float64", 1e-12), ("float32", 2e-6)])
def test_identity_grid_returns_input_up_to_rounding(
    kernel, align_corners, dtype, atol
):
    # Elsewhere the centres round, by at most ~W * 2^-24 pixels in float32.
    images = test_case.rng(5).normal(size=(2, 7, 11, 3)).astype(dtype)
    grid = stn_ops.identity_grid((7, 11), 2, align_corners, dtype=dtype)
    out = stn_ops.sample(images, grid, kernel, align_corners=align_corners)
    test_case.assert_close(out, images, atol)


@pytest.mark.parametrize("align_corners", [False, True])
def test_half_turn_reverses_arange_image(align_corners):
    images = _arange_image(4, 6)
    theta = np.array([[-1, 0, 0, 0, -1, 0]], "float32")
    grid = stn_ops.affine_grid(theta, (4, 6), align_corners)
    out = stn_ops.bilinear_sample(images, grid, align_corners=align_corners)
    np.testing.assert_allclose(out, images[:, ::-1, ::-1], atol=1e-5)


def test_one_pixel_translation_shifts_image():
    images = _arange_image(3, 5)
    # With align_corners=False one pixel is 2 / W in normalised units.
    theta = np.array([[1, 0, 2 / 5, 0, 1, 0]], "float32")
    out = stn_ops.bilinear_sample(images, stn_ops.affine_grid(theta, (3, 5)))
    expected = np.concatenate([images[:, :, 1:], np.zeros((1, 3, 1, 1))], 2)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_centre_of_two_by_two_is_the_mean():
    images = _arange_image(2, 2)
    out = stn_ops.bilinear_sample(images, np.zeros((1, 1, 1, 2), "float32"))
    assert float(out[0, 0, 0, 0]) == 1.5


def test_gradient_on_integer_points_is_the_forward_difference():
    # The identity head starts exactly on pixel centres: the derivative
    # there must be finite and non-zero (the forward difference, PyTorch's
    # convention), not the zero a `1 - |x - x0|` kernel gives.
    images = _arange_image(3, 4)
    grid = stn_ops.identity_grid((3, 4), 1, align_corners=True)
    _, (_, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.bilinear_sample(i, g, align_corners=True),
        images,
        grid,
        upstream=np.ones((1, 3, 4, 1)),
    )
    # d out / d x = (right - here) * (W - 1) / 2; the last column's right
    # neighbour is zero padding. d / d y = (below - here) * (H - 1) / 2.
    # The kernel sums weighted taps (as PyTorch does) rather than weighting
    # differences, so float32 may round each of its four terms: 4 ulps.
    right = np.concatenate([images[0, :, 1:, 0], np.zeros((3, 1))], 1)
    below = np.concatenate([images[0, 1:, :, 0], np.zeros((1, 4))], 0)
    np.testing.assert_allclose(
        d_grid[0, ..., 0], (right - images[0, ..., 0]) * 1.5, rtol=4.8e-7
    )
    np.testing.assert_allclose(
        d_grid[0, ..., 1], (below - images[0, ..., 0]) * 1.0, rtol=4.8e-7
    )


def test_border_gradient_is_zero_at_and_beyond_the_edge():
    images = _arange_image(3, 3)
    grid = np.array([[[[1.0, 0.0], [1.5, 0.0], [-1.0, 0.0]]]], "float32")
    _, (_, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.bilinear_sample(i, g, "border", True),
        images,
        grid,
        upstream=np.ones((1, 1, 3, 1)),
    )
    np.testing.assert_array_equal(d_grid[..., 0], 0.0)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_one_pixel_input_and_output_stay_finite(padding_mode, align_corners):
    images = np.full((2, 1, 1, 3), 2.0, "float32")
    grid = np.array([[[[0.3, -0.2]]], [[[1.7, 0.0]]]], "float32")
    out, (d_images, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.bilinear_sample(i, g, padding_mode, align_corners),
        images,
        grid,
    )
    for t in (out, d_images, d_grid):
        assert np.all(np.isfinite(t))
    if padding_mode != "zeros":
        np.testing.assert_allclose(out, 2.0)


@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_non_finite_points_sample_zero_and_spare_the_batch(
    kernel, padding_mode
):
    gen = test_case.rng(6)
    images = gen.normal(size=(3, 5, 5, 2)).astype("float32")
    grid = test_case.off_kink_grid(gen, (3, 4, 4, 2), (5, 5)).astype("float32")
    bad = grid.copy()
    bad[0, 0, 0, 0] = np.nan
    bad[0, 1, 2, 1] = np.inf
    bad[1] = np.nan  # a whole sample, as from a NaN theta
    bad[0, 2, 2] = [-np.inf, 1e38]

    def run(g):
        return test_case.gradients(
            lambda i, gg: stn_ops.sample(i, gg, kernel, padding_mode),
            images,
            g,
            upstream=np.ones((3, 4, 4, 2)),
        )

    out, (d_images, d_grid) = run(bad)
    ref_out, (_, ref_d_grid) = run(grid)
    for t in (out, d_images, d_grid):
        assert np.all(np.isfinite(t))
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[0, 0, 0], 0.0)
    np.testing.assert_array_equal(d_grid[1], 0.0)
    np.testing.assert_array_equal(out[2], ref_out[2])
    np.testing.assert_array_equal(d_grid[2], ref_d_grid[2])


@pytest.mark.parametrize("kernel", ["bilinear", "bicubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_float64_points_just_below_a_pixel_use_their_own_cell(
    kernel, padding_mode
):
    # Pixel indices 1e-11 below an integer: float64 resolves them, float32
    # rounds them up onto the integer and into the next cell, where
    # bilinear's derivative is another difference of pixels. (Keras' JAX
    # and PyTorch `floor` compute float64 in float32.) The reflected ones
    # (outside the image) test the floor that counts reflections.
    images = test_case.rng(14).normal(size=(1, 5, 9, 2))
    # Inside the 9 x 5 image, then outside (reflected, or zeros).
    col = np.array([1.0, 3.0, 5.0, 7.0, -2.0, 11.0, 13.0, 4.0]) - 1e-11
    row = np.array([3.0, 1.0, 2.0, 4.0, 2.0, 1.0, 3.0, -3.0]) - 1e-11
    # align_corners=True: index = (x + 1) / 2 * (W - 1), W = 9, H = 5.
    grid = np.stack([col / 4.0 - 1.0, row / 2.0 - 1.0], axis=-1)[None, None]
    upstream = test_case.rng(15).normal(size=(1, 1, len(col), 2))
    expected = _torch_sample(
        images, grid, kernel, padding_mode, True, upstream
    )
    out, (d_images, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.sample(i, g, kernel, padding_mode, True),
        images,
        grid,
        upstream=upstream,
    )
    test_case.assert_close(out, expected[0], 1e-9)
    test_case.assert_close(d_images, expected[1], 1e-9)
    test_case.assert_close(d_grid, expected[2], 1e-9)


def _infinite_grid(dtype):
    """Batch 0: points infinite along x, y or both, and finite points whose
    index overflows float32 (1e38); batch 1: ordinary points. The shapes
    of `test_matches_torch_grid_sample`, whose compilations JAX reuses."""
    grid = test_case.rng(11).uniform(-0.8, 0.8, size=(2, 6, 6, 2))
    inf = np.inf
    grid[0, 0, :4] = [[inf, 0.3], [-inf, -0.2], [0.1, inf], [0.4, -inf]]
    grid[0, 1, :4] = [[inf, inf], [inf, -inf], [-inf, inf], [-inf, -inf]]
    grid[0, 2, :2] = [[1e38, -0.6], [-0.7, -1e38]]
    return grid.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(
    "kernel,padding_mode",
    [("bilinear", "border"), ("nearest", "border"), ("nearest", "zeros")],
)
def test_infinite_points_match_torch_where_its_answer_is_finite(
    kernel, padding_mode, align_corners, dtype
):
    # PyTorch clips an infinite index to the border under border padding
    # (the edge pixel, derivative zero along that axis, the usual one
    # along the other); nearest with zero padding reads zeros.
    gen = test_case.rng(12)
    images = gen.normal(size=(2, 5, 7, 3)).astype(dtype)
    grid = _infinite_grid(dtype)
    upstream = gen.normal(size=(2, 6, 6, 3)).astype(dtype)
    expected = _torch_sample(
        images, grid, kernel, padding_mode, align_corners, upstream
    )
    assert all(np.all(np.isfinite(e)) for e in expected)
    out, (d_images, d_grid) = test_case.gradients(
        lambda i, g: stn_ops.sample(i, g, kernel, padding_mode, align_corners),
        images,
        grid,
        upstream=upstream,
    )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(out, expected[0], atol)
    test_case.assert_close(d_images, expected[1], atol)
    # d grid carries a factor H / 2 or W / 2 and sums 3 channels.
    test_case.assert_close(d_grid, expected[2], 20 * atol)


@pytest.mark.parametrize(
    "kernel,padding_mode",
    [
        ("bilinear", "zeros"),
        ("bilinear", "reflection"),
        ("bicubic", "zeros"),
        ("bicubic", "border"),
        ("bicubic", "reflection"),
        ("nearest", "reflection"),
    ],
)
def test_infinite_points_sample_zeros_where_torch_has_no_answer(
    kernel, padding_mode
):
    # PyTorch's answer here is NaN (bilinear with zero padding, bicubic) or
    # undefined: an infinite index has no reflection (its CPU kernel then
    # crashes or clips a NaN). Ours: zeros, zero gradient, batch spared.
    gen = test_case.rng(13)
    images = gen.normal(size=(2, 5, 7, 3)).astype("float32")
    grid = _infinite_grid("float32")
    grid[0, 2, :2] = grid[0, 1, :2]  # infinite points only in batch 0

    def run(g):
        return test_case.gradients(
            lambda i, gg: stn_ops.sample(i, gg, kernel, padding_mode),
            images,
            g,
            upstream=np.ones((2, 6, 6, 3)),
        )

    out, (d_images, d_grid) = run(grid)
    clean_out, (_, clean_d_grid) = run(np.where(np.isinf(grid), 0.0, grid))
    for t in (out, d_images, d_grid):
        assert np.all(np.isfinite(t))
    infinite = np.isinf(grid).any(axis=-1)
    np.testing.assert_array_equal(out[infinite], 0.0)
    np.testing.assert_array_equal(d_grid[infinite], 0.0)
    np.testing.assert_array_equal(out[~infinite], clean_out[~infinite])
    np.testing.assert_array_equal(d_grid[~infinite], clean_d_grid[~infinite])


@pytest.mark.tensorflow_only
@pytest.mark.xla_samplers
@pytest.mark.parametrize("kernel", ["bilinear", "nearest", "bicubic"])
def test_xla_matches_eager(kernel):
    # JAX's compiled path is checked against TensorFlow's by
    # backend_parity_test (its worker runs under jax.jit).
    tf = test_case.requires_tensorflow()
    gen = test_case.rng(8)
    images = tf.constant(gen.normal(size=(2, 6, 7, 3)), tf.float32)
    grid = tf.constant(gen.uniform(-1.2, 1.2, (2, 5, 4, 2)), tf.float32)

    def step(i, g):
        with tf.GradientTape() as tape:
            tape.watch([i, g])
            out = stn_ops.sample(i, g, kernel, "reflection")
            loss = tf.reduce_sum(out * out)
        return [out] + tape.gradient(loss, [i, g])

    eager = step(images, grid)
    xla = tf.function(step, jit_compile=True)(images, grid)
    for a, b in zip(eager, xla):
        test_case.assert_close(a, b, 1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    gen = test_case.rng(9)
    images = gen.normal(size=(2, 5, 6, 3)).astype("float32")
    grid = gen.uniform(-1, 1, size=(2, 4, 4, 2)).astype("float32")
    expected = stn_ops.bilinear_sample(images, grid)
    images_half = keras.ops.cast(images, dtype)
    out = stn_ops.bilinear_sample(images_half, keras.ops.cast(grid, dtype))
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    # Only the input and output roundings are half precision.
    test_case.assert_close(
        out,
        expected,
        4 * test_case.tolerance(dtype) * 3,
        rtol=1e-2,
    )


def test_image_gradient_accumulates_duplicate_points():
    images = np.ones((1, 2, 2, 1), "float32")
    grid = np.zeros((1, 3, 3, 2), "float32")  # nine points on the centre
    _, (d_images, _) = test_case.gradients(
        stn_ops.bilinear_sample, images, grid, upstream=np.ones((1, 3, 3, 1))
    )
    np.testing.assert_allclose(d_images, np.full((1, 2, 2, 1), 9 / 4))


@pytest.mark.parametrize(
    "images_shape,grid_shape,kwargs,pattern",
    [
        ((5, 5, 1), (1, 3, 3, 2), {}, r"`images` must have shape"),
        ((1, 5, 5, 1), (1, 3, 3, 3), {}, r"`grid` must have shape.*2\)"),
        ((1, 5, 5, 1), (3, 3, 2), {}, r"`grid` must have shape"),
        ((2, 5, 5, 1), (3, 3, 3, 2), {}, r"same batch size"),
        ((1, 0, 5, 1), (1, 3, 3, 2), {}, r"non-empty H"),
        (
            (1, 5, 5, 1),
            (1, 3, 3, 2),
            {"padding_mode": "wrap"},
            r"`padding_mode` must be one of .*'wrap'",
        ),
        (
            (1, 5, 5, 1),
            (1, 3, 3, 2),
            {"kernel": "lanczos"},
            r"`kernel` must be one of .*'lanczos'",
        ),
        (
            (1, 5, 5, 1),
            (1, 3, 3, 2),
            {"antialias": -1},
            r"`antialias` must be a bool or a non-negative int",
        ),
    ],
)
def test_bad_arguments_name_the_argument(
    images_shape, grid_shape, kwargs, pattern
):
    with pytest.raises(ValueError, match=pattern):
        stn_ops.sample(
            np.zeros(images_shape, "float32"),
            np.zeros(grid_shape, "float32"),
            **kwargs,
        )


def test_integer_images_are_refused():
    with pytest.raises(ValueError, match=r"`images` must be a floating.*int32"):
        stn_ops.bilinear_sample(
            keras.ops.zeros((1, 3, 3, 1), "int32"),
            np.zeros((1, 2, 2, 2), "float32"),
        )


@pytest.mark.parametrize("channels", [1, 3, 6])
def test_every_tap_layout_gives_the_same_values_and_gradients(
    monkeypatch, channels
):
    from keras_stn.ops import tuning

    gen = test_case.rng(10)
    images = gen.normal(size=(2, 5, 7, channels))
    grid = gen.uniform(-1.4, 1.4, size=(2, 6, 6, 2))
    results = []
    # Corner table; framed image; on TensorFlow, the framed image's image
    # gradient as one tap-major segment sum, then as four scatter-adds in
    # a row (`backend.tensorflow_ops.gather_quads`).
    layouts = [(1000, None), (0, None)]
    if test_case.backend() == "tensorflow":
        layouts = [(1000, None), (0, 1000), (0, 0)]
    for table, tap_major in layouts:
        monkeypatch.setattr(tuning, "CORNER_TABLE_MAX_CHANNELS", table)
        if tap_major is not None:
            monkeypatch.setattr(tuning, "TAP_MAJOR_MAX_DEPTH", tap_major)
        results.append(
            test_case.gradients(
                lambda i, g: stn_ops.bilinear_sample(i, g, "reflection"),
                images,
                grid,
            )
        )
    out_a, grads_a = results[0]
    for out_b, grads_b in results[1:]:
        test_case.assert_close(out_a, out_b, 1e-12)
        for a, b in zip(grads_a, grads_b):
            test_case.assert_close(a, b, 1e-12)

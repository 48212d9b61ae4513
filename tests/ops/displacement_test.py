"""Dense displacement fields: `warp` against `scipy.ndimage.map_coordinates`,
exact identity and integer shifts, `"ij"` / `"xy"` equivalence, finite
differences, velocity integration (against a NumPy-and-SciPy scaling and
squaring, and its Jacobian determinant), point warps and composition.

Backend-neutral. The oracle is SciPy's order-1 (and order-0) spline
interpolation: `mode="nearest"` is border padding, `"grid-constant"` zeros
and `"mirror"` reflection about the border pixels' centres.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_stn.ops import displacement
from tests import test_case

ndimage = pytest.importorskip("scipy.ndimage")

SCIPY_MODES = {
    "zeros": "grid-constant",
    "border": "nearest",
    "reflection": "mirror",
}
SCIPY_ORDERS = {"bilinear": 1, "nearest": 0}
PADDING_MODES = ("zeros", "border", "reflection")
# (images shape, displacement shape) of each dimensionality.
SHAPES = {
    2: ((2, 6, 7, 3), (2, 6, 7, 2)),
    3: ((2, 4, 5, 6, 2), (2, 4, 5, 6, 3)),
}


def _pixel_grid(spatial):
    """`(*spatial, N)` integer pixel coordinates, rows first."""
    axes = np.meshgrid(*[np.arange(n) for n in spatial], indexing="ij")
    return np.stack(axes, axis=-1).astype(np.float64)


def _scipy_interpolate(images, locations, order, mode):
    """`images` `(*spatial, C)` read at `locations` `(..., N)` (ij)."""
    coords = np.moveaxis(locations, -1, 0)
    return np.stack(
        [
            ndimage.map_coordinates(
                images[..., c], coords, order=order, mode=mode, cval=0.0
            )
            for c in range(images.shape[-1])
        ],
        axis=-1,
    )


def _scipy_warp(images, field, order=1, mode="nearest"):
    """`output[p] = images(p + field[p])` per sample, `field` in ij."""
    locations = _pixel_grid(images.shape[1:-1]) + field
    return np.stack(
        [
            _scipy_interpolate(images[b], locations[b], order, mode)
            for b in range(images.shape[0])
        ]
    )


def _off_kink_field(generator, shape, scale):
    """A random field whose values keep `p + field` 0.1 away from integers
    (every kink of the kernels, of border clipping and of reflection about
    pixel centres)."""
    field = generator.normal(scale=scale, size=shape)
    whole = np.floor(field)
    return whole + np.clip(field - whole, 0.1, 0.9)


def _smooth_field(generator, shape, amplitude, sigma):
    """A random field of Gaussian-smoothed noise, each channel scaled so
    that its largest magnitude is `amplitude` pixels."""
    noise = generator.normal(size=shape)
    spatial_sigma = (0,) + (sigma,) * (len(shape) - 2) + (0,)
    smooth = ndimage.gaussian_filter(noise, spatial_sigma, mode="nearest")
    axes = tuple(range(len(shape) - 1))
    return smooth * (amplitude / np.abs(smooth).max(axis=axes))


# warp ----------------------------------------------------------------------


@pytest.mark.parametrize("num_axes", [2, 3])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
def test_warp_matches_scipy_map_coordinates(num_axes, padding_mode, kernel):
    gen = test_case.rng(0)
    images_shape, field_shape = SHAPES[num_axes]
    images = gen.normal(size=images_shape)
    # Up to a few pixels: points inside, outside and across the border.
    field = gen.normal(scale=2.0, size=field_shape)
    out = displacement.warp(images, field, kernel, padding_mode)
    expected = _scipy_warp(
        images, field, SCIPY_ORDERS[kernel], SCIPY_MODES[padding_mode]
    )
    test_case.assert_close(out, expected, 1e-12)


@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(
    "images_shape", [(2, 5, 9, 3), (1, 3, 5, 2, 2), (1, 1, 5, 1)]
)
def test_identity_displacement_returns_input_exactly(
    images_shape, padding_mode, kernel
):
    # Exact where every `n - 1` is a power of two (or n = 1): the pixel
    # `i` is the normalised point `2 i / (n - 1) - 1` without rounding.
    images = test_case.rng(1).normal(size=images_shape).astype("float32")
    zero = np.zeros((*images_shape[:-1], len(images_shape) - 2), "float32")
    out = displacement.warp(images, zero, kernel, padding_mode)
    np.testing.assert_array_equal(test_case.to_numpy(out), images)


@pytest.mark.parametrize("images_shape", [(2, 7, 11, 3), (1, 4, 6, 7, 2)])
def test_identity_displacement_returns_input_up_to_rounding(images_shape):
    # Elsewhere `2 i / (n - 1)` rounds: the index is off by a few ulps of
    # n (n <= 11, so < 2e-6 pixels), times neighbour differences below 8.
    images = test_case.rng(2).normal(size=images_shape).astype("float32")
    zero = np.zeros((*images_shape[:-1], len(images_shape) - 2), "float32")
    out = displacement.warp(images, zero)
    test_case.assert_close(out, images, 1.6e-5)


@pytest.mark.parametrize("padding_mode", ["zeros", "border"])
@pytest.mark.parametrize(
    "images_shape,shift",
    [((2, 5, 9, 2), (1, -2)), ((1, 3, 5, 9, 2), (-1, 2, 1))],
)
def test_integer_shift_moves_image_by_whole_pixels(
    images_shape, shift, padding_mode
):
    images = test_case.rng(3).normal(size=images_shape).astype("float32")
    field = np.broadcast_to(
        np.asarray(shift, "float32"), (*images_shape[:-1], len(shift))
    )
    out = test_case.to_numpy(
        displacement.warp(images, field, "bilinear", padding_mode)
    )
    spatial = images_shape[1:-1]
    source = _pixel_grid(spatial).astype(int) + np.asarray(shift)
    inside = np.all((source >= 0) & (source < np.asarray(spatial)), axis=-1)
    clipped = np.clip(source, 0, np.asarray(spatial) - 1)
    expected = images[(slice(None), *np.moveaxis(clipped, -1, 0))]
    if padding_mode == "zeros":
        expected = expected * inside[None, ..., None]
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("num_axes", [2, 3])
def test_xy_indexing_is_ij_with_channels_reversed(num_axes):
    gen = test_case.rng(4)
    images_shape, field_shape = SHAPES[num_axes]
    images = gen.normal(size=images_shape)
    first = gen.normal(size=field_shape)
    second = gen.normal(size=field_shape)
    points = gen.uniform(-1, 6, size=(2, 5, num_axes))

    def flip(x):
        return np.flip(np.asarray(x), axis=-1)

    pairs = [
        (
            displacement.warp(images, first, indexing="ij"),
            displacement.warp(images, flip(first), indexing="xy"),
        ),
        (
            displacement.integrate_velocity(first, 3, indexing="ij"),
            flip(
                test_case.to_numpy(
                    displacement.integrate_velocity(flip(first), 3, "xy")
                )
            ),
        ),
        (
            displacement.warp_points(points, first, indexing="ij"),
            flip(
                test_case.to_numpy(
                    displacement.warp_points(flip(points), flip(first), "xy")
                )
            ),
        ),
        (
            displacement.compose_displacements(first, second, "ij"),
            flip(
                test_case.to_numpy(
                    displacement.compose_displacements(
                        flip(first), flip(second), "xy"
                    )
                )
            ),
        ),
    ]
    for ij, xy in pairs:
        np.testing.assert_array_equal(test_case.to_numpy(ij), xy)
    # And "xy" really is the other order: swapping changes the result.
    swapped = displacement.warp(images, first, indexing="xy")
    assert (
        np.abs(
            test_case.to_numpy(swapped) - test_case.to_numpy(pairs[0][0])
        ).max()
        > 0.1
    )


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize(
    "images_shape,field_shape",
    [((1, 3, 4, 2), (1, 3, 4, 2)), ((1, 2, 3, 2, 1), (1, 2, 3, 2, 3))],
)
def test_warp_jacobian_matches_finite_differences(
    images_shape, field_shape, padding_mode
):
    gen = test_case.rng(5)
    images = gen.normal(size=images_shape)
    field = _off_kink_field(gen, field_shape, 1.5)
    test_case.assert_jacobian_close(
        lambda i, u: displacement.warp(i, u, "bilinear", padding_mode),
        [images, field],
        delta=1e-6,
        atol=1e-6,
    )


def test_nearest_warp_passes_no_displacement_gradient():
    gen = test_case.rng(6)
    images = gen.normal(size=(1, 4, 5, 2))
    field = gen.normal(size=(1, 4, 5, 2))
    _, (d_images, d_field) = test_case.gradients(
        lambda i, u: displacement.warp(i, u, "nearest"), images, field
    )
    np.testing.assert_array_equal(d_field, 0.0)
    assert np.abs(d_images).max() > 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_images_keep_their_dtype(dtype):
    gen = test_case.rng(7)
    images = ops.cast(gen.normal(size=(1, 5, 5, 2)), dtype)
    field = gen.normal(size=(1, 5, 5, 2)).astype("float32")
    out = displacement.warp(images, field)
    assert keras.backend.standardize_dtype(out.dtype) == dtype


# integrate_velocity --------------------------------------------------------


def _numpy_scaling_and_squaring(velocity, steps):
    """VoxelMorph's `VecInt` in NumPy, each warp by SciPy (border)."""
    field = velocity / 2.0**steps
    for _ in range(steps):
        field = field + _scipy_warp(field, field)
    return field


@pytest.mark.parametrize("num_axes", [2, 3])
@pytest.mark.parametrize("steps", [0, 1, 5])
def test_integrate_velocity_matches_numpy_scaling_and_squaring(num_axes, steps):
    velocity = test_case.rng(8).normal(scale=2.0, size=SHAPES[num_axes][1])
    out = displacement.integrate_velocity(velocity, steps)
    expected = _numpy_scaling_and_squaring(velocity, steps)
    test_case.assert_close(out, expected, 1e-12)


@pytest.mark.parametrize("num_axes", [2, 3])
def test_integrating_zero_gives_zero(num_axes):
    zero = np.zeros(SHAPES[num_axes][1], "float32")
    out = displacement.integrate_velocity(zero)
    np.testing.assert_array_equal(test_case.to_numpy(out), 0.0)


@pytest.mark.parametrize("num_axes", [2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_integrating_a_constant_field_gives_that_field(num_axes, dtype):
    # A translation is its own flow; every warp of a constant field reads
    # the constant (border padding), each bilinear sum rounding once.
    shape = SHAPES[num_axes][1]
    constant = np.asarray([0.7, -0.3, 0.45][:num_axes], dtype)
    velocity = np.broadcast_to(constant, shape).astype(dtype)
    out = displacement.integrate_velocity(velocity, 7)
    test_case.assert_close(out, velocity, test_case.tolerance(dtype))


def _jacobian_determinant(field):
    """det(I + grad field) per pixel of a `(*spatial, N)` ij field, by
    central differences."""
    num_axes = field.shape[-1]
    gradients = np.stack(
        [
            np.stack(np.gradient(field[..., k]), axis=-1)
            for k in range(num_axes)
        ],
        axis=-2,
    )
    return np.linalg.det(np.eye(num_axes) + gradients)


@pytest.mark.parametrize(
    "shape,amplitude,sigma",
    [((1, 32, 32, 2), 6.0, 3.0), ((1, 14, 14, 14, 3), 3.0, 2.0)],
)
def test_integrated_smooth_field_keeps_a_positive_jacobian(
    shape, amplitude, sigma
):
    velocity = _smooth_field(test_case.rng(9), shape, amplitude, sigma)
    # Used directly as a displacement, this field folds the image ...
    assert _jacobian_determinant(velocity[0]).min() < 0
    # ... its exponential does not.
    field = test_case.to_numpy(displacement.integrate_velocity(velocity))
    assert _jacobian_determinant(field[0]).min() > 0


# warp_points ---------------------------------------------------------------


@pytest.mark.parametrize("num_axes", [2, 3])
def test_warp_points_interpolates_the_field_at_the_points(num_axes):
    gen = test_case.rng(10)
    field = gen.normal(size=SHAPES[num_axes][1])
    spatial = np.asarray(field.shape[1:-1])
    # Inside and up to two pixels outside (border: the edge value).
    points = gen.uniform(-2.0, 1.0, size=(2, 7, num_axes)) * 1.0
    points = points + gen.uniform(0, 1, size=points.shape) * (spatial + 1)
    out = displacement.warp_points(points, field)
    expected = points + np.stack(
        [
            _scipy_interpolate(field[b], points[b], 1, "nearest")
            for b in range(2)
        ]
    )
    test_case.assert_close(out, expected, 1e-12)


@pytest.mark.parametrize("num_axes", [2, 3])
def test_landmarks_follow_the_image_warp(num_axes):
    # A landmark at output pixel p of the warped image maps, by
    # `warp_points`, to the input location whose value that pixel holds.
    gen = test_case.rng(11)
    images_shape, field_shape = SHAPES[num_axes]
    images = gen.normal(size=images_shape)
    field = gen.normal(scale=1.5, size=field_shape)
    warped = test_case.to_numpy(displacement.warp(images, field))
    spatial = images_shape[1:-1]
    landmarks = np.stack(
        [
            np.stack([gen.integers(0, n, size=6) for n in spatial], axis=-1)
            for _ in range(2)
        ]
    ).astype(np.float64)
    moved = test_case.to_numpy(displacement.warp_points(landmarks, field))
    for b in range(2):
        index = tuple(landmarks[b].astype(int).T)
        test_case.assert_close(moved[b], landmarks[b] + field[b][index], 1e-12)
        test_case.assert_close(
            warped[b][index],
            _scipy_interpolate(images[b], moved[b], 1, "nearest"),
            1e-12,
        )


# compose_displacements -----------------------------------------------------


def _interior(spatial, margin):
    return tuple(slice(margin, n - margin) for n in spatial)


@pytest.mark.parametrize("spatial", [(10, 11), (8, 9, 10)])
def test_composition_equals_warping_twice_for_a_linear_image(spatial):
    # Bilinear interpolation reproduces a linear image exactly, so away
    # from the borders the two differ by rounding only.
    gen = test_case.rng(12)
    num_axes = len(spatial)
    slope = gen.normal(size=num_axes)
    images = (_pixel_grid(spatial) @ slope + 0.5)[None, ..., None]
    first = gen.uniform(-0.8, 0.8, size=(1, *spatial, num_axes))
    second = gen.uniform(-0.8, 0.8, size=(1, *spatial, num_axes))
    twice = displacement.warp(displacement.warp(images, first), second)
    composed = displacement.compose_displacements(first, second)
    once = displacement.warp(images, composed)
    # |second| < 0.8 reads pixels within 1.8 of p, which read the image
    # within 2.6 of p: inside for p 3 pixels from the border.
    inner = (0, *_interior(spatial, 3))
    test_case.assert_close(
        test_case.to_numpy(once)[inner], test_case.to_numpy(twice)[inner], 1e-12
    )
    # The other order is a different field: this test tells them apart.
    wrong = displacement.warp(
        images, displacement.compose_displacements(second, first)
    )
    assert (
        np.abs(
            test_case.to_numpy(wrong)[inner] - test_case.to_numpy(twice)[inner]
        ).max()
        > 0.05
    )


def test_composition_equals_warping_twice_within_interpolation_error():
    # A smooth image I = sin(w i) cos(w j), w = 0.1 (|grad I| <= w,
    # Hessian norm <= w^2) and smooth fields. Bilinear interpolation of u
    # errs by at most (1/8) sum_a max |d2u / da2| (unit pixels). Warping twice
    # reads I interpolated (error e_I = 2 w^2 / 8) at pixels, then
    # interpolates that image y(q) = I(q + first(q)), whose
    # |d2y / da2| <= w^2 (1 + sqrt(2) g)^2 + w sqrt(2) d2 (g, d2: the
    # largest first and second derivatives of `first`). The composed field
    # interpolates `first` once (error <= sqrt(2) * 2 d2 / 8 pixels, read
    # with slope <= w) and I once (e_I). A low frequency keeps the
    # interpolation error (~w^2) below the effect of the composition (~w).
    gen = test_case.rng(13)
    spatial = (24, 24)
    grid = _pixel_grid(spatial)
    w = 0.1
    images = (np.sin(w * grid[..., 0]) * np.cos(w * grid[..., 1]))[
        None, ..., None
    ]
    first = _smooth_field(gen, (1, *spatial, 2), 1.5, 4.0)
    second = _smooth_field(gen, (1, *spatial, 2), 1.5, 4.0)
    g = np.abs(np.stack(np.gradient(first[0], axis=(0, 1)))).max()
    d2 = max(
        np.abs(np.gradient(np.gradient(first[0, ..., k], axis=a), axis=a)).max()
        for k in range(2)
        for a in range(2)
    )
    e_image = 2 * w**2 / 8
    e_warped = 2 * (w**2 * (1 + np.sqrt(2) * g) ** 2 + w * np.sqrt(2) * d2) / 8
    e_field = w * np.sqrt(2) * 2 * d2 / 8
    bound = 2 * e_image + e_warped + e_field
    twice = displacement.warp(displacement.warp(images, first), second)
    once = displacement.warp(
        images, displacement.compose_displacements(first, second)
    )
    inner = (0, *_interior(spatial, 4))
    error = np.abs(
        test_case.to_numpy(once)[inner] - test_case.to_numpy(twice)[inner]
    )
    assert error.max() < bound
    # Not vacuous: leaving either field out errs beyond the bound. (The
    # order of composition shows only in the linear-image test: for fields
    # this smooth its effect is of the order of the interpolation error.)
    for wrong in (first, second):
        moved = test_case.to_numpy(displacement.warp(images, wrong))
        assert np.abs(moved[inner] - test_case.to_numpy(twice)[inner]).max() > (
            bound
        )


# Bad input -----------------------------------------------------------------


def _zeros(*shape):
    return np.zeros(shape, "float32")


@pytest.mark.parametrize(
    "call,pattern",
    [
        (
            lambda: displacement.warp(_zeros(1, 4, 4, 1), _zeros(1, 4, 4)),
            r"`displacement` must have shape \(B, H, W, 2\) or .*rank 3",
        ),
        (
            lambda: displacement.warp(_zeros(1, 4, 4, 1), _zeros(1, 4, 4, 3)),
            r"`displacement` must have shape \(B, H, W, 2\).*\(1, 4, 4, 3\)",
        ),
        (
            lambda: displacement.warp(
                _zeros(1, 4, 4, 4, 1), _zeros(1, 4, 4, 2)
            ),
            r"`images` must have shape \(B, H, W, C\).*rank 5",
        ),
        (
            lambda: displacement.warp(_zeros(1, 4, 5, 1), _zeros(1, 4, 4, 2)),
            r"`images` and `displacement` must have the same spatial shape",
        ),
        (
            lambda: displacement.warp(_zeros(2, 4, 4, 1), _zeros(1, 4, 4, 2)),
            r"`images` and `displacement` must have the same batch size",
        ),
        (
            lambda: displacement.warp(
                _zeros(1, 4, 4, 1), _zeros(1, 4, 4, 2), indexing="yx"
            ),
            r"`indexing` must be one of \('ij', 'xy'\).*'yx'",
        ),
        (
            lambda: displacement.warp(
                _zeros(1, 4, 4, 1), _zeros(1, 4, 4, 2), kernel="bicubic"
            ),
            r"`kernel` must be one of .*'bicubic'",
        ),
        (
            lambda: displacement.warp(
                _zeros(1, 4, 4, 1), _zeros(1, 4, 4, 2), padding_mode="wrap"
            ),
            r"`padding_mode` must be one of .*'wrap'",
        ),
        (
            lambda: displacement.integrate_velocity(_zeros(1, 4, 4, 2), -1),
            r"`steps` must be a non-negative int.*-1",
        ),
        (
            lambda: displacement.integrate_velocity(_zeros(1, 4, 4, 2), 2.0),
            r"`steps` must be a non-negative int.*2\.0",
        ),
        (
            lambda: displacement.integrate_velocity(_zeros(1, 4, 4, 2), True),
            r"`steps` must be a non-negative int.*True",
        ),
        (
            lambda: displacement.integrate_velocity(_zeros(1, 4, 4, 4, 2)),
            r"`velocity` must have shape \(B, D, H, W, 3\)",
        ),
        (
            lambda: displacement.warp_points(
                _zeros(1, 3, 3), _zeros(1, 4, 4, 2)
            ),
            r"`points` must have shape \(B, M, 2\).*\(1, 3, 3\)",
        ),
        (
            lambda: displacement.warp_points(_zeros(3, 2), _zeros(1, 4, 4, 2)),
            r"`points` must have shape \(B, M, 2\).*rank 2",
        ),
        (
            lambda: displacement.warp_points(
                _zeros(2, 3, 2), _zeros(1, 4, 4, 2)
            ),
            r"`points` and `displacement` must have the same batch size",
        ),
        (
            lambda: displacement.compose_displacements(
                _zeros(1, 4, 4, 2), _zeros(1, 4, 5, 2)
            ),
            r"`first` and `second` must have the same spatial shape",
        ),
        (
            lambda: displacement.compose_displacements(
                _zeros(1, 4, 4, 4, 3), _zeros(1, 4, 4, 2)
            ),
            r"`first` and `second` must have the same shape",
        ),
    ],
)
def test_bad_arguments_name_the_argument(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()

"""The distortions' parameters and geometry (NumPy, any backend)."""

import numpy as np
import pytest
from keras import ops

from keras_stn.experiments.data import clutter
from keras_stn.experiments.data import distorted
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import placement

# Statistical checks: a sample mean or variance is within FIVE of its
# standard error of the documented value (a false alarm about once in
# 1.7 million runs per check; every draw is seeded, so a run repeats).
FIVE = 5.0
DRAWS = 20000
# float32 rounding of a bilinear sample at pixel centres (test_case's
# dtype-keyed float32 tolerance).
TOLERANCE = 1e-5


def _check_uniform(values, low, high):
    """All in `[low, high]`, mean and variance within FIVE standard errors
    of the continuous uniform's."""
    values = np.asarray(values, np.float64).ravel()
    n, width = len(values), high - low
    assert values.min() >= low and values.max() <= high
    assert abs(values.mean() - (low + high) / 2) < FIVE * width / np.sqrt(
        12 * n
    )
    # Var(s^2) = (mu_4 - sigma^4) / n, mu_4 = width^4 / 80 for a uniform.
    error = width**2 * np.sqrt((1 / 80 - 1 / 144) / n)
    assert abs(values.var() - width**2 / 12) < FIVE * error


def _check_normal(values, sigma):
    """Mean 0 and variance sigma^2 within FIVE standard errors."""
    values = np.asarray(values, np.float64).ravel()
    n = len(values)
    assert abs(values.mean()) < FIVE * sigma / np.sqrt(n)
    assert abs(values.var() - sigma**2) < FIVE * sigma**2 * np.sqrt(2 / n)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_rotation_angles_are_uniform_on_the_range():
    params = distortions.Rotation().draw(_rng(), DRAWS)
    _check_uniform(params["angle"], -90.0, 90.0)


def test_rts_parameters_are_uniform_and_keep_the_frame_on_the_canvas():
    params = distortions.RotationScaleTranslation().draw(_rng(), DRAWS)
    _check_uniform(params["angle"], -45.0, 45.0)
    _check_uniform(params["scale"], 0.7, 1.2)
    margin = (42 - 28 * params["scale"].astype(np.float64)) / 2
    unit = params["position"] / margin[:, None]
    _check_uniform(unit, -1.0 - 1e-6, 1.0 + 1e-6)


def test_projective_parameters():
    params = distortions.ProjectiveWarp().draw(_rng(), DRAWS)
    _check_uniform(params["scale"], 0.75, 1.0)
    assert params["corners"].shape == (DRAWS, 4, 2)
    _check_normal(params["corners"], 5.0)


def test_elastic_parameters_move_a_4x4_lattice():
    distortion = distortions.ElasticWarp()
    params = distortion.draw(_rng(), DRAWS)
    assert params["displacement"].shape == (DRAWS, 16, 2)
    _check_normal(params["displacement"], 1.5)
    axis = np.linspace(-1, 1, 4)
    np.testing.assert_array_equal(np.unique(distortion.control_points), axis)


def test_clutter_draws_keep_the_centre_clear_and_patches_from_others():
    distortion = clutter.Clutter()
    own = np.arange(DRAWS) % 100
    params = distortion.draw(_rng(), DRAWS, 100, exclude=own)
    top_left = params["top_left"]
    assert top_left.min() == 0 and top_left.max() == 60 - 28
    # Integers uniform on 0..32: mean 16, variance (33^2 - 1) / 12.
    se = np.sqrt((33**2 - 1) / 12 / top_left.size)
    assert abs(top_left.mean() - 16) < FIVE * se
    index = params["patch_index"]
    assert index.min() >= 0 and index.max() < 100
    assert not np.any(index == own[:, None])
    crop = params["patch_crop"]
    assert crop.min() == 0 and crop.max() == 28 - 6
    where = params["patch_top_left"]
    assert where.min() == 0 and where.max() == 60 - 6
    low = top_left[:, None, :] + 10  # the central 8x8 of the 28x28 frame
    overlap = (where < low + 8) & (where + 6 > low)
    assert not np.any(overlap.all(axis=-1))


def test_clutter_patches_are_the_crops_combined_by_maximum():
    distortion = clutter.Clutter(canvas_size=30, num_patches=2, patch_size=3)
    pool = _rng(3).integers(0, 256, (5, 28, 28), np.uint8)
    params = {
        "patch_index": np.array([[1, 4]]),
        "patch_crop": np.array([[[2, 5], [0, 0]]], np.int32),
        "patch_top_left": np.array([[[10, 11], [11, 12]]], np.int32),
    }
    expected = np.zeros((30, 30), np.uint8)
    for index, (cx, cy), (x, y) in zip(
        [1, 4], [(2, 5), (0, 0)], [(10, 11), (11, 12)]
    ):
        crop = pool[index, cy : cy + 3, cx : cx + 3]
        region = expected[y : y + 3, x : x + 3]
        expected[y : y + 3, x : x + 3] = np.maximum(region, crop)
    np.testing.assert_array_equal(distortion.patches(pool, params)[0], expected)


def test_position_outside_is_exactly_uniform_on_the_allowed_cells():
    # 3x3 positions, (0..1, 0..1) forbidden: 5 allowed cells, p = 1/5.
    xy = placement.uniform_position_outside(_rng(), 3, [0, 0], [1, 1], (DRAWS,))
    cells, counts = np.unique(xy[:, 1] * 3 + xy[:, 0], return_counts=True)
    np.testing.assert_array_equal(cells, [2, 5, 6, 7, 8])
    expected = DRAWS / 5
    assert np.all(np.abs(counts - expected) < FIVE * np.sqrt(expected * 0.8))


def test_similarity_matrix_hand_computed():
    # A quarter turn clockwise as displayed, scale 2, shifted 7 px right,
    # 28 -> 28: output u samples the input at R(-90) u / 2 - shift.
    theta = placement.similarity_matrix([90.0], [2.0], [[7.0, 0.0]], 28, 28)
    expected = [[0.0, 0.5, -0.0], [-0.5, 0.0, 0.25]]
    np.testing.assert_allclose(theta[0], expected, atol=1e-7)


def test_homography_theta_maps_the_corners_to_the_targets():
    targets = placement.CORNERS[None] * 0.5 + _rng().normal(0, 0.1, (3, 4, 2))
    theta = placement.homography_theta(targets).astype(np.float64)
    matrix = np.concatenate([theta, np.ones((3, 1))], -1).reshape(3, 3, 3)
    points = np.concatenate([targets, np.ones((3, 4, 1))], -1)
    mapped = np.einsum("bij,bkj->bki", matrix, points)
    np.testing.assert_allclose(
        mapped[..., :2] / mapped[..., 2:],
        placement.CORNERS[None].repeat(3, 0),
        atol=1e-5,
    )


def test_place_copies_the_pixels_at_integer_positions():
    images = _rng(4).random((3, 28, 28, 1)).astype(np.float32)
    top_left = np.array([[0, 0], [5, 9], [56, 56]], np.int32)
    theta = placement.placement_matrix(top_left, 28, 84)
    placed = ops.convert_to_numpy(placement.place(images, theta, 84))
    for image, out, (x, y) in zip(images, placed, top_left):
        expected = np.zeros((84, 84, 1), np.float32)
        expected[y : y + 28, x : x + 28] = image
        np.testing.assert_allclose(out, expected, atol=TOLERANCE)


@pytest.mark.parametrize(
    "variant, options, pattern",
    [
        ("Q", {}, "`variant` must be one of"),
        (
            "R",
            {"scale_range": (1, 1)},
            r"Unknown option\(s\) \['scale_range'\]",
        ),
        ("RTS", {"canvas_size": 30}, "`canvas_size` must hold"),
        ("E", {"num_control_points": 15}, "`num_control_points` must be"),
        ("TC", {"clear_centre": 7}, "`clear_centre` must be an even int"),
        ("P", {"corner_sigma": -1.0}, "corner_sigma"),
    ],
)
def test_bad_options_are_named(variant, options, pattern):
    with pytest.raises(ValueError, match=pattern):
        distorted.make_distortion(variant, **options)

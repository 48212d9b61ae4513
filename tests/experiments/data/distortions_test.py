import numpy as np
import pytest
import tensorflow as tf

from keras_stn.experiments.data import distortions

pytestmark = pytest.mark.tensorflow_only

# float32 rounding of the grid: sampling points are pixel centres +-1e-6.
TOLERANCE = 1e-5

IDENTITY_STRENGTH = {
    "R": distortions.Rotation(angle_range=(0, 0)),
    "RTS": distortions.RotationScaleTranslation(
        angle_range=(0, 0), scale_range=(1, 1), canvas_size=28
    ),
    "P": distortions.ProjectiveWarp(scale_range=(1, 1), corner_sigma=0),
    "E": distortions.ElasticWarp(control_sigma=0),
}


def _image(seed=0):
    return np.random.default_rng(seed).random((28, 28, 1)).astype("float32")


def _batched(params_list):
    return {k: tf.stack([p[k] for p in params_list]) for k in params_list[0]}


def _blob():
    """An off-centre Gaussian blob, well inside the frame."""
    y, x = np.mgrid[0:28, 0:28] + 0.5
    blob = np.exp(-((x - 17.0) ** 2 + (y - 11.0) ** 2) / (2 * 2.0**2))
    return blob[..., None].astype("float32")


def _centroid(image):
    """Intensity centroid `(x, y)` in continuous pixel coordinates."""
    image = np.asarray(image)[..., 0]
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    total = image.sum()
    return np.array([(image * x).sum(), (image * y).sum()]) / total


@pytest.mark.parametrize("name", list(IDENTITY_STRENGTH))
def test_identity_strength_returns_the_image(name):
    image = _image()
    out, _ = IDENTITY_STRENGTH[name](image, tf.constant([3, 4]))
    np.testing.assert_allclose(out, image, atol=TOLERANCE)


@pytest.mark.parametrize(
    "distortion, shapes",
    [
        (distortions.Rotation(), {"angle": ()}),
        (
            distortions.RotationScaleTranslation(),
            {"angle": (), "scale": (), "position": (2,)},
        ),
        (distortions.ProjectiveWarp(), {"scale": (), "corners": (4, 2)}),
        (distortions.ElasticWarp(), {"displacement": (16, 2)}),
    ],
)
def test_draws_are_a_function_of_the_seed(distortion, shapes):
    a = distortion.draw(tf.constant([1, 2]))
    b = distortion.draw(tf.constant([1, 2]))
    c = distortion.draw(tf.constant([1, 3]))
    assert {k: tuple(v.shape) for k, v in a.items()} == shapes
    for key in shapes:
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    image, params = distortion(_image(), tf.constant([1, 2]))
    size = distortion.output_size
    assert image.shape == (size, size, 1) and image.dtype == tf.float32
    for key in shapes:
        np.testing.assert_array_equal(params[key], a[key])


def test_rts_moves_the_centroid_by_the_drawn_parameters():
    """Independent check of turn, scale, position and the 42 / 28 factor:
    the centroid `c` (from the digit centre) lands at
    `canvas centre + scale * R(angle) c + position`."""
    rts = distortions.RotationScaleTranslation()
    image = _blob()
    source = _centroid(image) - 14.0
    params = _batched([rts.draw(tf.constant([s, 7])) for s in range(40)])
    out = rts.warp(tf.constant(np.stack([image] * 40)), params).numpy()
    for k in range(40):
        angle = np.deg2rad(params["angle"][k].numpy())
        rotation = np.array(
            [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        )
        scale = params["scale"][k].numpy()
        expected = 21.0 + scale * rotation @ source + params["position"][k]
        np.testing.assert_allclose(_centroid(out[k]), expected, atol=0.05)
        # Bilinear resampling keeps the mass times the area factor.
        assert out[k].sum() == pytest.approx(image.sum() * scale**2, rel=0.02)


def test_rts_positions_keep_the_scaled_frame_inside_the_canvas():
    rts = distortions.RotationScaleTranslation()
    params = _batched([rts.draw(tf.constant([s, 1])) for s in range(300)])
    angle, scale = params["angle"].numpy(), params["scale"].numpy()
    position = params["position"].numpy()
    assert angle.min() >= -45 and angle.max() <= 45
    assert scale.min() >= 0.7 and scale.max() <= 1.2
    margin = (42 - 28 * scale) / 2
    assert (np.abs(position) <= margin[:, None] + 1e-5).all()
    # They spread over the ranges.
    assert angle.min() < -40 and angle.max() > 40
    assert scale.min() < 0.75 and scale.max() > 1.15
    assert (np.abs(position) / margin[:, None]).max() > 0.95


def test_projective_without_noise_is_the_scale():
    image = _image(1)
    warp = distortions.ProjectiveWarp(scale_range=(0.8, 0.8), corner_sigma=0)
    out, _ = warp(image, tf.constant([0, 0]))
    expected = distortions.placement.warp_similarity(
        image[None], [0.0], [0.8], [[0.0, 0.0]], 28
    )[0]
    np.testing.assert_allclose(out, expected, atol=TOLERANCE)


def test_projective_equal_corner_noise_translates_the_digit():
    # All four corners moved by (3, 1) px: the digit moves by (3, 1).
    image = _image(2)
    warp = distortions.ProjectiveWarp(scale_range=(1, 1))
    params = {
        "scale": tf.ones([1]),
        "corners": tf.constant([[[3.0, 1.0]] * 4]),
    }
    out = warp.warp(image[None], params).numpy()[0]
    np.testing.assert_allclose(out[1:, 3:], image[:-1, :-3], atol=TOLERANCE)
    np.testing.assert_allclose(out[:1], 0.0, atol=TOLERANCE)
    np.testing.assert_allclose(out[:, :3], 0.0, atol=TOLERANCE)


def test_homography_theta_maps_targets_to_corners():
    rng = np.random.default_rng(3)
    targets = distortions.CORNERS * 0.9 + rng.normal(0, 0.2, (5, 4, 2))
    theta = distortions.homography_theta(targets).numpy().astype(np.float64)
    matrix = np.concatenate([theta, np.ones((5, 1))], axis=1).reshape(5, 3, 3)
    points = np.concatenate([targets, np.ones((5, 4, 1))], axis=-1)
    mapped = np.einsum("bij,bkj->bki", matrix, points)
    np.testing.assert_allclose(
        mapped[..., :2] / mapped[..., 2:],
        np.broadcast_to(distortions.CORNERS, (5, 4, 2)),
        atol=1e-5,
    )


def test_elastic_equal_displacements_translate_the_digit():
    # Every control point samples 2 px right and 1 px down of itself: the
    # spline reproduces that translation, the digit moves (-2, -1).
    image = _image(4)
    warp = distortions.ElasticWarp()
    params = {"displacement": tf.constant([[[2.0, 1.0]] * 16])}
    out = warp.warp(image[None], params).numpy()[0]
    np.testing.assert_allclose(out[:-1, :-2], image[1:, 2:], atol=TOLERANCE)
    np.testing.assert_allclose(out[-1:], 0.0, atol=TOLERANCE)


@pytest.mark.parametrize("num_control_points", [9, 25])
def test_elastic_control_point_counts(num_control_points):
    warp = distortions.ElasticWarp(num_control_points=num_control_points)
    params = warp.draw(tf.constant([5, 5]))
    assert params["displacement"].shape == (num_control_points, 2)
    zero = {"displacement": tf.zeros([1, num_control_points, 2])}
    image = _image(5)
    np.testing.assert_allclose(
        warp.warp(image[None], zero)[0], image, atol=TOLERANCE
    )


def test_noise_has_the_stated_sigma():
    projective = distortions.ProjectiveWarp()
    elastic = distortions.ElasticWarp()
    corners = np.stack(
        [projective.draw(tf.constant([s, 2]))["corners"] for s in range(300)]
    )
    moved = np.stack(
        [elastic.draw(tf.constant([s, 2]))["displacement"] for s in range(150)]
    )
    # 2400 samples each: the standard error of sigma is 1.5 %.
    assert corners.std() == pytest.approx(5.0, rel=0.06)
    assert moved.std() == pytest.approx(1.5, rel=0.06)
    scale = np.stack(
        [projective.draw(tf.constant([s, 2]))["scale"] for s in range(100)]
    )
    assert scale.min() >= 0.75 and scale.max() <= 1.0


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: distortions.Rotation(angle_range=(10, -10)), "angle_range"),
        (lambda: distortions.Rotation(angle_range=5), "angle_range"),
        (
            lambda: distortions.RotationScaleTranslation(scale_range=(0, 1)),
            "scale_range",
        ),
        (
            lambda: distortions.RotationScaleTranslation(canvas_size=30),
            "canvas_size",
        ),
        (
            lambda: distortions.RotationScaleTranslation(canvas_size=42.0),
            "canvas_size",
        ),
        (lambda: distortions.ProjectiveWarp(corner_sigma=-1), "corner_sigma"),
        (lambda: distortions.ElasticWarp(control_sigma="1"), "control_sigma"),
        (
            lambda: distortions.ElasticWarp(num_control_points=10),
            "num_control_points",
        ),
    ],
)
def test_bad_arguments_are_named(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()

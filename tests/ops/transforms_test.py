"""The transform families and their registry."""

import keras
import numpy as np
import pytest

from keras_stn import ops as stn_ops
from keras_stn.ops import transforms
from tests import test_case

FAMILIES = test_case.FAMILIES
SIZES = {
    "translation": 2,
    "rigid": 3,
    "similarity": 4,
    "attention": 3,
    "affine": 6,
    "projective": 8,
    "tps": 32,
}


def test_registry_lists_the_papers_families():
    assert set(FAMILIES) <= set(transforms.names())
    for name in FAMILIES:
        family = transforms.get(name)
        assert family.num_params == SIZES[name]
        assert family.identity().shape == (SIZES[name],)
    assert transforms.get("Affine") is transforms.get("affine")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_parameters_give_the_identity_grid(name, align_corners):
    family = transforms.get(name)
    theta = np.tile(family.identity(), (2, 1)).astype("float32")
    grid = stn_ops.grid_for(name, theta, (5, 6), align_corners)
    expected = stn_ops.identity_grid((5, 6), 2, align_corners)
    test_case.assert_close(grid, expected, 1e-6)


def test_parametrised_families_build_the_expected_matrices():
    angle, scale, tx, ty = 0.3, 1.7, 0.2, -0.4
    c, s = np.cos(angle), np.sin(angle)
    cases = {
        "translation": ([tx, ty], [[1, 0, tx], [0, 1, ty]]),
        "rigid": ([angle, tx, ty], [[c, -s, tx], [s, c, ty]]),
        "similarity": (
            [scale, angle, tx, ty],
            [[scale * c, -scale * s, tx], [scale * s, scale * c, ty]],
        ),
        "attention": ([scale, tx, ty], [[scale, 0, tx], [0, scale, ty]]),
    }
    for name, (params, matrix) in cases.items():
        theta = keras.ops.convert_to_tensor(np.array([params], "float64"))
        out = transforms.get(name).matrix(theta)
        test_case.assert_close(out[0], matrix, 1e-12, msg=name)


def test_rigid_half_turn_reverses_an_arange_image():
    images = np.arange(12.0, dtype="float32").reshape(1, 3, 4, 1)
    grid = stn_ops.grid_for(
        "rigid", np.array([[np.pi, 0, 0]], "float32"), (3, 4)
    )
    out = stn_ops.bilinear_sample(images, grid)
    test_case.assert_close(out, images[:, ::-1, ::-1], 1e-5)


def test_users_can_register_a_family():
    class Shear(transforms.Transform):
        name, num_params = "test_shear", 1

        def identity(self):
            return np.zeros(1)

        def matrix(self, theta):
            from keras import ops

            one = ops.ones_like(theta[:, 0])
            zero = ops.zeros_like(theta[:, 0])
            return transforms._rows([one, theta[:, 0], zero], [zero, one, zero])

    transforms.register(Shear())
    try:
        grid = stn_ops.grid_for(
            "test_shear", np.array([[0.5]], "float32"), (1, 1)
        )
        np.testing.assert_allclose(grid, np.zeros((1, 1, 1, 2)))
        with pytest.raises(ValueError, match=r"`name` must be a new"):
            transforms.register(Shear())
    finally:
        transforms._REGISTRY.pop("test_shear")


def test_tps_family_with_other_control_points():
    family = transforms.ThinPlateSpline(num_control_points=9)
    assert family.num_params == 18
    grid = family.grid(family.identity()[None].astype("float32"), (3, 3))
    test_case.assert_close(grid, stn_ops.identity_grid((3, 3)), 1e-6)


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(
        ValueError,
        match=r"`transform` must be one of .*"
        r"'affine'.*Received: transform='warp'",
    ):
        stn_ops.grid_for("warp", np.zeros((1, 6), "float32"), (3, 3))


@pytest.mark.parametrize("name", FAMILIES)
def test_wrong_theta_size_names_the_family(name):
    size = SIZES[name] + 1
    with pytest.raises(
        ValueError,
        match=rf"`theta` must have shape "
        rf"\(B, {SIZES[name]}\) for "
        rf"transform '{name}'",
    ):
        stn_ops.grid_for(name, np.zeros((2, size), "float32"), (3, 3))


def test_nan_theta_gives_zeros_and_finite_gradients_for_that_sample_only():
    theta = np.tile(transforms.get("similarity").identity(), (3, 1))
    theta = theta.astype("float32")
    theta[1, 1] = np.nan
    images = test_case.rng(0).normal(size=(3, 6, 6, 2)).astype("float32")

    def run(i, t):
        return test_case.gradients(
            lambda i, th: stn_ops.bilinear_sample(
                i, stn_ops.grid_for("similarity", th, (6, 6))
            ),
            i,
            t,
            upstream=np.ones((len(t), 6, 6, 2)),
        )

    out, (_, d_theta) = run(images, theta)
    clean_out, (_, clean_d_theta) = run(
        np.delete(images, 1, axis=0), np.delete(theta, 1, axis=0)
    )
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(d_theta))
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(d_theta[1], 0.0)
    np.testing.assert_allclose(np.delete(out, 1, 0), clean_out)
    np.testing.assert_allclose(np.delete(d_theta, 1, 0), clean_d_theta)

"""Affine, projective and TPS grids: PyTorch, autodiff twins, finite
differences, hand-computed cases and bad input.

Backend-neutral. The oracles: PyTorch's `affine_grid`, plain PyTorch
autodiff of the projective and TPS formulas (every backend), and the
TensorFlow plain-autodiff twin (`reference.py`, TensorFlow backend only).
"""

import keras
import numpy as np
import pytest

from keras_stn import ops as stn_ops
from keras_stn.ops import backend
from keras_stn.ops import grids
from tests import test_case

# The plain-autodiff twin is TensorFlow's; PyTorch's autodiff of the same
# formulas checks every backend.
ORACLES = [
    pytest.param("twin", marks=pytest.mark.tensorflow_only),
    "torch",
]


def _twin():
    test_case.requires_tensorflow()
    from tests.ops import reference

    return reference


def _torch_gradients(fn, theta):
    """`(fn(theta), d <fn(theta), upstream> / d theta)` by PyTorch autodiff,
    with `test_case.gradients`' default upstream."""
    torch = test_case.requires_torch()
    t = torch.tensor(theta, requires_grad=True)
    out = fn(torch, t)
    upstream = np.random.default_rng(7).normal(size=tuple(out.shape))
    (out * torch.tensor(upstream, dtype=out.dtype)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy()]


def _torch_base_points(torch, size, align_corners, dtype):
    """`(H * W, 3)` rows `(x, y, 1)` of the output pixel centres, through
    PyTorch's own `affine_grid` of the identity."""
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype)
    xy = torch.nn.functional.affine_grid(
        identity, (1, 1, *size), align_corners=align_corners
    ).reshape(-1, 2)
    return torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1)


def _torch_projective_grid(torch, theta, size):
    base = _torch_base_points(torch, size, False, theta.dtype)
    uvw = torch.einsum("pk,bik->bpi", base, theta)
    return (uvw[..., :2] / uvw[..., 2:]).reshape(-1, *size, 2)


def _torch_tps_grid(torch, theta, size, control_points):
    """The spline solved with `torch.linalg.solve`, evaluated at the
    output pixel centres; autodiff through the solve."""
    dtype = theta.dtype
    c = torch.tensor(control_points, dtype=dtype)
    k = len(control_points)

    def features(p):
        d2 = ((p[:, None] - c[None]) ** 2).sum(-1)
        safe = torch.where(d2 > 0, d2, 1.0)
        u = torch.where(d2 > 0, d2 * torch.log(safe), 0.0)
        return torch.cat([u, torch.ones_like(p[:, :1]), p], dim=1)

    top = features(c)
    bottom = torch.cat([top[:, k:].T, torch.zeros(3, 3, dtype=dtype)], dim=1)
    system = torch.cat([top, bottom], dim=0)
    rhs = torch.cat(
        [theta.permute(1, 0, 2), torch.zeros(3, theta.shape[0], 2, dtype=dtype)]
    ).reshape(k + 3, -1)
    coefficients = torch.linalg.solve(system, rhs)
    points = _torch_base_points(torch, size, False, dtype)[:, :2]
    grid = (features(points) @ coefficients).reshape(len(points), -1, 2)
    return grid.permute(1, 0, 2).reshape(-1, *size, 2)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(4, 5), (1, 3), (1, 1)])
def test_affine_grid_matches_torch(align_corners, size):
    torch = test_case.requires_torch()
    theta = test_case.rng(0).normal(size=(3, 2, 3))
    expected = torch.nn.functional.affine_grid(
        torch.tensor(theta), (3, 1, *size), align_corners=align_corners
    )
    out = stn_ops.affine_grid(theta, size, align_corners)
    test_case.assert_close(out, expected.numpy(), 1e-12)


@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_affine_grid_gradient_matches_twin(dtype, oracle):
    theta = test_case.rng(1).normal(size=(2, 2, 3)).astype(dtype)
    ours = test_case.gradients(lambda t: stn_ops.affine_grid(t, (3, 4)), theta)
    if oracle == "twin":
        twin = test_case.gradients(
            lambda t: _twin().affine_grid(t, (3, 4)), theta
        )
    else:
        twin = _torch_gradients(
            lambda torch, t: torch.nn.functional.affine_grid(
                t, (2, 1, 3, 4), align_corners=False
            ),
            theta,
        )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(ours[0], twin[0], atol)
    test_case.assert_close(ours[1][0], twin[1][0], atol)


def test_flat_theta_equals_matrix_theta():
    theta = test_case.rng(2).normal(size=(2, 6)).astype("float32")
    np.testing.assert_array_equal(
        stn_ops.affine_grid(theta, (3, 3)),
        stn_ops.affine_grid(theta.reshape(2, 2, 3), (3, 3)),
    )


def _homographies(n, seed):
    gen = test_case.rng(seed)
    theta = np.eye(3)[None] + 0.2 * gen.normal(size=(n, 3, 3))
    theta[:, 2, 2] = 1.0
    return theta


@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_projective_grid_matches_twin(dtype, oracle):
    theta = _homographies(3, 3).astype(dtype)
    ours = test_case.gradients(
        lambda t: stn_ops.projective_grid(t, (4, 5)), theta
    )
    if oracle == "twin":
        twin = test_case.gradients(
            lambda t: _twin().projective_grid(t, (4, 5)), theta
        )
    else:
        twin = _torch_gradients(
            lambda torch, t: _torch_projective_grid(torch, t, (4, 5)), theta
        )
    atol = test_case.tolerance(dtype)
    test_case.assert_close(ours[0], twin[0], atol, rtol=atol)
    test_case.assert_close(ours[1][0], twin[1][0], 10 * atol, rtol=atol)


def test_projective_with_last_row_0_0_1_is_affine():
    theta = np.concatenate(
        [
            test_case.rng(4).normal(size=(2, 2, 3)),
            np.tile([[[0.0, 0.0, 1.0]]], (2, 1, 1)),
        ],
        1,
    )
    test_case.assert_close(
        stn_ops.projective_grid(theta, (3, 4)),
        stn_ops.affine_grid(theta[:, :2], (3, 4)),
        1e-12,
    )


def test_projective_grid_is_finite_where_w_vanishes():
    # w = 1 + 2x is zero on the column x = -0.5 (align_corners=True, W=5).
    theta = np.array([[1, 0, 0, 0, 1, 0, 2, 0]], "float32")
    grid, (d_theta,) = test_case.gradients(
        lambda t: stn_ops.projective_grid(t, (3, 5), align_corners=True), theta
    )
    assert np.all(np.isfinite(grid)) and np.all(np.isfinite(d_theta))
    column = grid[0, :, 1, 0]
    np.testing.assert_allclose(column, -0.5 / grids.W_EPSILON, rtol=1e-6)


def test_grid_jacobians_match_finite_differences():
    gen = test_case.rng(5)
    test_case.assert_jacobian_close(
        lambda t: stn_ops.affine_grid(t, (3, 4)), [gen.normal(size=(2, 6))]
    )
    test_case.assert_jacobian_close(
        lambda t: stn_ops.projective_grid(t, (3, 4)),
        [_homographies(2, 6).reshape(2, 9)[:, :8]],
        atol=1e-5,
    )
    control = stn_ops.regular_control_points(9)
    test_case.assert_jacobian_close(
        lambda t: stn_ops.tps_grid(t, (3, 4), control),
        [control[None] + 0.1 * gen.normal(size=(2, 9, 2))],
    )


def test_tps_identity_and_exact_at_control_points():
    control = stn_ops.regular_control_points(16)
    identity = stn_ops.tps_grid(control[None], (6, 7))
    test_case.assert_close(
        identity, stn_ops.identity_grid((6, 7), 1, dtype="float64"), 1e-12
    )
    # Output size 4x4 with align_corners=True puts the pixel centres on
    # the 4x4 lattice: the spline must hit the displaced points exactly.
    target = control + 0.15 * test_case.rng(7).normal(size=control.shape)
    grid = stn_ops.tps_grid(target[None], (4, 4), align_corners=True)
    test_case.assert_close(
        test_case.to_numpy(grid).reshape(16, 2), target, 1e-12
    )


@pytest.mark.parametrize("oracle", ORACLES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tps_matches_solve_twin(dtype, oracle):
    control = stn_ops.regular_control_points(16)
    theta = (
        control[None] + 0.2 * test_case.rng(8).normal(size=(3, 16, 2))
    ).astype(dtype)
    ours = test_case.gradients(
        lambda t: stn_ops.tps_grid(t, (5, 6), control), theta
    )
    if oracle == "twin":
        twin = test_case.gradients(
            lambda t: _twin().tps_grid(t, (5, 6), control), theta
        )
    else:
        twin = _torch_gradients(
            lambda torch, t: _torch_tps_grid(torch, t, (5, 6), control), theta
        )
    atol = 20 * test_case.tolerance(dtype)
    test_case.assert_close(ours[0], twin[0], atol)
    test_case.assert_close(ours[1][0], twin[1][0], atol)


def test_tps_nan_theta_spares_the_batch():
    control = stn_ops.regular_control_points(16)
    theta = np.stack([control, control]).astype("float32")
    theta[0, 3, 0] = np.nan
    grid = test_case.to_numpy(stn_ops.tps_grid(theta, (4, 4)))
    assert np.all(np.isfinite(grid[1]))


@pytest.mark.parametrize(
    "control_points,pattern",
    [
        (
            [[0, 0], [1, 1], [0, 0], [1, 0]],
            r"`control_points` must be distinct",
        ),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], r"must not all lie on one line"),
        ([[0, 0], [1, 1]], r"`control_points` must have shape \(K, 2\)"),
        ([[0, 0], [1, np.nan], [1, 0]], r"`control_points` must be finite"),
    ],
)
def test_degenerate_control_points_are_refused(control_points, pattern):
    with pytest.raises(ValueError, match=pattern):
        stn_ops.tps_grid(
            np.zeros((1, len(control_points), 2), "float32"),
            (3, 3),
            control_points,
        )


@pytest.mark.parametrize(
    "fn,theta_shape,size,pattern",
    [
        (
            stn_ops.affine_grid,
            (2, 5),
            (3, 3),
            r"`theta` must have shape \(B, 2, 3\) or \(B, 6\)",
        ),
        (stn_ops.affine_grid, (2, 3, 3), (3, 3), r"`theta` must have shape"),
        (
            stn_ops.affine_grid,
            (2, 6),
            (0, 3),
            r"`size` must be a pair of positive ints.*\(0, 3\)",
        ),
        (stn_ops.affine_grid, (2, 6), (3,), r"`size` must be a pair"),
        (
            stn_ops.projective_grid,
            (2, 9),
            (3, 3),
            r"`theta` must have shape \(B, 3, 3\) or \(B, 8\)",
        ),
        (
            stn_ops.tps_grid,
            (2, 30),
            (3, 3),
            r"`theta` must have shape \(B, 16, 2\) or \(B, 32\)",
        ),
    ],
)
def test_bad_grid_arguments_name_the_argument(fn, theta_shape, size, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(np.zeros(theta_shape, "float32"), size)


@pytest.mark.tensorflow_only
def test_grids_compile_under_xla():
    tf = test_case.requires_tensorflow()
    gen = test_case.rng(9)
    theta6 = tf.constant(gen.normal(size=(2, 6)), tf.float32)
    theta8 = tf.constant(_homographies(2, 9).reshape(2, 9)[:, :8], tf.float32)
    theta_tps = tf.constant(
        stn_ops.regular_control_points(16)[None].repeat(2, 0), tf.float32
    )

    def run(a, p, t):
        with tf.GradientTape() as tape:
            tape.watch([a, p, t])
            outs = [
                stn_ops.affine_grid(a, (3, 4)),
                stn_ops.projective_grid(p, (3, 4)),
                stn_ops.tps_grid(t, (3, 4)),
            ]
            loss = sum(tf.reduce_sum(o**2) for o in outs)
        return outs + tape.gradient(loss, [a, p, t])

    eager = run(theta6, theta8, theta_tps)
    xla = tf.function(run, jit_compile=True)(theta6, theta8, theta_tps)
    for a, b in zip(eager, xla):
        test_case.assert_close(a, b, 1e-5, rtol=1e-5)



def test_torch_compile_gives_the_eager_values_and_gradients():
    # torch.compile traces the NumPy that builds the base grid with arrays
    # of its own, which have no `setflags` (it failed there before). One
    # compiled function samples through the three grids (one compilation).
    if test_case.backend() != "torch":
        pytest.skip(f"PyTorch-only; Keras backend is {test_case.backend()}")
    torch = test_case.requires_torch()
    from keras_stn.ops import transforms

    families = ("affine", "projective", "tps")
    gen = test_case.rng(24)
    images = gen.random((2, 9, 11, 3))
    thetas = []
    for family in families:
        identity = transforms.get(family).identity()
        thetas.append(identity + 0.05 * gen.normal(size=(2, identity.size)))

    def loss(images, *thetas):
        total = 0.0
        for family, theta in zip(families, thetas):
            grid = stn_ops.grid_for(family, theta, (7, 5))
            output = stn_ops.bilinear_sample(images, grid)
            total = total + torch.sum(output**2)
        return total

    results = []
    for fn in (loss, torch.compile(loss)):
        inputs = [
            torch.tensor(x, dtype=torch.float32).requires_grad_()
            for x in (images, *thetas)
        ]
        value = fn(*inputs)
        results.append([value, *torch.autograd.grad(value, inputs)])
    for eager, compiled in zip(*results):
        test_case.assert_close(
            compiled.detach().numpy(), eager.detach().numpy(), 1e-5, 1e-5
        )


# The grids with a custom gradient: the other families go through affine.
@pytest.mark.parametrize("family", ["affine", "projective", "tps"])
def test_jitted_grids_differentiate_on_jax(family):
    # `jax.vjp(jax.jit(f))` (a jitted model differentiated from outside)
    # could not lower a custom gradient that closed over an array.
    jax = pytest.importorskip("jax")
    if test_case.backend() != "jax":
        pytest.skip(f"JAX-only; Keras backend is {test_case.backend()}")

    from keras_stn.ops import transforms

    identity = transforms.get(family).identity()
    theta = identity + 0.1 * test_case.rng(22).normal(size=(2, identity.size))

    def fn(t):
        return stn_ops.grid_for(family, t, (3, 4))

    out, pullback = jax.vjp(jax.jit(fn), theta)
    eager_out, eager_pullback = jax.vjp(fn, theta)
    upstream = test_case.rng(23).normal(size=out.shape)
    test_case.assert_close(out, eager_out, 1e-12)
    test_case.assert_close(
        pullback(upstream)[0], eager_pullback(upstream)[0], 1e-12
    )


@pytest.mark.parametrize("limit", [grids.BLOCK_BASIS_MAX_SIZE, 0])
def test_combine_points_and_its_gradient_are_the_einsum(monkeypatch, limit):
    # The default takes the block matmul here; a limit of 0, the einsum
    # that large grids use.
    monkeypatch.setattr(grids, "BLOCK_BASIS_MAX_SIZE", limit)
    gen = test_case.rng(21)
    matrix = gen.normal(size=(7, 3))
    coefficients = gen.normal(size=(4, 3, 2))
    upstream = gen.normal(size=(4, 7, 2))
    tensor = keras.ops.convert_to_tensor
    test_case.assert_close(
        grids.combine_points(tensor(matrix), tensor(coefficients)),
        np.einsum("pm,bmi->bpi", matrix, coefficients),
        1e-12,
    )
    test_case.assert_close(
        grids.combine_points_gradient(tensor(matrix), tensor(upstream)),
        np.einsum("pm,bpi->bmi", matrix, upstream),
        1e-12,
    )


@pytest.mark.parametrize("family", ["affine", "projective", "tps"])
def test_gpu_form_of_the_grids_equals_the_cpu_form(family, monkeypatch):
    """On GPUs the grids are broadcast products and sums, exact in float32
    where the frameworks' matmuls round to TF32 by default (a fifth of a
    pixel at 448 pixels, measured on an H200): the same values and theta
    gradients as the CPU form."""
    gen = test_case.rng(21)
    identity = stn_ops.transforms.get(family).identity()
    theta = identity + gen.normal(0.0, 0.1, (3, identity.size))

    def grid(theta):
        return stn_ops.grid_for(family, theta, (7, 9))

    expected = test_case.gradients(grid, theta)
    monkeypatch.setattr(backend.active(), "on_gpu", lambda x: True)
    actual = test_case.gradients(grid, theta)
    test_case.assert_close(actual[0], expected[0], atol=1e-13)
    test_case.assert_close(actual[1][0], expected[1][0], atol=1e-12)

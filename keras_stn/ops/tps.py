"""Thin-plate-spline grids (the paper's TPS transformer, Bookstein 1989).

Convention: `K` control points sit at fixed places of the output grid
(normalised `(x, y)`); theta gives, for each, the input point it maps to.
The spline interpolates them exactly and is the identity when theta equals
the control points.
"""

import functools

import numpy as np
from keras import ops

from keras_stn.ops import backend
from keras_stn.ops import grids
from keras_stn.utils import argument_validation
from keras_stn.utils import types


def regular_control_points(num_points: int = 16) -> np.ndarray:
    """A regular `n x n` lattice spanning `[-1, 1]^2`, `n = sqrt(num_points)`.

    Args:
        num_points: int, a perfect square >= 4. Defaults to 16 (the paper's).
    Returns:
        float64 NumPy array `(num_points, 2)`, rows `(x, y)`, row-major.
    Raises:
        ValueError: if `num_points` is not a perfect square >= 4.
    """
    n = int(round(float(num_points) ** 0.5)) if num_points >= 0 else 0
    if isinstance(num_points, bool) or n * n != num_points or n < 2:
        raise ValueError(
            "`num_points` must be a perfect square >= 4 (a regular n x n "
            f"lattice). Received: num_points={num_points!r}"
        )
    axis = np.linspace(-1.0, 1.0, n)
    y, x = np.meshgrid(axis, axis, indexing="ij")
    return np.stack([x.ravel(), y.ravel()], axis=-1)


def check_control_points(control_points):
    """Returns control points as float64 `(K, 2)`, refusing degenerate sets.

    Raises:
        ValueError: if the shape is not `(K, 2)` with K >= 3, a point repeats
            or all points lie on one line (the spline system is singular).
    """
    points = np.asarray(control_points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < 3:
        raise ValueError(
            "`control_points` must have shape (K, 2) with K >= 3. "
            f"Received: control_points.shape={points.shape}"
        )
    if not np.all(np.isfinite(points)):
        raise ValueError(
            "`control_points` must be finite. Received: "
            f"control_points={points.tolist()}"
        )
    _, counts = np.unique(points, axis=0, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(
            "`control_points` must be distinct: a repeated point makes the "
            "spline system singular. Received: "
            f"control_points={points.tolist()}"
        )
    homogeneous = np.concatenate([np.ones((len(points), 1)), points], axis=1)
    if np.linalg.matrix_rank(homogeneous) < 3:
        raise ValueError(
            "`control_points` must not all lie on one line: the affine part "
            f"is then undetermined. Received: control_points={points.tolist()}"
        )
    return points


def _radial(sq_dist):
    """The TPS kernel U(r) = r^2 log r^2, with U(0) = 0 (float64 NumPy)."""
    safe = np.where(sq_dist > 0, sq_dist, 1.0)
    return np.where(sq_dist > 0, sq_dist * np.log(safe), 0.0)


def _features(points, control_points):
    """`[U(|p - c_k|)_k, 1, x, y]` for each point: `(N, K + 3)`."""
    diff = points[:, None, :] - control_points[None, :, :]
    kernel = _radial(np.sum(diff * diff, axis=-1))
    return np.concatenate([kernel, np.ones((len(points), 1)), points], axis=1)


@functools.lru_cache(maxsize=64)
def _grid_matrix(control_key, size, align_corners):
    """The `(H * W, K)` matrix M with `grid = M @ theta` (float64).

    Solves the spline system `L [w; a] = [theta; 0]`,
    `L = [[U(c_i, c_j), P], [P^T, 0]]`, `P = [1, x, y]`, once for the
    identity right-hand sides (an LU solve, no inverse), then evaluates the
    spline at the output points. It depends only on the control points and
    the output size, so it is computed once per trace and cached.
    """
    control_points = np.array(control_key, dtype=np.float64).reshape(-1, 2)
    k = len(control_points)
    system = np.zeros((k + 3, k + 3))
    system[:k, :] = _features(control_points, control_points)
    system[k:, :k] = system[:k, k:].T
    rhs = np.concatenate([np.eye(k), np.zeros((3, k))], axis=0)
    coefficients = np.linalg.solve(system, rhs)
    points = grids.base_grid_numpy(size, align_corners)[:, :2]
    matrix = _features(points, control_points) @ coefficients
    if hasattr(matrix, "setflags"):  # see grids.base_grid_numpy
        matrix.setflags(write=False)
    return matrix


def tps_grid(
    theta: types.TensorLike,
    size: types.Size,
    control_points: types.TensorLike | None = None,
    align_corners: bool = False,
) -> types.Tensor:
    """Thin-plate-spline sampling grid through `K` control points.

    The spline `T(p) = a0 + a1 x + a2 y + sum_k w_k U(|p - c_k|)` takes each
    control point `c_k` (output space) to `theta[:, k]` (input space)
    exactly. The grid is linear in theta, `grid = M @ theta`, with M from
    one linear solve per control-point set and size; the gradient is
    hand-written, `d theta = M^T d grid`. The identity theta (the control
    points) gives the identity grid exactly.
    Convention: control points and theta are normalised `(x, y)`.

    Args:
        theta: float tensor `(B, K, 2)` or `(B, 2K)` (x0, y0, x1, y1, ...).
        size: `(H_out, W_out)`.
        control_points: array `(K, 2)` of distinct, not collinear points;
            defaults to the paper's regular 4x4 lattice on `[-1, 1]^2`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, 2)`.
    Raises:
        ValueError: malformed theta, size or control points, or a theta
            whose K differs from the control points'.
    """
    argument_validation.check_bool(align_corners, "align_corners")
    size = argument_validation.check_size(size)
    if control_points is None:
        control_points = regular_control_points(16)
    control_points = check_control_points(control_points)
    k = len(control_points)
    form = f"(B, {k}, 2) or (B, {2 * k})"
    theta = argument_validation.as_float_tensor(theta, "theta")
    argument_validation.check_rank(theta, (2, 3), "theta", form)
    expected = (k, 2) if len(theta.shape) == 3 else (2 * k,)
    if any(d is not None and d != e for d, e in zip(theta.shape[1:], expected)):
        raise ValueError(
            f"`theta` must have shape {form} for {k} control points. "
            f"Received: theta.shape={tuple(theta.shape)}"
        )
    # Sizes not known statically are checked when the graph runs.
    theta = backend.assert_dims(
        theta,
        {axis + 1: size for axis, size in enumerate(expected)},
        f"`theta` must have shape {form} for {k} control points.",
        "theta",
    )
    theta = ops.reshape(theta, (-1, k, 2))
    theta = grids.guard_non_finite(
        ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
    )
    key = tuple(control_points.ravel().tolist())
    matrix = ops.convert_to_tensor(
        _grid_matrix(key, size, bool(align_corners)), dtype=theta.dtype
    )

    # The spline reproduces affine maps, so M @ control_points is the
    # identity grid; adding M @ (theta - control_points) to the exact
    # identity grid keeps a near-identity warp free of the rounding of K
    # summed terms (the identity theta gives the identity grid bit for bit).
    base = ops.convert_to_tensor(
        grids.base_grid_numpy(size, bool(align_corners))[:, :2],
        dtype=theta.dtype,
    )
    control = ops.convert_to_tensor(control_points, dtype=theta.dtype)

    # The arrays are inputs with no gradient, not constants the function
    # closes over (see `grids.affine_grid`: JAX's `jax.vjp(jax.jit(f))`).
    @ops.custom_gradient
    def _tps(theta, matrix, base, control):
        points = base + grids.combine_points(matrix, theta - control)

        def _tps_grid_grad(*args, upstream=None):
            """d theta[b, k, i] = sum_p M[p, k] upstream[b, p, i]."""
            upstream = args[0] if upstream is None else upstream
            grad = grids.combine_points_gradient(matrix, upstream)
            return grad, None, None, None

        return points, _tps_grid_grad

    return ops.reshape(_tps(theta, matrix, base, control), (-1, *size, 2))

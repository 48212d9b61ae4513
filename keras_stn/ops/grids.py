"""Sampling grids from matrices: affine (2x3; 3x4 for volumes) and
projective (3x3).

Convention: a grid is `(B, H_out, W_out, 2)` of `(x, y)` in `[-1, 1]`
(volumes: `(B, D_out, H_out, W_out, 3)` of `(x, y, z)`, `x` along `W`,
`z` along `D`); theta maps output points to input sampling points (the
paper's T_theta), with `align_corners` placing the output pixel centres as
PyTorch's `affine_grid` does.
"""

import functools

import numpy as np
from keras import ops

from keras_stn.ops import backend
from keras_stn.utils import argument_validation
from keras_stn.utils import types

# |w| below this is replaced by +-_W_EPSILON in the projective divide.
W_EPSILON = 1e-6


def guard_non_finite(theta):
    """Identity on theta whose gradient is zero for non-finite samples.

    A sample with NaN or inf anywhere in its parameters samples zeros; its
    upstream gradient, computed through `cos(nan)` and the like, would be
    NaN and would reach the shared localization weights, poisoning the whole
    batch. This zeroes it, so only that sample stops learning.

    Args:
        theta: float tensor `(B, ...)`.
    Returns:
        theta, unchanged.
    """

    @ops.custom_gradient
    def _guard(theta):
        def _guard_grad(*args, upstream=None):
            """d theta = upstream where the sample is finite, else 0."""
            upstream = args[0] if upstream is None else upstream
            axes = tuple(range(1, len(theta.shape)))
            finite = ops.all(ops.isfinite(theta), axis=axes, keepdims=True)
            return ops.where(finite, upstream, ops.zeros_like(upstream))

        return ops.copy(theta), _guard_grad

    return _guard(theta)


def _axis_coordinates(n, align_corners):
    """Normalised centres of `n` pixels, float64 `(n,)` (0 for one pixel)."""
    if n == 1:
        return np.zeros((1,))
    if align_corners:
        return np.linspace(-1.0, 1.0, n)
    return (2.0 * np.arange(n) + 1.0) / n - 1.0


@functools.lru_cache(maxsize=64)
def base_grid_numpy(size, align_corners):
    """The identity grid in homogeneous form: float64 `(H * W, 3)` rows
    `(x, y, 1)` for `size = (H, W)`, `(D * H * W, 4)` rows `(x, y, z, 1)`
    for `(D, H, W)`, row-major over `size`."""
    axes = np.meshgrid(
        *(_axis_coordinates(n, align_corners) for n in size), indexing="ij"
    )
    # The grid's last axis runs (x, y, z): the reverse of the array axes.
    points = np.stack([*axes[::-1], np.ones_like(axes[0])], axis=-1)
    points = points.reshape(-1, len(size) + 1)
    # Read-only, as it is cached; torch.compile traces NumPy code with
    # arrays of its own, which have no flags to set.
    if hasattr(points, "setflags"):
        points.setflags(write=False)
    return points


def identity_grid(
    size: types.Size,
    batch_size: int = 1,
    align_corners: bool = False,
    dtype: str = "float32",
) -> types.Tensor:
    """The grid that samples each output pixel at its own place.

    Args:
        size: `(H_out, W_out)`.
        batch_size: int.
        align_corners: bool.
    Returns:
        Tensor `(batch_size, H_out, W_out, 2)`.
    """
    size = argument_validation.check_size(size)
    points = base_grid_numpy(size, bool(align_corners))[:, :2]
    grid = ops.convert_to_tensor(points.reshape(*size, 2), dtype=dtype)
    return ops.repeat(grid[None], batch_size, axis=0)


def _matrix_theta(theta, rows, num_params, name, form, cols=3):
    """Returns theta as float `(B, rows, cols)`, from that shape or flat
    (`num_params` entries, row-major; 8 of a 3x3 matrix: the ninth is 1).
    """
    theta = argument_validation.as_float_tensor(theta, name)
    argument_validation.check_rank(theta, (2, 3), name, form)
    message = f"`{name}` must have shape {form}."
    if len(theta.shape) == 2:
        argument_validation.check_last_dim(theta, num_params, name, form)
        # A wrong size not known statically would reshape into another
        # batch: checked when the graph runs.
        theta = backend.assert_dims(theta, {1: num_params}, message, name)
        if num_params == 8:
            ones = ops.ones_like(theta[:, :1])
            theta = ops.concatenate([theta, ones], axis=-1)
        return ops.reshape(theta, (-1, rows, cols))
    if any(
        d is not None and d != e
        for d, e in zip(theta.shape[1:], (rows, cols))
    ):
        raise ValueError(
            f"`{name}` must have shape {form}. Received: {name}.shape="
            f"{tuple(theta.shape)}"
        )
    theta = backend.assert_dims(theta, {1: rows, 2: cols}, message, name)
    # Static from here on (combine_points needs the sizes).
    return ops.reshape(theta, (-1, rows, cols))


# Past this many entries (16 MiB in float32) the block matrix of
# `combine_points` is not worth its memory: einsum instead.
BLOCK_BASIS_MAX_SIZE = 2**22


def _block_basis(matrix, rows):
    """The matrix `K` `(M * rows, P * rows)` with `K[(m, i), (p, j)] =
    matrix[p, m]` where `i == j`, else 0: `coefficients` flattened to
    `(B, M * rows)`, times `K`, is `einsum("pm,bmi->bpi", matrix,
    coefficients)` flattened to `(B, P * rows)`.
    """
    eye = ops.eye(rows, dtype=matrix.dtype)
    blocks = ops.transpose(matrix)[:, None, :, None] * eye[None, :, None, :]
    return ops.reshape(blocks, (-1, matrix.shape[0] * rows))


def _use_block_basis(matrix, rows):
    num_points, num_terms = matrix.shape
    return num_points * num_terms * rows * rows <= BLOCK_BASIS_MAX_SIZE


def _sum_of_products(a, b, axis=2):
    """`sum(a * b, axis)` in the inputs' own precision.

    On GPUs the frameworks run float32 matmuls and einsums in TF32 by
    default (JAX and TensorFlow), which rounds the factors to 10 bits:
    sampling points off by a fifth of a pixel at 448 pixels, and theta
    gradients far off. A broadcast product and a sum are exact float32
    arithmetic. Up to 4 terms the sum is written out as additions, so that
    XLA fuses the points into the sampler that reads them (a reduction
    would be its own kernel, its output written to memory).
    """
    products = a * b
    terms = products.shape[axis]
    if terms > 4:
        return ops.sum(products, axis=axis)
    parts = ops.split(products, terms, axis=axis)
    return ops.squeeze(sum(parts[1:], parts[0]), axis=axis)


def combine_points(matrix, coefficients):
    """Per-sample linear combinations of fixed point features.

    `einsum("pm,bmi->bpi", matrix, coefficients)`, written (while the block
    matrix stays under `BLOCK_BASIS_MAX_SIZE` entries) as one plain
    `(B, M * rows) @ (M * rows, P * rows)` matmul, so that the points come
    out in their natural layout: XLA:CPU lowers the einsum to a dot whose
    output is `(P, B * rows)` and transposes it for every reader (a sixth
    of the mnist sampler step when measured). The zeros of the block matrix
    cost
    `B * M * P * rows^2` multiply-adds, a few million. On a GPU it is a
    broadcast product and a sum, exact where matmuls round to TF32.

    Args:
        matrix: float tensor `(P, M)` of static shape, e.g. the points
            `(x, y, 1)`.
        coefficients: float tensor `(B, M, rows)`.
    Returns:
        Tensor `(B, P, rows)`.
    """
    num_terms, rows = coefficients.shape[1:]
    if backend.on_gpu(coefficients):
        return _sum_of_products(matrix[None, :, :, None], coefficients[:, None])
    if not _use_block_basis(matrix, rows):
        return ops.einsum("pm,bmi->bpi", matrix, coefficients)
    flat = backend.matmul(
        ops.reshape(coefficients, (-1, num_terms * rows)),
        _block_basis(matrix, rows),
    )
    return ops.reshape(flat, (-1, matrix.shape[0], rows))


def combine_points_gradient(matrix, upstream):
    """The gradient of `combine_points` w.r.t. its coefficients.

    Args:
        matrix: float tensor `(P, M)` of static shape.
        upstream: float tensor `(B, P, rows)`.
    Returns:
        Tensor `(B, M, rows)`: `sum_p matrix[p, m] upstream[b, p, i]`.
    """
    num_points, rows = upstream.shape[1:]
    if backend.on_gpu(upstream):
        return _sum_of_products(
            matrix[None, :, :, None], upstream[:, :, None], axis=1
        )
    if not _use_block_basis(matrix, rows):
        return ops.einsum("pm,bpi->bmi", matrix, upstream)
    flat = ops.reshape(upstream, (-1, num_points * rows))
    basis = ops.transpose(_block_basis(matrix, rows))
    # Two matmuls over halves of the points: when one dot is the only
    # reader of the upstream, XLA:CPU emits the fusion that computes it
    # (the sampler's grid gradient) over twice as slow (measured with
    # benchmarks/sampler_benchmark.py, mnist).
    half = num_points // 2 * rows
    flat = backend.matmul(flat[:, :half], basis[:half]) + backend.matmul(
        flat[:, half:], basis[half:]
    )
    return ops.reshape(flat, (-1, matrix.shape[1], rows))


def is_volume_size(size):
    """Whether `size` names three output axes `(D, H, W)` (a volume)."""
    try:
        return len(size) == 3
    except TypeError:
        return False


def affine_grid(
    theta: types.TensorLike, size: types.Size, align_corners: bool = False
) -> types.Tensor:
    """Maps the output pixel grid through 2x3 affine matrices.

    `grid[b, i, j] = theta[b] @ (x_j, y_i, 1)`. The gradient is hand-written:
    `d theta[b] = sum_ij d grid[b, i, j] (x_j, y_i, 1)^T`, one matmul.
    With a 3-D `size` it is `affine_grid_3d` (3x4 matrices).
    Convention: theta maps output points to input points, in normalised
    coordinates, as PyTorch's `affine_grid`.

    Args:
        theta: float tensor `(B, 2, 3)` or `(B, 6)` (row-major); for
            volumes `(B, 3, 4)` or `(B, 12)`.
        size: `(H_out, W_out)`, two positive ints; for volumes
            `(D_out, H_out, W_out)`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, 2)` of `(x, y)` sampling points, in the
        dtype of theta (float32 for float16/bfloat16 theta); for volumes
        `(B, D_out, H_out, W_out, 3)` of `(x, y, z)`.
    Raises:
        ValueError: if theta's shape or `size` is malformed.

    Example:
    >>> import numpy as np
    >>> theta = np.array([[1, 0, 0, 0, 1, 0]], dtype="float32")
    >>> grid = affine_grid(theta, (1, 3), align_corners=True)
    >>> ops.convert_to_numpy(grid)[0, 0, :, 0]
    array([-1.,  0.,  1.], dtype=float32)
    """
    argument_validation.check_bool(align_corners, "align_corners")
    if is_volume_size(size):
        return affine_grid_3d(theta, size, align_corners)
    size = argument_validation.check_size(size)
    theta = _matrix_theta(theta, 2, 6, "theta", "(B, 2, 3) or (B, 6)")
    theta = guard_non_finite(
        ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
    )
    return _affine_points(theta, size, align_corners)


def _affine_points(theta, size, align_corners):
    """`theta @ (x, y[, z], 1)` over the output grid of `size`, with its
    hand-written gradient: `(B, *size, N)` for float theta `(B, N, N + 1)`.
    """
    base = ops.convert_to_tensor(
        base_grid_numpy(tuple(size), bool(align_corners)), dtype=theta.dtype
    )

    # The base points are an input with no gradient, not an array the
    # function closes over: JAX cannot lower a `custom_gradient` function
    # that closes over an array when a jitted function is differentiated
    # (`jax.vjp(jax.jit(f))`, "No constant handler").
    @ops.custom_gradient
    def _affine(theta, base):
        points = combine_points(base, ops.transpose(theta, (0, 2, 1)))

        def _affine_grid_grad(*args, upstream=None):
            """d theta[b, i, k] = sum_p upstream[b, p, i] base[p, k]."""
            upstream = args[0] if upstream is None else upstream
            grad = combine_points_gradient(base, upstream)
            return ops.transpose(grad, (0, 2, 1)), None

        return points, _affine_grid_grad

    return ops.reshape(_affine(theta, base), (-1, *size, len(size)))


def projective_grid(
    theta: types.TensorLike, size: types.Size, align_corners: bool = False
) -> types.Tensor:
    """Maps the output pixel grid through 3x3 homographies.

    `(u, v, w) = theta[b] @ (x, y, 1)`, sampling point `(u / w, v / w)`.
    Where `|w| < W_EPSILON` (the point maps to infinity), `w` is replaced by
    `W_EPSILON` with its sign (+ for 0): the point lands far outside the
    image, finite, and its gradient w.r.t. that `w` is zero. NaN in theta
    gives NaN points, which the samplers read as zeros with zero gradient.
    The gradient is hand-written: with `p = (x, y, 1)`,
    `d (u/w) / d row0 = p / w`, `d (u/w) / d row2 = -u p / w^2`, likewise v.

    Args:
        theta: float tensor `(B, 3, 3)` or `(B, 8)` (row-major, the ninth
            entry fixed to 1).
        size: `(H_out, W_out)`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, 2)`.
    Raises:
        ValueError: if theta's shape or `size` is malformed.
    """
    argument_validation.check_bool(align_corners, "align_corners")
    size = argument_validation.check_size(size)
    theta = _matrix_theta(theta, 3, 8, "theta", "(B, 3, 3) or (B, 8)")
    theta = guard_non_finite(
        ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
    )
    base = ops.convert_to_tensor(
        base_grid_numpy(size, bool(align_corners)), dtype=theta.dtype
    )

    def _project(theta, base):
        uvw = combine_points(base, ops.transpose(theta, (0, 2, 1)))
        w = uvw[..., 2:]
        small = ops.abs(w) < W_EPSILON
        safe_w = ops.where(small, ops.where(w < 0, -W_EPSILON, W_EPSILON), w)
        return uvw[..., :2], ops.cast(safe_w, theta.dtype), small

    # The base points are an input with no gradient (see `affine_grid`).
    @ops.custom_gradient
    def _projective(theta, base):
        uv, w, _ = _project(theta, base)

        def _projective_grid_grad(*args, upstream=None):
            """Quotient rule, d w = 0 where w was clamped (see above)."""
            upstream = args[0] if upstream is None else upstream
            uv, w, small = _project(theta, base)
            g_uv = upstream / w
            g_w = -ops.sum(upstream * uv, axis=-1, keepdims=True) / (w * w)
            g_w = ops.where(small, ops.zeros_like(g_w), g_w)
            g_uvw = ops.concatenate([g_uv, g_w], axis=-1)
            grad = combine_points_gradient(base, g_uvw)
            return ops.transpose(grad, (0, 2, 1)), None

        return uv / w, _projective_grid_grad

    return ops.reshape(_projective(theta, base), (-1, *size, 2))


def affine_grid_3d(
    theta: types.TensorLike, size: types.Size, align_corners: bool = False
) -> types.Tensor:
    """Maps the output voxel grid through 3x4 affine matrices.

    `grid[b, k, i, j] = theta[b] @ (x_j, y_i, z_k, 1)`: PyTorch's
    `affine_grid` for a 5-D size. The gradient is hand-written:
    `d theta[b] = sum_kij d grid[b, k, i, j] (x_j, y_i, z_k, 1)^T`. Samples
    whose theta holds NaN or inf get non-finite points (the samplers read
    zeros there) and a zero theta gradient (`guard_non_finite`).
    Convention: theta maps output points to input points, in normalised
    coordinates; the grid's last axis is `(x, y, z)`.

    Args:
        theta: float tensor `(B, 3, 4)` or `(B, 12)` (row-major).
        size: `(D_out, H_out, W_out)`, three positive ints.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, D_out, H_out, W_out, 3)` of `(x, y, z)` sampling
        points, in the dtype of theta (float32 for float16/bfloat16 theta).
    Raises:
        ValueError: if theta's shape or `size` is malformed.

    Example:
    >>> import numpy as np
    >>> theta = np.eye(3, 4, dtype="float32")[None]
    >>> grid = affine_grid_3d(theta, (2, 1, 3), align_corners=True)
    >>> ops.convert_to_numpy(grid)[0, :, 0, :, 0]
    array([[-1.,  0.,  1.],
           [-1.,  0.,  1.]], dtype=float32)
    """
    argument_validation.check_bool(align_corners, "align_corners")
    size = argument_validation.check_volume_size(size)
    theta = _matrix_theta(
        theta, 3, 12, "theta", "(B, 3, 4) or (B, 12)", cols=4
    )
    theta = ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
    native = backend.native_affine_grid_3d()
    if native is not None:
        # PyTorch's own grid (with the same contract for non-finite theta):
        # about 100x faster than this one's block matrix on a 48^3 volume
        # on a CPU (benchmarks/torch_backend_benchmark.py).
        return native(theta, size, bool(align_corners))
    return _affine_points(guard_non_finite(theta), size, align_corners)

"""Anti-aliasing by supersampling each output pixel over its footprint.

A fixed-width kernel aliases when a transform shrinks the image (the paper
lists this as a limitation). Sampling S x S points spread over each output
pixel's footprint in the input, then averaging them, is a box filter over
that footprint; it works for every family because the footprint is read off
the grid itself.
"""

from keras import ops

from keras_stn.utils import argument_validation
from keras_stn.utils import types


def _step(grid, axis):
    """Grid displacement per output pixel along `axis` (1: rows, 2: cols).

    Central differences inside, one-sided at the edges; zero for an axis of
    length 1 (no neighbour to measure a footprint from).
    """
    n = grid.shape[axis]
    if n == 1:
        return ops.zeros_like(grid)
    diff = ops.diff(grid, axis=axis)
    first = ops.take(diff, [0], axis=axis)
    last = ops.take(diff, [n - 2], axis=axis)
    before = ops.concatenate([first, diff], axis=axis)
    after = ops.concatenate([diff, last], axis=axis)
    return (before + after) / 2.0


def supersample_grid(grid: types.TensorLike, factor: int) -> types.Tensor:
    """Spreads `factor x factor` points over each grid point's footprint.

    The footprint of output pixel `(i, j)` is the parallelogram spanned by
    the grid's steps to its neighbours (exact for affine families, a local
    linearisation for projective and TPS grids). Sub-points sit at the
    centres of a regular `factor x factor` split of it, so averaging
    `factor x factor` blocks of the sampled result is a box filter.

    Args:
        grid: float tensor `(B, H_out, W_out, 2)`, static `H_out`, `W_out`.
        factor: int >= 1.
    Returns:
        Tensor `(B, H_out * factor, W_out * factor, 2)`.
    Raises:
        ValueError: if `factor` is not a positive int or the grid's spatial
            size is not static.
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(
            f"`factor` must be a positive int. Received: factor={factor!r}"
        )
    argument_validation.check_rank(grid, 4, "grid", "(B, H_out, W_out, 2)")
    height, width = grid.shape[1], grid.shape[2]
    if height is None or width is None:
        raise ValueError(
            "`grid` must have a static spatial size to be supersampled. "
            f"Received: grid.shape={tuple(grid.shape)}"
        )
    if factor == 1:
        return grid
    offsets = (ops.arange(factor, dtype=grid.dtype) + 0.5) / factor - 0.5
    step_y = _step(grid, 1)[:, :, None, :, None, :]
    step_x = _step(grid, 2)[:, :, None, :, None, :]
    fine = (
        grid[:, :, None, :, None, :]
        + ops.reshape(offsets, (1, 1, factor, 1, 1, 1)) * step_y
        + ops.reshape(offsets, (1, 1, 1, 1, factor, 1)) * step_x
    )
    return ops.reshape(fine, (-1, height * factor, width * factor, 2))


def antialias_factor(antialias, input_size, output_size):
    """The supersampling factor an `antialias` argument asks for.

    `False`, `None`, 0 or 1: no supersampling. An int: that factor. `True`:
    `max(2, ceil(max(H / H_out, W / W_out)))`, right for transforms whose
    scale is near 1; pass an int for strong zooms.
    """
    if antialias is None or antialias is False:
        return 1
    if antialias is True:
        if None in (*input_size, *output_size):
            raise ValueError(
                "`antialias=True` needs static input and output sizes to "
                "pick the factor; pass an int factor instead. Received: "
                f"input size {tuple(input_size)}, output size "
                f"{tuple(output_size)}"
            )
        ratio = max(
            -(-input_size[0] // output_size[0]),
            -(-input_size[1] // output_size[1]),
        )
        return max(2, int(ratio))
    if isinstance(antialias, int) and antialias >= 0:
        return max(1, antialias)
    raise ValueError(
        "`antialias` must be a bool or a non-negative int (the supersampling "
        f"factor). Received: antialias={antialias!r}"
    )

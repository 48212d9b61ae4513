"""Pure tensor functions: transforms, grids, samplers and dense warps.

Convention: channels-last images `(B, H, W, C)` (volumes `(B, D, H, W, C)`);
grids `(B, H_out, W_out, 2)` of `(x, y)` (volumes: `(x, y, z)`) in
`[-1, 1]`; theta maps output points to input points; `padding_mode` and
`align_corners` as in PyTorch's `grid_sample`. Dense displacement fields
(`warp`, `integrate_velocity`, ...) are in pixels, channels in `indexing`
order (`"ij"`: rows first, as VoxelMorph).

How an image reaches a kernel: `sampling.sample` (the one entry of every
sampler: checks, switches, dtype) -> the kernel seam `backend` (a
framework's native kernel, or the package's own: `bilinear`, `trilinear`,
`nearest`, `bicubic`, reading taps through `gathers`) -> the backend's
primitives (`backend.generic`, `backend.tensorflow_ops`, ...). Speed
choices live in `tuning`.

Every function here also takes `keras.Input` tensors, as `keras.ops` do: in a
functional model it becomes one node of the graph (`symbolic.TensorOp`),
saved with the model.
"""

from keras_stn.ops import antialias as _antialias
from keras_stn.ops import displacement as _displacement
from keras_stn.ops import grids as _grids
from keras_stn.ops import sampling as _sampling
from keras_stn.ops import symbolic as _symbolic
from keras_stn.ops import tps as _tps
from keras_stn.ops import transforms
from keras_stn.ops.grids import identity_grid
from keras_stn.ops.tps import regular_control_points

affine_grid = _symbolic.symbolic(_grids.affine_grid)
affine_grid_3d = _symbolic.symbolic(_grids.affine_grid_3d)
compose_displacements = _symbolic.symbolic(_displacement.compose_displacements)
integrate_velocity = _symbolic.symbolic(_displacement.integrate_velocity)
bicubic_sample = _symbolic.symbolic(_sampling.bicubic_sample)
bilinear_sample = _symbolic.symbolic(_sampling.bilinear_sample)
grid_for = _symbolic.symbolic(transforms.grid_for)
nearest_sample = _symbolic.symbolic(_sampling.nearest_sample)
projective_grid = _symbolic.symbolic(_grids.projective_grid)
sample = _symbolic.symbolic(_sampling.sample)
supersample_grid = _symbolic.symbolic(_antialias.supersample_grid)
tps_grid = _symbolic.symbolic(_tps.tps_grid)
trilinear_sample = _symbolic.symbolic(_sampling.trilinear_sample)
nearest_sample_3d = _symbolic.symbolic(_sampling.nearest_sample_3d)
warp = _symbolic.symbolic(_displacement.warp)
warp_points = _symbolic.symbolic(_displacement.warp_points)

__all__ = [
    "affine_grid",
    "affine_grid_3d",
    "bicubic_sample",
    "bilinear_sample",
    "compose_displacements",
    "grid_for",
    "identity_grid",
    "integrate_velocity",
    "nearest_sample",
    "nearest_sample_3d",
    "projective_grid",
    "regular_control_points",
    "sample",
    "supersample_grid",
    "tps_grid",
    "transforms",
    "trilinear_sample",
    "warp",
    "warp_points",
]

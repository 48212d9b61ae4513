"""Pure tensor functions: transforms, grids and samplers.

Convention: channels-last images `(B, H, W, C)`; grids `(B, H_out, W_out, 2)`
of `(x, y)` in `[-1, 1]`; theta maps output points to input points;
`padding_mode` and `align_corners` as in PyTorch's `grid_sample`.
"""

from keras_stn.ops import transforms
from keras_stn.ops.antialias import supersample_grid
from keras_stn.ops.grids import affine_grid
from keras_stn.ops.grids import identity_grid
from keras_stn.ops.grids import projective_grid
from keras_stn.ops.kernels import bicubic_sample
from keras_stn.ops.kernels import nearest_sample
from keras_stn.ops.sampler import sample
from keras_stn.ops.sampling import bilinear_sample
from keras_stn.ops.tps import regular_control_points
from keras_stn.ops.tps import tps_grid
from keras_stn.ops.transforms import grid_for

__all__ = [
    "affine_grid",
    "bicubic_sample",
    "bilinear_sample",
    "grid_for",
    "identity_grid",
    "nearest_sample",
    "projective_grid",
    "regular_control_points",
    "sample",
    "supersample_grid",
    "tps_grid",
    "transforms",
]

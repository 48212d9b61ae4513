"""Transform families (the paper's Table 1 hierarchy, plus TPS) and their
registry.

A family maps a flat parameter vector theta `(B, P)` to a sampling grid and
has identity parameters, which a localization head starts from. Families
are looked up by name, `get("similarity")`, and users add their own with
`register`.
Convention: theta maps output points to input points, in normalised
`(x, y)` coordinates; angles are in radians, counter-clockwise in `(x, y)`.
"""

import numpy as np
from keras import ops

from keras_stn.ops import backend
from keras_stn.ops import grids
from keras_stn.ops import tps
from keras_stn.utils import argument_validation
from keras_stn.utils import types


class Transform:
    """A family of transformations with a fixed number of parameters.

    Subclasses set `name` and `num_params`, implement `identity()` and
    either `matrix(theta)` (2x3 or 3x3 families) or override `grid`.
    """

    name: str | None = None
    num_params: int | None = None
    # Images (2: grids end in (x, y)) or volumes (3: (x, y, z)).
    spatial_dims = 2

    def identity(self):
        """The parameters of the identity map, float64 NumPy `(P,)`."""
        raise NotImplementedError

    def matrix(self, theta):
        """float tensor `(B, P)` -> `(B, 2, 3)` affine or `(B, 3, 3)`."""
        raise NotImplementedError(
            f"Transform {self.name!r} does not define a matrix"
        )

    def check_theta(self, theta):
        """Returns theta as a float tensor `(B, P)` or raises ValueError.

        A sample with non-finite parameters gets a zero gradient
        (`grids.guard_non_finite`) and samples zeros.
        """
        theta = argument_validation.as_float_tensor(theta, "theta")
        form = f"(B, {self.num_params}) for transform {self.name!r}"
        argument_validation.check_rank(theta, 2, "theta", form)
        argument_validation.check_last_dim(theta, self.num_params, "theta", form)
        theta = backend.assert_dims(
            theta,
            {1: self.num_params},
            f"`theta` must have shape {form}.",
            "theta",
        )
        theta = ops.cast(theta, argument_validation.compute_dtype(theta.dtype))
        return grids.guard_non_finite(theta)

    def grid(self, theta, size, align_corners=False):
        """The sampling grid `(B, H_out, W_out, 2)` of theta `(B, P)`."""
        matrix = self.matrix(self.check_theta(theta))
        if matrix.shape[-2] == 3:
            return grids.projective_grid(matrix, size, align_corners)
        return grids.affine_grid(matrix, size, align_corners)

    def __repr__(self):
        return f"<Transform {self.name!r}, {self.num_params} parameters>"


def _rows(*rows):
    """Stacks rows of `(B,)` tensors into a `(B, len(rows), 3)` matrix."""
    return ops.stack([ops.stack(row, axis=-1) for row in rows], axis=-2)


class Translation(Transform):
    """`(tx, ty)`: `x' = x + tx`, `y' = y + ty`."""

    name, num_params = "translation", 2

    def identity(self):
        return np.zeros(2)

    def matrix(self, theta):
        one, zero = ops.ones_like(theta[:, 0]), ops.zeros_like(theta[:, 0])
        return _rows([one, zero, theta[:, 0]], [zero, one, theta[:, 1]])


class Rigid(Transform):
    """`(angle, tx, ty)`: a rotation then a translation."""

    name, num_params = "rigid", 3

    def identity(self):
        return np.zeros(3)

    def matrix(self, theta):
        c, s = backend.cos_sin(theta[:, 0])
        return _rows([c, -s, theta[:, 1]], [s, c, theta[:, 2]])


class Similarity(Transform):
    """`(scale, angle, tx, ty)`: an isotropic scale, rotation, translation."""

    name, num_params = "similarity", 4

    def identity(self):
        return np.array([1.0, 0.0, 0.0, 0.0])

    def matrix(self, theta):
        scale = theta[:, 0]
        c, s = backend.cos_sin(theta[:, 1])
        c, s = scale * c, scale * s
        return _rows([c, -s, theta[:, 2]], [s, c, theta[:, 3]])


class Attention(Transform):
    """`(scale, tx, ty)`: the paper's crop-and-zoom (used on CUB)."""

    name, num_params = "attention", 3

    def identity(self):
        return np.array([1.0, 0.0, 0.0])

    def matrix(self, theta):
        zero = ops.zeros_like(theta[:, 0])
        scale = theta[:, 0]
        return _rows([scale, zero, theta[:, 1]], [zero, scale, theta[:, 2]])


class Affine(Transform):
    """The 2x3 matrix, row-major: `(a, b, tx, c, d, ty)`."""

    name, num_params = "affine", 6

    def identity(self):
        return np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def matrix(self, theta):
        return ops.reshape(theta, (-1, 2, 3))


class Projective(Transform):
    """The 3x3 homography, row-major, its ninth entry fixed to 1."""

    name, num_params = "projective", 8

    def identity(self):
        return np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])

    def matrix(self, theta):
        ones = ops.ones_like(theta[:, :1])
        return ops.reshape(ops.concatenate([theta, ones], axis=-1), (-1, 3, 3))


class Affine3D(Transform):
    """Volumes: the 3x4 matrix, row-major, mapping output `(x, y, z, 1)` to
    input `(x, y, z)`, as PyTorch's 5-D `affine_grid`."""

    name, num_params = "affine3d", 12
    spatial_dims = 3

    def identity(self):
        return np.eye(3, 4).reshape(-1)

    def grid(self, theta, size, align_corners=False):
        """The sampling grid `(B, D_out, H_out, W_out, 3)` of theta."""
        return grids.affine_grid_3d(
            self.check_theta(theta), size, align_corners
        )


class ThinPlateSpline(Transform):
    """`2K` parameters: the input point `(x, y)` each control point maps to.

    Args:
        control_points: `(K, 2)` array; defaults to a regular lattice of
            `num_control_points` points.
        num_control_points: int, a perfect square. Defaults to 16 (the
            paper's 4x4).
    """

    name = "tps"

    def __init__(self, control_points=None, num_control_points=16):
        if control_points is None:
            control_points = tps.regular_control_points(num_control_points)
        self.control_points = tps.check_control_points(control_points)
        self.num_params = 2 * len(self.control_points)

    def identity(self):
        return self.control_points.ravel().copy()

    def grid(self, theta, size, align_corners=False):
        return tps.tps_grid(
            self.check_theta(theta), size, self.control_points, align_corners
        )


_REGISTRY: dict[str, Transform] = {}


def register(transform, name=None):
    """Registers a `Transform` instance under `name` (default its own).

    Raises:
        ValueError: if it is not a `Transform` or the name is taken.
    """
    if not isinstance(transform, Transform):
        raise ValueError(
            "`transform` must be a keras_stn.ops.transforms.Transform "
            f"instance. Received: transform={transform!r}"
        )
    name = (name or transform.name or "").lower()
    if not name or name in _REGISTRY:
        raise ValueError(
            "`name` must be a new, non-empty transform name. Received: "
            f"name={name!r} (taken: {sorted(_REGISTRY)})"
        )
    _REGISTRY[name] = transform
    return transform


def names():
    """The registered family names, sorted."""
    return sorted(_REGISTRY)


def check_name(transform, name="transform"):
    """Returns `transform` if it names a registered family, else raises.

    A layer keeps the family's name (a str serializes), not the object.

    Raises:
        ValueError: if `transform` is not a str, or names no registered
            family (the message lists them).
    """
    if not isinstance(transform, str):
        raise ValueError(
            f"`{name}` must be a registered family name (str); register a "
            "custom Transform with keras_stn.ops.transforms.register. "
            f"Received: {name}={transform!r}"
        )
    get(transform)
    return transform


def get(identifier):
    """Returns the `Transform` for a name (case-insensitive) or instance.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if isinstance(identifier, Transform):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _REGISTRY:
        return _REGISTRY[identifier.lower()]
    raise ValueError(
        f"`transform` must be one of {names()} or a Transform instance. "
        f"Received: transform={identifier!r}"
    )


for _family in (
    Translation(),
    Rigid(),
    Similarity(),
    Attention(),
    Affine(),
    Projective(),
    ThinPlateSpline(),
    Affine3D(),
):
    register(_family)


def grid_for(
    transform: "str | Transform",
    theta: types.TensorLike,
    size: types.Size,
    align_corners: bool = False,
) -> types.Tensor:
    """The sampling grid of any family's parameters.

    Args:
        transform: a registered family name or a `Transform`.
        theta: float tensor `(B, P)`, P the family's `num_params`.
        size: `(H_out, W_out)`.
        align_corners: bool. Defaults to `False`.
    Returns:
        Tensor `(B, H_out, W_out, 2)`.
    Raises:
        ValueError: unknown family, or theta of the wrong size for it.

    Example:
    >>> import numpy as np
    >>> theta = np.array([[0.5, 0.0, 0.0]], dtype="float32")  # zoom 2x
    >>> ops.convert_to_numpy(grid_for("attention", theta, (1, 2)))[0, 0]
    array([[-0.25,  0.  ],
           [ 0.25,  0.  ]], dtype=float32)
    """
    return get(transform).grid(theta, size, align_corners)

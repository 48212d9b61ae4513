"""The paper's random distortions of MNIST digits: R, RTS, P and E.

Jaderberg et al., 2015 (https://arxiv.org/abs/1506.02025), section 4.1:
- `Rotation` (R): turned by an angle uniform in [-90, 90] degrees, 28x28.
- `RotationScaleTranslation` (RTS): turned by [-45, 45] degrees, scaled by
  [0.7, 1.2] and placed at a uniformly random position of a 42x42 canvas.
- `ProjectiveWarp` (P): scaled by [0.75, 1.0] about the centre, then each
  of the four image corners moved by Gaussian noise of sigma 5 pixels, the
  homography through the moved corners, 28x28.
- `ElasticWarp` (E): a thin-plate spline through a regular 4x4 lattice of
  control points (16, the paper's TPS lattice, spanning the image), each
  moved by Gaussian noise of sigma 1.5 pixels, 28x28.

The one definition of each distortion, in three steps: `draw(rng, count)`
draws a batch's parameters with NumPy (a dict of arrays), `inputs(params)`
turns them into the warp's host inputs (thetas, float32 NumPy), and
`apply(images, *inputs)` warps on the backend's device with
`keras_stn.ops` (a grid and one bilinear sampling call, `align_corners=
False`, zeros outside; backend ops only, so it runs inside tf.data and
compiles as one program). `warp(images, params)` does the last two.
Convention: as `placement` (pixels `(x, y)` with y down, degrees clockwise
as displayed, theta output to input).
"""

import numpy as np
from keras import ops

from keras_stn import ops as stn_ops
from keras_stn.experiments.data import placement
from keras_stn.utils import argument_validation

DIGIT_SIZE = 28


def unit_images(digits):
    """uint8 digits `(B, H, W)` (NumPy or tensor) to a float32 backend
    tensor `(B, H, W, 1)` in `[0, 1]`: sent as bytes, converted on the
    device (a cast, then / 255)."""
    digits = ops.expand_dims(ops.convert_to_tensor(digits), -1)
    return ops.cast(digits, "float32") / 255.0


def clip_unit(images):
    """Clips to `[0, 1]`: bilinear weights can sum to 1 + 1 ulp."""
    return ops.clip(images, 0.0, 1.0)


class Distortion:
    """A distortion: `draw` (NumPy) -> `inputs` (NumPy arrays, on the host)
    -> `apply` (backend ops only, so it compiles as one program).

    Attributes:
        input_size: int `D`, the digits' side.
        output_size: int `S`, the side of the images it returns.
    """

    input_size = output_size = DIGIT_SIZE

    def inputs(self, params):
        """The device program's inputs: a tuple of NumPy arrays."""
        return (self.theta(params),)

    def apply(self, images, theta):
        """Samples float `images` `(B, D, D, C)` through the `(B, ...)`
        theta: bilinear, `align_corners=False`, zeros outside. Returns a
        float32 tensor `(B, S, S, C)`."""
        return stn_ops.sample(images, self.grid(theta))

    def warp(self, images, params):
        """Warps a batch with `draw`'s parameters: float tensor
        `(B, D, D, C)` -> `(B, S, S, C)`."""
        return self.apply(images, *self.inputs(params))

    def grid(self, theta):
        size = (self.output_size, self.output_size)
        return stn_ops.affine_grid(theta, size)


class Rotation(Distortion):
    """R: turned by `angle_range` degrees.

    Parameters drawn: `angle` float32 `(B,)`, degrees.
    """

    def __init__(self, angle_range=(-90.0, 90.0)):
        self.angle_range = argument_validation.check_range(
            angle_range, "angle_range"
        )

    def draw(self, rng, count):
        """One batch's parameters: a dict of NumPy arrays, leading `count`."""
        return {"angle": uniform(rng, self.angle_range, (count,))}

    def theta(self, params):
        """The `(B, 2, 3)` affine matrices of a batch's parameters."""
        count = len(params["angle"])
        return placement.similarity_matrix(
            params["angle"],
            np.ones(count),
            np.zeros((count, 2)),
            self.input_size,
            self.output_size,
        )


class RotationScaleTranslation(Rotation):
    """RTS: turned, scaled and placed on a canvas.

    Angle and scale uniform in their ranges; the centre uniform such that
    the scaled frame stays on the canvas: `position` uniform in
    `[-m, m]^2`, `m = (S - 28 * scale) / 2`.
    Parameters drawn: `angle` (degrees), `scale` float32 `(B,)`;
    `position` float32 `(B, 2)`, pixels `(x, y)` from the canvas centre.
    """

    def __init__(
        self, angle_range=(-45.0, 45.0), scale_range=(0.7, 1.2), canvas_size=42
    ):
        super().__init__(angle_range)
        self.scale_range = argument_validation.check_range(
            scale_range, "scale_range", positive=True
        )
        self.output_size = argument_validation.check_positive_int(
            canvas_size, "canvas_size"
        )
        if self.output_size < self.input_size * self.scale_range[1]:
            raise ValueError(
                "`canvas_size` must hold the largest scaled digit, "
                f">= {self.input_size} * scale_range[1] = "
                f"{self.input_size * self.scale_range[1]:g}. Received: "
                f"canvas_size={canvas_size!r}, scale_range={scale_range!r}"
            )

    def draw(self, rng, count):
        angle = uniform(rng, self.angle_range, (count,))
        scale = uniform(rng, self.scale_range, (count,))
        margin = (self.output_size - self.input_size * scale) / 2.0
        unit = uniform(rng, (-1.0, 1.0), (count, 2))
        position = (unit * margin[:, None]).astype(np.float32)
        return {"angle": angle, "scale": scale, "position": position}

    def theta(self, params):
        return placement.similarity_matrix(
            params["angle"],
            params["scale"],
            params["position"],
            self.input_size,
            self.output_size,
        )


class ProjectiveWarp(Distortion):
    """P: scaled about the centre, then
    the corners moved by Gaussian noise of `corner_sigma` pixels.

    Parameters drawn: `scale` float32 `(B,)`; `corners` float32
    `(B, 4, 2)`, the corners' noise in pixels `(x, y)` (order `CORNERS`).
    """

    def __init__(self, scale_range=(0.75, 1.0), corner_sigma=5.0):
        self.scale_range = argument_validation.check_range(
            scale_range, "scale_range", positive=True
        )
        self.corner_sigma = argument_validation.check_non_negative_float(
            corner_sigma, "corner_sigma"
        )

    def draw(self, rng, count):
        scale = uniform(rng, self.scale_range, (count,))
        noise = rng.standard_normal((count, 4, 2)) * self.corner_sigma
        return {"scale": scale, "corners": noise.astype(np.float32)}

    def theta(self, params):
        """The `(B, 8)` projective theta of a batch's parameters."""
        # The corners in float32, as `distortions.ProjectiveWarp` computes
        # them: a strong warp magnifies any difference in theta.
        scale = np.asarray(params["scale"], np.float32)[:, None, None]
        noise = np.asarray(params["corners"], np.float32)
        step = np.float32(2.0 / self.input_size)
        return placement.homography_theta(
            scale * placement.CORNERS.astype(np.float32) + noise * step
        )

    def grid(self, theta):
        size = (self.output_size, self.output_size)
        return stn_ops.projective_grid(theta, size)


class ElasticWarp(Distortion):
    """E: a thin-plate spline through a
    regular `n x n` lattice spanning the image, each point's input moved by
    Gaussian noise of `control_sigma` pixels.

    Parameters drawn: `displacement` float32 `(B, K, 2)`, pixels `(x, y)`.
    """

    def __init__(self, control_sigma=1.5, num_control_points=16):
        self.control_sigma = argument_validation.check_non_negative_float(
            control_sigma, "control_sigma"
        )
        side = argument_validation.check_positive_int(
            num_control_points, "num_control_points"
        )
        side = int(round(side**0.5))
        if side < 2 or side * side != num_control_points:
            raise ValueError(
                "`num_control_points` must be a perfect square >= 4 (an "
                "n x n lattice). Received: "
                f"num_control_points={num_control_points!r}"
            )
        self.num_control_points = int(num_control_points)
        self.control_points = stn_ops.regular_control_points(
            self.num_control_points
        )

    def draw(self, rng, count):
        shape = (count, self.num_control_points, 2)
        noise = rng.standard_normal(shape) * self.control_sigma
        return {"displacement": noise.astype(np.float32)}

    def theta(self, params):
        """The `(B, 2K)` TPS theta of a batch's parameters."""
        # float32, as `distortions.ElasticWarp` computes it.
        noise = np.asarray(params["displacement"], np.float32)
        control = self.control_points.astype(np.float32)
        points = control + noise * np.float32(2.0 / self.input_size)
        return points.reshape(len(points), -1)

    def grid(self, theta):
        size = (self.output_size, self.output_size)
        return stn_ops.tps_grid(theta, size, self.control_points)


def uniform(rng, bounds, shape):
    """float32 uniform on `[low, high)`; exactly `low` when they are equal."""
    low, high = bounds
    return rng.uniform(low, high, shape).astype(np.float32)

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

Each distortion draws its parameters per example from a stateless seed
(`draw`), so an example's distortion depends on its seed alone, and warps a
whole batch with one `keras_stn.ops` grid and one bilinear sampling call
(`warp`). Calling it on one image does both and returns the parameters:
`image, params = Rotation()(image, seed)`.
Convention: as `placement` (pixels `(x, y)` with y down, degrees clockwise
as displayed, theta output to input, `align_corners=False`, zeros outside).
"""

import abc

import numpy as np
import tensorflow as tf

from keras_stn.utils import argument_validation
from keras_stn.experiments.data import placement
from keras_stn.ops import sampling
from keras_stn.ops import transforms

DIGIT_SIZE = 28

# The image's outer corners (x, y), normalised: top-left, top-right,
# bottom-right, bottom-left.
CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


def _uniform(seed, low, high, shape=()):
    """float32 uniform on `[low, high)`; exactly `low` when they are equal."""
    return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high)


class Distortion(abc.ABC):
    """A random warp of square digits: per-example draws, batched warps.

    Attributes:
        input_size: int, the side `D` of the images it warps.
        output_size: int, the side `S` of the images it returns.
    """

    input_size = DIGIT_SIZE
    output_size = DIGIT_SIZE

    @abc.abstractmethod
    def draw(self, seed):
        """Draws one example's parameters.

        Args:
            seed: int tensor `(2,)`, a stateless seed.
        Returns:
            A dict of float32 tensors, one example's parameters.
        """

    @abc.abstractmethod
    def warp(self, images, params):
        """Warps a batch.

        Args:
            images: float tensor `(B, D, D, C)`.
            params: dict of `draw`'s tensors, batched (leading `B`).
        Returns:
            float32 tensor `(B, S, S, C)`.
        """

    def __call__(self, image, seed):
        """Draws and warps one image.

        Args:
            image: float tensor `(D, D, C)`.
            seed: int tensor `(2,)`.
        Returns:
            `(image, params)`: float32 `(S, S, C)` and `draw`'s dict.
        """
        params = self.draw(seed)
        batched = {name: value[None] for name, value in params.items()}
        image = tf.convert_to_tensor(image, tf.float32)
        return self.warp(image[None], batched)[0], params


class Rotation(Distortion):
    """R: a rotation about the centre by an angle uniform in `angle_range`.

    Args:
        angle_range: `(low, high)` degrees. Defaults to `(-90, 90)`.
    Parameters drawn:
        `angle`: float32 scalar, degrees (clockwise as displayed).

    Example:
    >>> import numpy as np
    >>> image = np.zeros((28, 28, 1), "float32")
    >>> out, params = Rotation()(image, seed=[1, 2])
    >>> out.shape, -90 <= float(params["angle"]) <= 90
    (TensorShape([28, 28, 1]), True)
    """

    def __init__(self, angle_range=(-90.0, 90.0)):
        self.angle_range = argument_validation.check_range(
            angle_range, "angle_range"
        )

    def draw(self, seed):
        return {"angle": _uniform(seed, *self.angle_range)}

    def warp(self, images, params):
        angle = params["angle"]
        batch = tf.shape(angle)[0]
        return placement.warp_similarity(
            images,
            angle,
            tf.ones([batch]),
            tf.zeros([batch, 2]),
            self.output_size,
        )


class RotationScaleTranslation(Distortion):
    """RTS: turned, scaled and placed at a random position of a canvas.

    The angle and scale are uniform in their ranges; then the digit's centre
    is placed uniformly at random such that its scaled `D x D` frame stays
    inside the canvas: `position` uniform in `[-m, m]^2` pixels from the
    canvas centre, `m = (S - D * scale) / 2` (the frame's corners may leave
    the canvas when it is turned; MNIST's are blank).

    Args:
        angle_range: `(low, high)` degrees. Defaults to `(-45, 45)`.
        scale_range: `(low, high)`, low > 0. Defaults to `(0.7, 1.2)`.
        canvas_size: int `S >= D * scale_range[1]`. Defaults to 42.
    Parameters drawn:
        `angle` (degrees), `scale`: float32 scalars; `position`: float32
        `(2,)`, pixels `(x, y)` of the digit's centre from the canvas'.
    """

    def __init__(
        self, angle_range=(-45.0, 45.0), scale_range=(0.7, 1.2), canvas_size=42
    ):
        self.angle_range = argument_validation.check_range(
            angle_range, "angle_range"
        )
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

    def draw(self, seed):
        keys = tf.random.experimental.stateless_split(seed, 3)
        angle = _uniform(keys[0], *self.angle_range)
        scale = _uniform(keys[1], *self.scale_range)
        margin = (self.output_size - self.input_size * scale) / 2.0
        unit = _uniform(keys[2], -1.0, 1.0, shape=[2])
        return {"angle": angle, "scale": scale, "position": unit * margin}

    def warp(self, images, params):
        return placement.warp_similarity(
            images,
            params["angle"],
            params["scale"],
            params["position"],
            self.output_size,
        )


def homography_theta(targets, sources=CORNERS):
    """The projective theta that maps four output points to input points.

    Solves the 8x8 linear system of `u = (h0 x + h1 y + h2) / (h6 x + h7 y
    + 1)`, `v = (h3 x + h4 y + h5) / (h6 x + h7 y + 1)` for each example,
    in float64.

    Args:
        targets: float tensor `(B, 4, 2)`, output points `(x, y)`,
            normalised.
        sources: array `(4, 2)`, the input points they sample. Defaults to
            the image's corners, `CORNERS`.
    Returns:
        float32 tensor `(B, 8)`, the registered `"projective"` family's
        theta (row-major 3x3, ninth entry 1).
    """
    targets = tf.cast(targets, tf.float64)
    x, y = targets[..., 0], targets[..., 1]
    sources = tf.cast(sources, tf.float64)
    u = tf.broadcast_to(sources[:, 0], tf.shape(x))
    v = tf.broadcast_to(sources[:, 1], tf.shape(x))
    zero, one = tf.zeros_like(x), tf.ones_like(x)
    rows_u = tf.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = tf.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    system = tf.concat([rows_u, rows_v], axis=1)
    rhs = tf.concat([u, v], axis=1)[..., None]
    return tf.cast(tf.linalg.solve(system, rhs)[..., 0], tf.float32)


class ProjectiveWarp(Distortion):
    """P: a scale about the centre, then a homography through noisy corners.

    The image's four outer corners go to `scale * corner + noise` (noise
    Gaussian, `corner_sigma` pixels per coordinate); the output is the
    homography through those four correspondences.

    Args:
        scale_range: `(low, high)`, low > 0. Defaults to `(0.75, 1.0)`.
        corner_sigma: float >= 0, pixels. Defaults to 5.
    Parameters drawn:
        `scale`: float32 scalar; `corners`: float32 `(4, 2)`, the corners'
        noise in pixels `(x, y)` (order: `CORNERS`).
    """

    def __init__(self, scale_range=(0.75, 1.0), corner_sigma=5.0):
        self.scale_range = argument_validation.check_range(
            scale_range, "scale_range", positive=True
        )
        self.corner_sigma = argument_validation.check_non_negative_float(
            corner_sigma, "corner_sigma"
        )

    def draw(self, seed):
        keys = tf.random.experimental.stateless_split(seed, 2)
        scale = _uniform(keys[0], *self.scale_range)
        noise = tf.random.stateless_normal([4, 2], keys[1]) * self.corner_sigma
        return {"scale": scale, "corners": noise}

    def theta(self, params):
        """The `(B, 8)` projective theta of batched parameters."""
        corners = tf.constant(CORNERS, tf.float32)
        scale = params["scale"][:, None, None]
        targets = scale * corners + params["corners"] * (2.0 / self.input_size)
        return homography_theta(targets)

    def warp(self, images, params):
        size = (self.output_size, self.output_size)
        grid = transforms.grid_for("projective", self.theta(params), size)
        return sampling.sample(images, grid)


class ElasticWarp(Distortion):
    """E: a thin-plate spline through a randomly moved regular lattice.

    Output control point `c_k` of a regular `n x n` lattice spanning the
    image (`keras_stn.ops.regular_control_points`) samples the input at
    `c_k + noise_k`, noise Gaussian with `control_sigma` pixels per
    coordinate; the spline interpolates between them.

    Args:
        control_sigma: float >= 0, pixels. Defaults to 1.5.
        num_control_points: int, a perfect square >= 4. Defaults to 16 (a
            4x4 lattice, the paper's TPS lattice).
    Parameters drawn:
        `displacement`: float32 `(K, 2)`, each control point's noise in
        pixels `(x, y)`.
    """

    def __init__(self, control_sigma=1.5, num_control_points=16):
        self.control_sigma = argument_validation.check_non_negative_float(
            control_sigma, "control_sigma"
        )
        side = int(round(float(num_control_points) ** 0.5))
        if (
            isinstance(num_control_points, bool)
            or not isinstance(num_control_points, int)
            or side < 2
            or side * side != num_control_points
        ):
            raise ValueError(
                "`num_control_points` must be a perfect square >= 4 (an "
                "n x n lattice). Received: "
                f"num_control_points={num_control_points!r}"
            )
        self.num_control_points = num_control_points
        self.transform = transforms.ThinPlateSpline(
            num_control_points=num_control_points
        )

    def draw(self, seed):
        shape = [self.num_control_points, 2]
        noise = tf.random.stateless_normal(shape, seed) * self.control_sigma
        return {"displacement": noise}

    def theta(self, params):
        """The `(B, 2K)` TPS theta of batched parameters."""
        control = tf.constant(self.transform.control_points, tf.float32)
        points = control + params["displacement"] * (2.0 / self.input_size)
        return tf.reshape(points, (-1, 2 * self.num_control_points))

    def warp(self, images, params):
        size = (self.output_size, self.output_size)
        grid = transforms.grid_for(self.transform, self.theta(params), size)
        return sampling.sample(images, grid)

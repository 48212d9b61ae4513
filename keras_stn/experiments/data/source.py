"""The paper's MNIST sets as `keras.utils.PyDataset`s: any backend, no
TensorFlow.

- `DistortedMNIST(variant, ...)`: R, RTS, P, E and TC, as `distorted_mnist`.
- `MNISTAddition(...)`: two RTS digits in two channels, label their sum,
  as `mnist_addition`.
- `TwoDigitCanvas(...)`: two upright digits on one canvas, with their
  boxes, as `two_digit_canvas`.

Same distributions, parameters and conventions as the tf.data pipelines
(`distortions`, `clutter`, `placement`, `two_digit`): MNIST read with NumPy
(`arrays`, in tfds' order, so splits and slices are the same digits),
parameters drawn with NumPy per batch, and the warp run on the backend's
device with the package's own ops (`keras_stn.ops.affine_grid`,
`projective_grid`, `tps_grid`, `sample`: bilinear, `align_corners=False`,
zeros outside), so a GPU does the heavy work. Images are float32 in
`[0, 1]`. The random streams are NumPy's, not TensorFlow's: an example's
distortion differs from the tf.data pipeline's, its distribution does not.

Determinism: batch `b` of epoch `e` draws its parameters from a NumPy
generator seeded by `(seed, set, e, b)` when training, by `(seed, set, b)`
otherwise; the training order of epoch `e` is a permutation seeded by
`(seed, set, e)`, the evaluation order the split's. So a test split gives
the same batches on every call and machine (with the same NumPy), and
training sees fresh distortions every epoch.

Numbered epochs: a training source holds the epochs `initial_epoch`,
`initial_epoch + 1`, ... one after another (to `epochs - 1`, or endless
with `epochs=None`); item `i` is batch `i % steps_per_epoch` of epoch
`initial_epoch + i // steps_per_epoch`, whatever was asked before. A run
resumed at epoch `e` (`initial_epoch=e`) sees exactly what an
uninterrupted run sees from its epoch `e` on. Give `fit` the source's
`steps_per_epoch` (one iterator then runs through the epochs) and
`shuffle=False` (else Keras reorders the items with an unseeded shuffle of
its own; the source shuffles by its seed). The epoch is not read from
Keras' epoch callbacks: Keras 3 calls them around its first, symbolic
build and before training too, so they do not count epochs.
Convention: as `placement` (pixels `(x, y)` with y down, degrees clockwise
as displayed, theta output to input).

Example (with the files at `manual_dir`):
    train = DistortedMNIST("RTS", "train", seed=1, epochs=10,
                           initial_epoch=0, manual_dir="../shared/data/mnist")
    model.fit(train, epochs=10, initial_epoch=0, shuffle=False,
              steps_per_epoch=train.steps_per_epoch)
"""

import inspect
import math
import zlib

import keras
import numpy as np
from keras import ops

from keras_stn import ops as stn_ops
from keras_stn.experiments.data import arrays
from keras_stn.utils import argument_validation

DIGIT_SIZE = 28
# The image's outer corners (x, y), normalised: top-left, top-right,
# bottom-right, bottom-left (as `distortions.CORNERS`).
CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
# Streams of a source's generators: the training order, a training batch,
# an evaluation batch. Every key has the same length, so no two collide.
_ORDER, _TRAIN, _EVAL = 0, 1, 2
_WORD = 2**32


def generator(seed, tag, stream, epoch, batch):
    """A NumPy generator that is a function of its arguments alone.

    Args:
        seed: int (any sign, taken modulo 2**64).
        tag: int in `[0, 2**32)`, the set and base split.
        stream, epoch, batch: ints in `[0, 2**32)`.
    Returns:
        `np.random.Generator` (PCG64 from a `SeedSequence` of the words).
    """
    seed %= _WORD * _WORD
    words = [seed % _WORD, seed // _WORD, tag, stream, epoch, batch]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


# NumPy geometry: the float64 thetas of `placement` and `distortions`. ----


def similarity_matrix(angle, scale, position, input_size, output_size):
    """The 2x3 matrices that put turned, scaled inputs on a canvas.

    As `placement.similarity_theta` (the input's pixel `p` from its centre
    lands at `scale * R(angle) p + position` from the canvas centre), as
    the affine matrices of the `"similarity"` family.

    Args:
        angle: array `(B,)`, degrees, clockwise as displayed.
        scale: array `(B,)`, > 0.
        position: array `(B, 2)`, pixels `(x, y)`.
        input_size, output_size: ints `D`, `S`.
    Returns:
        float32 NumPy array `(B, 2, 3)`, output to input.
    """
    radians = -np.asarray(angle, np.float64) * (math.pi / 180.0)
    scale = np.asarray(scale, np.float64)
    position = np.asarray(position, np.float64)
    cos, sin = np.cos(radians), np.sin(radians)
    zoom = output_size / (input_size * scale)
    shift = -2.0 / (input_size * scale)
    tx = shift * (cos * position[:, 0] - sin * position[:, 1])
    ty = shift * (sin * position[:, 0] + cos * position[:, 1])
    rows = [
        [zoom * cos, -zoom * sin, tx],
        [zoom * sin, zoom * cos, ty],
    ]
    return np.stack([np.stack(row, -1) for row in rows], -2).astype(np.float32)


def homography_theta(targets, sources=CORNERS):
    """The projective theta taking four output points to input points, as
    `distortions.homography_theta` (an 8x8 solve per example, float64).

    Args:
        targets: array `(B, 4, 2)`, output points `(x, y)`, normalised.
        sources: array `(4, 2)`. Defaults to the corners, `CORNERS`.
    Returns:
        float32 NumPy array `(B, 8)`, row-major 3x3, ninth entry 1.
    """
    targets = np.asarray(targets, np.float64)
    x, y = targets[..., 0], targets[..., 1]
    u = np.broadcast_to(sources[:, 0], x.shape)
    v = np.broadcast_to(sources[:, 1], x.shape)
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_u = np.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = np.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    system = np.concatenate([rows_u, rows_v], axis=1)
    rhs = np.concatenate([u, v], axis=1)[..., None]
    return np.linalg.solve(system, rhs)[..., 0].astype(np.float32)


def uniform_position(rng, num_positions, shape):
    """Top-left pixels `(x, y)` uniform on the integers `[0, n)^2`.

    Returns:
        int32 NumPy array `shape + (2,)`.
    """
    return rng.integers(0, num_positions, (*shape, 2)).astype(np.int32)


def uniform_position_outside(rng, num_positions, low, high, shape):
    """Top-left pixels uniform on `[0, n)^2` outside a rectangle, as
    `placement.uniform_position_outside`: the `k`-th allowed position in
    row-major order, `k` uniform on their count (exact, no rejection).

    Args:
        rng: `np.random.Generator`.
        num_positions: int `n`.
        low, high: int arrays broadcastable to `shape + (2,)`, the
            forbidden `x` and `y` ranges, inclusive (clipped to the canvas).
        shape: tuple, how many positions.
    Returns:
        int32 NumPy array `shape + (2,)`.
    """
    n = num_positions
    low = np.clip(np.asarray(low, np.int64), 0, n)
    high = np.clip(np.asarray(high, np.int64), -1, n - 1)
    count_xy = np.maximum(high - low + 1, 0)  # forbidden values per axis
    x_low, y_low = low[..., 0], low[..., 1]
    x_count, y_count = count_xy[..., 0], count_xy[..., 1]
    row_width = np.maximum(n - x_count, 1)  # allowed x in a band row
    before = y_low * n  # allowed positions in the rows above the band
    band = y_count * (n - x_count)
    total = np.broadcast_to(n * n - x_count * y_count, shape)
    k = rng.integers(0, total)
    k_band = k - before
    x_band = k_band % row_width
    x_band = np.where(x_band >= x_low, x_band + x_count, x_band)
    y_band = y_low + k_band // row_width
    k_below = k - before - band
    y_below = y_low + y_count + k_below // n
    in_above, in_band = k < before, k < before + band
    x = np.where(in_above, k % n, np.where(in_band, x_band, k_below % n))
    y = np.where(in_above, k // n, np.where(in_band, y_band, y_below))
    return np.stack([x, y], axis=-1).astype(np.int32)


def boxes(top_left, size, canvas_size):
    """Normalised boxes `(y_min, x_min, y_max, x_max)` of placed squares,
    as `placement.boxes` (fractions of the side, max exclusive).

    Returns:
        float32 NumPy array `top_left.shape[:-1] + (4,)`.
    """
    top_left = np.asarray(top_left, np.float32)
    x, y = top_left[..., 0], top_left[..., 1]
    corners = np.stack([y, x, y + size, x + size], axis=-1)
    return corners / np.float32(canvas_size)


# Warps on the backend's device. -------------------------------------------


def compiled(function):
    """`function` as one compiled program where that pays: on JAX,
    `jax.jit` (one XLA program per batch shape, instead of one dispatch and
    one compilation per op); as is elsewhere (TensorFlow's samplers compile
    themselves with XLA, PyTorch runs eagerly)."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    return function


def unit_images(digits):
    """uint8 digits `(B, H, W)` (NumPy or tensor) to a float32 backend
    tensor `(B, H, W, 1)` in `[0, 1]`: sent as bytes, converted on the
    device, as `to_unit_float` (a cast, then / 255)."""
    digits = ops.expand_dims(ops.convert_to_tensor(digits), -1)
    return ops.cast(digits, "float32") / 255.0


def placement_matrix(top_left, input_size, canvas_size):
    """The 2x3 matrices that paste inputs upright and unscaled with their
    top-left pixel at `top_left` (int `(B, 2)`, `(x, y)`), as
    `placement.place`.

    Returns:
        float32 NumPy array `(B, 2, 3)`.
    """
    position = np.asarray(top_left, np.float64)
    position = position + (input_size - canvas_size) / 2.0
    count = len(position)
    return similarity_matrix(
        np.zeros(count), np.ones(count), position, input_size, canvas_size
    )


def place(images, top_left, canvas_size):
    """Pastes `images` `(B, D, D, C)` at `top_left` on an `S x S` canvas
    (see `placement_matrix`); zeros elsewhere."""
    theta = placement_matrix(top_left, images.shape[1], canvas_size)
    grid = stn_ops.affine_grid(theta, (canvas_size, canvas_size))
    return stn_ops.sample(images, grid)


# The distortions: NumPy draws per batch, one backend warp per batch. -----


class _Warp:
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


class Rotation(_Warp):
    """R, as `distortions.Rotation`: turned by `angle_range` degrees.

    Parameters drawn: `angle` float32 `(B,)`, degrees.
    """

    def __init__(self, angle_range=(-90.0, 90.0)):
        self.angle_range = argument_validation.check_range(
            angle_range, "angle_range"
        )

    def draw(self, rng, count):
        """One batch's parameters: a dict of NumPy arrays, leading `count`."""
        return {"angle": _uniform(rng, self.angle_range, (count,))}

    def theta(self, params):
        """The `(B, 2, 3)` affine matrices of a batch's parameters."""
        count = len(params["angle"])
        return similarity_matrix(
            params["angle"],
            np.ones(count),
            np.zeros((count, 2)),
            self.input_size,
            self.output_size,
        )


class RotationScaleTranslation(Rotation):
    """RTS, as `distortions.RotationScaleTranslation`.

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
        angle = _uniform(rng, self.angle_range, (count,))
        scale = _uniform(rng, self.scale_range, (count,))
        margin = (self.output_size - self.input_size * scale) / 2.0
        unit = _uniform(rng, (-1.0, 1.0), (count, 2))
        position = (unit * margin[:, None]).astype(np.float32)
        return {"angle": angle, "scale": scale, "position": position}

    def theta(self, params):
        return similarity_matrix(
            params["angle"],
            params["scale"],
            params["position"],
            self.input_size,
            self.output_size,
        )


class ProjectiveWarp(_Warp):
    """P, as `distortions.ProjectiveWarp`: scaled about the centre, then
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
        scale = _uniform(rng, self.scale_range, (count,))
        noise = rng.standard_normal((count, 4, 2)) * self.corner_sigma
        return {"scale": scale, "corners": noise.astype(np.float32)}

    def theta(self, params):
        """The `(B, 8)` projective theta of a batch's parameters."""
        # The corners in float32, as `distortions.ProjectiveWarp` computes
        # them: a strong warp magnifies any difference in theta.
        scale = np.asarray(params["scale"], np.float32)[:, None, None]
        noise = np.asarray(params["corners"], np.float32)
        step = np.float32(2.0 / self.input_size)
        return homography_theta(
            scale * CORNERS.astype(np.float32) + noise * step
        )

    def grid(self, theta):
        size = (self.output_size, self.output_size)
        return stn_ops.projective_grid(theta, size)


class ElasticWarp(_Warp):
    """E, as `distortions.ElasticWarp`: a thin-plate spline through a
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


class Clutter(_Warp):
    """TC, as `clutter.Clutter`: the digit at a uniformly random integer
    position of the canvas, `num_patches` crops of other training digits
    pasted by maximum, none on the digit's central `clear_centre` square.

    Parameters drawn: `top_left` int32 `(B, 2)`; `patch_index` int64
    `(B, P)`; `patch_crop` and `patch_top_left` int32 `(B, P, 2)`.
    """

    def __init__(
        self, canvas_size=60, num_patches=6, patch_size=6, clear_centre=8
    ):
        self.canvas_size = argument_validation.check_int_between(
            canvas_size, "canvas_size", DIGIT_SIZE, 2**15, "pixels"
        )
        self.num_patches = argument_validation.check_non_negative_int(
            num_patches, "num_patches"
        )
        self.patch_size = argument_validation.check_int_between(
            patch_size, "patch_size", 1, DIGIT_SIZE
        )
        self.clear_centre = argument_validation.check_int_between(
            clear_centre, "clear_centre", 0, DIGIT_SIZE
        )
        if self.clear_centre % 2:
            raise ValueError(
                f"`clear_centre` must be an even int in [0, {DIGIT_SIZE}]. "
                f"Received: clear_centre={clear_centre!r}"
            )
        self.output_size = self.canvas_size

    def draw(self, rng, count, pool_size, exclude=None):
        """One batch's parameters.

        Args:
            rng: `np.random.Generator`.
            count: int `B`.
            pool_size: int, the training digits patches come from.
            exclude: int array `(B,)`, each digit's own training index
                (patches come from other digits), or None.
        """
        shape = (count, self.num_patches)
        top_left = uniform_position(
            rng, self.canvas_size - DIGIT_SIZE + 1, (count,)
        )
        if exclude is None:
            index = rng.integers(0, pool_size, shape)
        else:
            draws = rng.integers(0, pool_size - 1, shape)
            index = (np.asarray(exclude)[:, None] + 1 + draws) % pool_size
        size = self.patch_size
        low = top_left + (DIGIT_SIZE - self.clear_centre) // 2
        high = low + self.clear_centre
        crop = uniform_position(rng, DIGIT_SIZE - size + 1, shape)
        # A patch at p covers [p, p + size): it meets [low, high) when p is
        # in [low - size + 1, high - 1] (straddles the point when empty).
        position = uniform_position_outside(
            rng,
            self.canvas_size - size + 1,
            (low - size + 1)[:, None],
            (high - 1)[:, None],
            shape,
        )
        return {
            "top_left": top_left,
            "patch_index": index.astype(np.int64),
            "patch_crop": crop,
            "patch_top_left": position,
        }

    def patches(self, pool, params):
        """The patches alone on a blank canvas: uint8 `(B, S, S)`, overlaps
        combined by maximum (integer crops, NumPy)."""
        index = np.asarray(params["patch_index"])
        count = len(index)
        layer = np.zeros((count, self.canvas_size, self.canvas_size), np.uint8)
        if not self.num_patches:
            return layer
        steps = np.arange(self.patch_size)
        crop = np.asarray(params["patch_crop"])
        where = np.asarray(params["patch_top_left"])
        rows = (crop[..., 1:2] + steps)[..., :, None]  # (B, P, size, 1)
        cols = (crop[..., 0:1] + steps)[..., None, :]  # (B, P, 1, size)
        values = pool[index[..., None, None], rows, cols]
        batch = np.arange(count)[:, None, None, None]
        ys = (where[..., 1:2] + steps)[..., :, None]
        xs = (where[..., 0:1] + steps)[..., None, :]
        np.maximum.at(layer, (batch, ys, xs), values)
        return layer

    def inputs(self, params, pool):
        """`(theta, patches)`: the digit's placement and `patches`."""
        theta = placement_matrix(
            params["top_left"], self.input_size, self.canvas_size
        )
        return theta, self.patches(pool, params)

    def apply(self, images, theta, patches):
        """The digits placed by theta, the uint8 patches `(B, S, S)` over
        them by maximum (the canvas stays in `[0, 1]`)."""
        canvas = super().apply(images, theta)
        return ops.maximum(canvas, unit_images(patches))

    def warp(self, images, params, pool):
        """A batch of canvases.

        Args:
            images: float tensor `(B, 28, 28, 1)` in `[0, 1]`.
            params: `draw`'s dict.
            pool: uint8 NumPy array `(N, 28, 28)`, the training digits.
        Returns:
            float32 tensor `(B, S, S, 1)` in `[0, 1]`.
        """
        return self.apply(images, *self.inputs(params, pool))


def _uniform(rng, bounds, shape):
    """float32 uniform on `[low, high)`; exactly `low` when they are equal."""
    low, high = bounds
    return rng.uniform(low, high, shape).astype(np.float32)


_CLASSES = {
    "R": Rotation,
    "RTS": RotationScaleTranslation,
    "P": ProjectiveWarp,
    "E": ElasticWarp,
    "TC": Clutter,
}
VARIANTS = tuple(_CLASSES)


def make_distortion(variant, **options):
    """The distortion of a variant, `options` overriding its defaults.

    Raises:
        ValueError: an unknown variant or option, or a bad option value.
    """
    if not isinstance(variant, str) or variant.upper() not in _CLASSES:
        raise ValueError(
            f"`variant` must be one of {VARIANTS} (case-insensitive). "
            f"Received: variant={variant!r}"
        )
    cls = _CLASSES[variant.upper()]
    allowed = tuple(inspect.signature(cls.__init__).parameters)[1:]
    argument_validation.check_options(
        options, allowed, f"variant {variant.upper()!r}"
    )
    return cls(**options)


# The data sources. ----------------------------------------------------------


class _Source(keras.utils.PyDataset):
    """A split of MNIST in batches, each a function of `(seed, epoch, b)`.

    Subclasses implement `_batch(indices, rng)`, returning the device
    program's NumPy inputs (the uint8 digits first), the labels (NumPy)
    and the parameters, and `_device(digits, *inputs)`, the program (backend
    ops only), returning float32 images in `[0, 1]`.
    """

    def __init__(
        self,
        name,
        split,
        batch_size,
        data_dir,
        manual_dir,
        seed,
        training,
        drop_remainder,
        with_params,
        epochs,
        initial_epoch,
        return_numpy,
        workers,
        max_queue_size,
    ):
        super().__init__(
            workers=argument_validation.check_positive_int(workers, "workers"),
            use_multiprocessing=False,
            max_queue_size=argument_validation.check_positive_int(
                max_queue_size, "max_queue_size"
            ),
        )
        self.batch_size = argument_validation.check_positive_int(
            batch_size, "batch_size"
        )
        self.drop_remainder = argument_validation.check_bool(
            drop_remainder, "drop_remainder"
        )
        self.with_params = argument_validation.check_bool(
            with_params, "with_params"
        )
        self.return_numpy = argument_validation.check_bool(
            return_numpy, "return_numpy"
        )
        self.split = split
        self.base, self.start, self.stop = arrays.split_range(split)
        if training is None:
            training = split.startswith("train")
        self.training = argument_validation.check_bool(training, "training")
        self.epochs = self._check_epochs(epochs, initial_epoch)
        self.initial_epoch = initial_epoch
        seed = argument_validation.check_seed(seed)
        if seed is None:  # as distorted_mnist: fresh when training, else 0
            seed = np.random.SeedSequence().entropy if training else 0
        self.seed = int(seed)
        if self.steps_per_epoch == 0:
            raise ValueError(
                "`batch_size` must be at most the split's size with "
                f"drop_remainder=True. Received: batch_size={batch_size!r}, "
                f"split={split!r} ({self.num_examples} examples)"
            )
        self.images, self.labels = arrays.load_mnist(
            manual_dir, self.base, data_dir
        )
        self.tag = zlib.crc32(f"{name}/{self.base}".encode())
        self._order = (None, None)
        self._program = compiled(self._device)

    def _check_epochs(self, epochs, initial_epoch):
        if epochs is not None and not self.training:
            raise ValueError(
                "`epochs` numbers training epochs: it needs training=True. "
                f"Received: epochs={epochs!r}, training={self.training!r}"
            )
        last = _WORD - 1
        if epochs is not None:
            epochs = argument_validation.check_int_between(
                epochs, "epochs", 1, last, "the epochs' end"
            )
            last = epochs
        argument_validation.check_int_between(
            initial_epoch, "initial_epoch", 0, last, "the first epoch held"
        )
        return epochs

    @property
    def num_examples(self):
        """The number of examples in the split."""
        return self.stop - self.start

    @property
    def steps_per_epoch(self):
        """Batches per epoch: give it to `fit` as `steps_per_epoch`."""
        if self.drop_remainder:
            return self.num_examples // self.batch_size
        return -(-self.num_examples // self.batch_size)

    @property
    def num_batches(self):
        """The batches held, or None for an endless training source."""
        if not self.training:
            return self.steps_per_epoch
        if self.epochs is None:
            return None
        return (self.epochs - self.initial_epoch) * self.steps_per_epoch

    def __len__(self):
        if self.num_batches is None:
            raise TypeError(
                "An endless training source (epochs=None) has no length; "
                f"each epoch is steps_per_epoch={self.steps_per_epoch} items."
            )
        return self.num_batches

    def locate(self, index):
        """The `(epoch, batch)` of item `index` (epoch 0 unless training).

        Raises:
            IndexError: `index` is not one of the items held.
        """
        held = self.num_batches
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or index < 0
            or (held is not None and index >= held)
        ):
            bound = "no upper bound" if held is None else f"< {held}"
            raise IndexError(
                f"`index` must be an int >= 0 and {bound}. Received: "
                f"index={index!r}"
            )
        if not self.training:
            return 0, int(index)
        epoch, batch = divmod(int(index), self.steps_per_epoch)
        return self.initial_epoch + epoch, batch

    def order(self, epoch=0):
        """The base-split indices of an epoch, in the order they are served
        (the split's own order unless training).

        Returns:
            int64 NumPy array `(N,)`.
        """
        if not self.training:
            return np.arange(self.start, self.stop, dtype=np.int64)
        cached_epoch, order = self._order
        if cached_epoch != epoch:
            rng = generator(self.seed, self.tag, _ORDER, epoch, 0)
            order = self.start + rng.permutation(self.num_examples)
            self._order = (epoch, order)
        return order

    def batch_indices(self, epoch, batch):
        """A batch's base-split indices and its parameters' generator.

        Returns:
            `(indices, rng)`: int64 NumPy `(B,)`, `np.random.Generator`.
        """
        step = self.batch_size
        indices = self.order(epoch)[batch * step : (batch + 1) * step]
        if self.training:
            rng = generator(self.seed, self.tag, _TRAIN, epoch, batch)
        else:
            rng = generator(self.seed, self.tag, _EVAL, 0, batch)
        return indices, rng

    def __getitem__(self, index):
        indices, rng = self.batch_indices(*self.locate(index))
        inputs, labels, params = self._batch(indices, rng)
        images = self._program(*inputs)
        if self.return_numpy:
            images = ops.convert_to_numpy(images)
        if self.with_params:
            return images, labels, {"index": indices, **params}
        return images, labels

    def _batch(self, indices, rng):
        raise NotImplementedError

    def _device(self, digits, *inputs):
        raise NotImplementedError

    def _pair(self, indices, rng):
        """`(B, 2)` indices: each digit and a partner drawn uniformly from
        the split's other digits (as `two_digit`)."""
        size = self.num_examples
        draw = rng.integers(0, size - 1, len(indices))
        partner = self.start + (indices - self.start + 1 + draw) % size
        return np.stack([indices, partner], axis=-1)

    def _check_pairs(self):
        if self.num_examples < 2:
            raise ValueError(
                "`split` must hold at least 2 digits to pair them. "
                f"Received: split={self.split!r} ({self.num_examples} digit)"
            )


class DistortedMNIST(_Source):
    """A distorted MNIST set of the paper (R, RTS, P, E, TC), batched.

    The data of `distorted_mnist` (same variants, options, distributions,
    splits and digits) without TensorFlow; see the module docstring for
    the determinism.

    Args:
        variant: str, `"R"`, `"RTS"`, `"P"`, `"E"` or `"TC"`
            (case-insensitive).
        split: str, `"train"`, `"test"`, `"validation"`
            (`"train[50000:]"`) or a slice of one base split in tfds' form
            (`"train[:50000]"`). Defaults to `"train"`.
        batch_size: int. Defaults to 128.
        data_dir: str or None, tfds' data directory, for the default
            `manual_dir` (`<data_dir>/downloads/manual`).
        manual_dir: str or None, the folder holding the four original MNIST
            files; defaults to `$KERAS_STN_MNIST_DIR` (see `arrays`).
        seed: int or None. Defaults to 0. None: a fresh seed for training
            (kept in the `seed` attribute), 0 otherwise.
        training: bool or None: shuffle and draw fresh distortions every
            epoch. Defaults to whether `split` starts with `"train"`.
        drop_remainder: bool, drop a last, smaller batch. Defaults to False.
        with_params: bool, add a third element, a dict of NumPy arrays:
            `index` (the base split's indices) and the distortion's
            parameters (Keras' `fit` would read it as sample weights).
            Defaults to False.
        epochs: int or None, training only: the source holds the epochs
            `initial_epoch .. epochs - 1` (`fit`'s `epochs`); None (the
            default): endless. See Numbered epochs in the module docstring.
        initial_epoch: int in `[0, epochs]`, the first epoch held: `fit`'s
            `initial_epoch` when resuming. Defaults to 0.
        return_numpy: bool, images as NumPy arrays instead of tensors on
            the backend's device. Defaults to False.
        workers, max_queue_size: `keras.utils.PyDataset`'s (threads only).
        **options: the variant's settings (as `distorted_mnist`): R:
            `angle_range`; RTS: `angle_range`, `scale_range`,
            `canvas_size`; P: `scale_range`, `corner_sigma`; E:
            `control_sigma`, `num_control_points`; TC: `canvas_size`,
            `num_patches`, `patch_size`, `clear_centre`.
    Items:
        `(images, labels)`: float32 `(B, S, S, 1)` in `[0, 1]` (a backend
        tensor, or NumPy with `return_numpy`) and int64 NumPy `(B,)`.
        `steps_per_epoch` items per epoch (`ceil(N / batch_size)`, `floor`
        with `drop_remainder`).
    Raises:
        ValueError: a bad argument or option; a corrupt MNIST file.
        FileNotFoundError: MNIST's files are not where they are looked for.
    """

    def __init__(
        self,
        variant,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
        return_numpy=False,
        workers=1,
        max_queue_size=10,
        **options,
    ):
        self.distortion = make_distortion(variant, **options)
        self.variant = variant.upper()
        super().__init__(
            f"distorted_mnist/{self.variant}",
            split,
            batch_size,
            data_dir,
            manual_dir,
            seed,
            training,
            drop_remainder,
            with_params,
            epochs,
            initial_epoch,
            return_numpy,
            workers,
            max_queue_size,
        )
        if self.variant == "TC":
            self.pool = arrays.load_mnist(manual_dir, "train", data_dir)[0]

    def _batch(self, indices, rng):
        count = len(indices)
        if self.variant == "TC":
            exclude = indices if self.base == "train" else None
            pool = self.pool
            params = self.distortion.draw(rng, count, len(pool), exclude)
            inputs = self.distortion.inputs(params, pool)
        else:
            params = self.distortion.draw(rng, count)
            inputs = self.distortion.inputs(params)
        return (self.images[indices], *inputs), self.labels[indices], params

    def _device(self, digits, *inputs):
        images = self.distortion.apply(unit_images(digits), *inputs)
        return _clip_unit(images)


class MNISTAddition(_Source):
    """MNIST addition: two RTS digits in two channels, label their sum.

    The data of `mnist_addition` without TensorFlow: digit `i` of the split
    with a partner drawn uniformly from the split's others, each warped as
    the RTS set in its own channel; 19 classes.

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params, epochs, initial_epoch,
            return_numpy, workers, max_queue_size: as `DistortedMNIST`.
        angle_range, scale_range, canvas_size: the RTS settings. Default to
            `(-45, 45)` degrees, `(0.7, 1.2)` and 42.
    Items:
        `(images, labels)`: float32 `(B, S, S, 2)` in `[0, 1]` (channel k
        holds digit k) and int64 `(B,)` in `[0, 18]`; with `with_params`,
        a dict of `index`, `pair_index` int64 `(B, 2)`, `digit_labels`
        int64 `(B, 2)`, `angle`, `scale` `(B, 2)`, `position` `(B, 2, 2)`.
    """

    def __init__(
        self,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
        return_numpy=False,
        workers=1,
        max_queue_size=10,
        angle_range=(-45.0, 45.0),
        scale_range=(0.7, 1.2),
        canvas_size=42,
    ):
        self.distortion = RotationScaleTranslation(
            angle_range, scale_range, canvas_size
        )
        super().__init__(
            "mnist_addition",
            split,
            batch_size,
            data_dir,
            manual_dir,
            seed,
            training,
            drop_remainder,
            with_params,
            epochs,
            initial_epoch,
            return_numpy,
            workers,
            max_queue_size,
        )
        self._check_pairs()

    def _batch(self, indices, rng):
        pair_index = self._pair(indices, rng)
        count = len(indices)
        flat = self.distortion.draw(rng, 2 * count)
        inputs = (
            self.images[pair_index.reshape(-1)],
            self.distortion.theta(flat),
        )
        digit_labels = self.labels[pair_index]
        params = {
            "pair_index": pair_index,
            "digit_labels": digit_labels,
            "angle": flat["angle"].reshape(count, 2),
            "scale": flat["scale"].reshape(count, 2),
            "position": flat["position"].reshape(count, 2, 2),
        }
        return inputs, digit_labels.sum(axis=-1), params

    def _device(self, digits, theta):
        side = self.distortion.output_size
        warped = self.distortion.apply(unit_images(digits), theta)
        warped = ops.reshape(warped, (-1, 2, side, side))
        return _clip_unit(ops.transpose(warped, (0, 2, 3, 1)))


class TwoDigitCanvas(_Source):
    """Two upright digits at random non-overlapping places of one canvas.

    The data of `two_digit_canvas` without TensorFlow: the first digit's
    top-left pixel uniform on the canvas, the second's uniform where the
    two 28x28 frames do not overlap; pixels copied (integer positions),
    the canvas their sum; the boxes are the frames.

    Args:
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params, epochs, initial_epoch,
            return_numpy, workers, max_queue_size: as `DistortedMNIST`.
        canvas_size: int `S >= 83`. Defaults to 84.
    Items:
        `(images, labels)`: float32 `(B, S, S, 1)` in `[0, 1]` and int64
        `(B, 2)`, the digits' classes in drawing order; with `with_params`,
        a dict of `index`, `pair_index` int64 `(B, 2)`, `top_left` int32
        `(B, 2, 2)` (pixels `(x, y)`) and `boxes` float32 `(B, 2, 4)`,
        normalised `(y_min, x_min, y_max, x_max)`.
    """

    def __init__(
        self,
        split="train",
        batch_size=128,
        data_dir=None,
        manual_dir=None,
        seed=0,
        training=None,
        drop_remainder=False,
        with_params=False,
        epochs=None,
        initial_epoch=0,
        return_numpy=False,
        workers=1,
        max_queue_size=10,
        canvas_size=84,
    ):
        self.canvas_size = argument_validation.check_int_between(
            canvas_size,
            "canvas_size",
            3 * DIGIT_SIZE - 1,
            2**15,
            "two digits always fit side by side from 83",
        )
        super().__init__(
            "two_digit_canvas",
            split,
            batch_size,
            data_dir,
            manual_dir,
            seed,
            training,
            drop_remainder,
            with_params,
            epochs,
            initial_epoch,
            return_numpy,
            workers,
            max_queue_size,
        )
        self._check_pairs()

    def _batch(self, indices, rng):
        pair_index = self._pair(indices, rng)
        count, side = len(indices), self.canvas_size
        positions = side - DIGIT_SIZE + 1
        first = uniform_position(rng, positions, (count,))
        # The frames overlap when |x2 - x1| < 28 and |y2 - y1| < 28.
        second = uniform_position_outside(
            rng,
            positions,
            first - (DIGIT_SIZE - 1),
            first + (DIGIT_SIZE - 1),
            (count,),
        )
        top_left = np.stack([first, second], axis=1)
        theta = placement_matrix(top_left.reshape(-1, 2), DIGIT_SIZE, side)
        params = {
            "pair_index": pair_index,
            "top_left": top_left,
            "boxes": boxes(top_left, DIGIT_SIZE, side),
        }
        digits = self.images[pair_index.reshape(-1)]
        return (digits, theta), self.labels[pair_index], params

    def _device(self, digits, theta):
        side = self.canvas_size
        grid = stn_ops.affine_grid(theta, (side, side))
        placed = stn_ops.sample(unit_images(digits), grid)
        placed = ops.reshape(placed, (-1, 2, side, side, 1))
        return _clip_unit(ops.sum(placed, axis=1))


def _clip_unit(images):
    """Clips to `[0, 1]`: bilinear weights can sum to 1 + 1 ulp."""
    return ops.clip(images, 0.0, 1.0)

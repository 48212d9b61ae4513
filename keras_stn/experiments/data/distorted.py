"""The paper's distorted MNIST sets as one call: R, RTS, P, E and TC."""

import inspect

import tensorflow as tf

from keras_stn.experiments.data import _pipeline
from keras_stn.experiments.data import clutter
from keras_stn.experiments.data import distortions
from keras_stn.experiments.data import mnist
from keras_stn.utils import argument_validation

_CLASSES = {
    "R": distortions.Rotation,
    "RTS": distortions.RotationScaleTranslation,
    "P": distortions.ProjectiveWarp,
    "E": distortions.ElasticWarp,
    "TC": clutter.Clutter,
}
VARIANTS = tuple(_CLASSES)


def _options(cls):
    return tuple(inspect.signature(cls.__init__).parameters)[1:]


def make_distortion(variant, **options):
    """The distortion object of a variant, with `options` overriding its
    defaults (see `distorted_mnist`).

    Raises:
        ValueError: an unknown variant or option, or a bad option value.
    """
    if not isinstance(variant, str) or variant.upper() not in _CLASSES:
        raise ValueError(
            f"`variant` must be one of {VARIANTS} (case-insensitive). "
            f"Received: variant={variant!r}"
        )
    cls = _CLASSES[variant.upper()]
    argument_validation.check_options(
        options, _options(cls), f"variant {variant.upper()!r}"
    )
    return cls(**options)


def distorted_mnist(
    variant,
    split="train",
    batch_size=128,
    data_dir=None,
    manual_dir=None,
    seed=None,
    training=None,
    drop_remainder=False,
    with_params=False,
    epochs=None,
    initial_epoch=0,
    **options,
):
    """A distorted MNIST set of the paper, batched and prefetched.

    Variants (Jaderberg et al., 2015, section 4.1 and appendix; digits
    28x28):
    - `"R"`: rotated by an angle uniform in [-90, 90] degrees; 28x28.
    - `"RTS"`: rotated by [-45, 45] degrees, scaled by [0.7, 1.2], placed at
      a uniformly random position of a 42x42 canvas (the scaled 28x28 frame
      inside it); 42x42.
    - `"P"`: scaled by [0.75, 1.0], then the four corners moved by Gaussian
      noise of sigma 5 pixels (a projective warp); 28x28.
    - `"E"`: a thin-plate spline through a regular 4x4 lattice of 16 control
      points moved by Gaussian noise of sigma 1.5 pixels; 28x28.
    - `"TC"`: the digit at a uniformly random position of a 60x60 canvas
      with 6 random 6x6 patches cut from other random training digits,
      never covering the digit's central 8x8 pixels; 60x60.
    The warps are `keras_stn.ops` grids and bilinear sampling (see
    `distortions`, `clutter`), run per batch inside the pipeline.

    Determinism: each example's parameters come from a stateless seed of
    `(seed, example index)`. With `training=False` (the default for
    `"test"` and `"validation"`) the order is fixed and `seed` defaults to
    0: every call on every machine gives the same batches. With
    `training=True` (the default for `"train"` and its slices) the order is
    reshuffled and fresh distortions are drawn every epoch; a `seed` makes
    that sequence of epochs repeatable.

    Numbered epochs (`epochs`, training with a seed): the dataset holds
    the epochs `initial_epoch .. epochs - 1` one after another, epoch `e`'s
    order and distortions a function of `(seed, e)` alone. Training from
    `initial_epoch=e` sees exactly the batches that epochs `e, e + 1, ...`
    of a run from epoch 0 see: what a resumed run needs. Each epoch is
    `ceil(N / batch_size)` batches (`floor` with `drop_remainder`); pass
    that as `steps_per_epoch` to `fit`, with one iterator for the run.

    Args:
        variant: str, one of `"R"`, `"RTS"`, `"P"`, `"E"`, `"TC"`
            (case-insensitive).
        split: str, `"train"`, `"test"`, `"validation"`
            (`"train[50000:]"`) or a tfds slice of one base split.
            Defaults to `"train"`.
        batch_size: int. Defaults to 128.
        data_dir: str or None, tfds' data directory (default
            `$TFDS_DATA_DIR`, else `~/tensorflow_datasets`).
        manual_dir: str or None, a folder with the four original MNIST
            files, for offline use (default `$KERAS_STN_MNIST_DIR`); see
            `keras_stn.experiments.data.mnist`.
        seed: int or None. Defaults to None.
        training: bool or None, see Determinism. Defaults to None.
        drop_remainder: bool, drop a last, smaller batch. Defaults to False.
        with_params: bool, add a third element with the parameters drawn
            (for inspection; Keras' `fit` would read it as sample weights).
            Defaults to False.
        epochs: int or None, see Numbered epochs; None (the default): one
            pass per iteration, reshuffled every iteration.
        initial_epoch: int in `[0, epochs]`, the first epoch held.
            Defaults to 0.
        **options: the variant's settings, overriding its defaults:
            R: `angle_range`; RTS: `angle_range`, `scale_range`,
            `canvas_size`; P: `scale_range`, `corner_sigma`; E:
            `control_sigma`, `num_control_points`; TC: `canvas_size`,
            `num_patches`, `patch_size`, `clear_centre`.
    Returns:
        A `tf.data.Dataset` of `(images, labels)`: float32 `(B, S, S, 1)` in
        `[0, 1]` and int64 `(B,)`; with `with_params`, also a dict of
        batched parameters: `index` (int64 `(B,)`, the base split's index)
        and the distortion's (`distortions`, `clutter`).
    Raises:
        ValueError: an unknown variant or option, or a malformed argument.
        FileNotFoundError: MNIST is neither prepared, nor in `manual_dir`,
            nor downloadable; the message says where to put the files.
        RuntimeError: Keras does not run on TensorFlow.

    Example (with the files at `manual_dir`):
        ds = distorted_mnist("RTS", split="test", batch_size=256,
                             manual_dir="../shared/data/mnist")
        images, labels = next(iter(ds))  # (256, 42, 42, 1), (256,)
    """
    argument_validation.check_tensorflow_backend("distorted_mnist")
    distortion = make_distortion(variant, **options)
    variant = variant.upper()
    batch_size = argument_validation.check_positive_int(
        batch_size, "batch_size"
    )
    seed = argument_validation.check_seed(seed)
    drop_remainder = argument_validation.check_bool(
        drop_remainder, "drop_remainder"
    )
    with_params = argument_validation.check_bool(with_params, "with_params")
    training = _pipeline.resolve_training(training, str(split))
    if epochs is not None:
        epochs = argument_validation.check_positive_int(epochs, "epochs")
        initial_epoch = argument_validation.check_int_between(
            initial_epoch, "initial_epoch", 0, epochs, "the epochs held"
        )
        if not training or seed is None:
            raise ValueError(
                "`epochs` numbers training epochs, a function of the seed: "
                "it needs training=True and an int seed. Received: "
                f"epochs={epochs!r}, training={training!r}, seed={seed!r}"
            )
    source = mnist.load_split(split, data_dir, manual_dir)
    images = tf.constant(source.images)
    labels = tf.constant(source.labels)
    tag = f"distorted_mnist/{variant}/{source.base}"
    if variant == "TC":
        pool = images
        if source.base != "train":
            pool = tf.constant(
                mnist.load_split("train", data_dir, manual_dir).images
            )
        pool_size = int(pool.shape[0])
        exclude_own = source.base == "train"

        def draw(index, seed):
            exclude = index if exclude_own else tf.constant(-1, tf.int64)
            return distortion.draw(seed, pool_size, exclude)

        def warp(digits, params):
            return distortion.render(digits, pool, params)

    else:

        def draw(index, seed):
            return distortion.draw(seed)

        warp = distortion.warp

    def render(index, params):
        digits = _pipeline.to_unit_float(tf.gather(images, index))
        out = _pipeline.clip_unit(warp(digits, params))
        return out, tf.gather(labels, index), {}

    if epochs is not None:
        return _pipeline.training_epochs(
            initial_epoch,
            epochs,
            source.start,
            source.stop,
            seed,
            tag,
            draw,
            render,
            batch_size,
            drop_remainder,
            with_params,
        )
    seeds = _pipeline.example_seeds(
        source.start, source.stop, training, seed, tag
    )
    return _pipeline.build(
        seeds, draw, render, batch_size, drop_remainder, with_params
    )

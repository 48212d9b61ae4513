"""The paper's distorted MNIST sets: R, RTS, P, E and TC.

`DistortedMNIST(variant, split, ...)` defines the batches (`batches`);
serve them with `source.PyDatasetSource` (any backend) or `tfdata.dataset`
(tf.data, TensorFlow backend): both give the same images.

Variants (Jaderberg et al., 2015, section 4.1 and appendix; digits 28x28):
- `"R"`: rotated by an angle uniform in [-90, 90] degrees; 28x28.
- `"RTS"`: rotated by [-45, 45] degrees, scaled by [0.7, 1.2], placed at a
  uniformly random position of a 42x42 canvas (the scaled 28x28 frame
  inside it); 42x42.
- `"P"`: scaled by [0.75, 1.0], then the four corners moved by Gaussian
  noise of sigma 5 pixels (a projective warp); 28x28.
- `"E"`: a thin-plate spline through a regular 4x4 lattice of 16 control
  points moved by Gaussian noise of sigma 1.5 pixels; 28x28.
- `"TC"`: the digit at a uniformly random position of a 60x60 canvas with 6
  random 6x6 patches cut from other random training digits, never covering
  the digit's central 8x8 pixels; 60x60.

Example (with the files at `manual_dir`):
    test = DistortedMNIST("RTS", "test", 256,
                          manual_dir="../shared/data/mnist")
    images, labels = test.element(0)  # (256, 42, 42, 1), (256,)
"""

import inspect

from keras_stn.experiments.data import batches
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


class DistortedMNIST(batches.Batches):
    """A distorted MNIST set of the paper (R, RTS, P, E, TC), in batches.

    Args:
        variant: str, `"R"`, `"RTS"`, `"P"`, `"E"` or `"TC"`
            (case-insensitive).
        split, batch_size, data_dir, manual_dir, seed, training,
            drop_remainder, with_params, epochs, initial_epoch: as
            `batches.Batches`.
        **options: the variant's settings: R: `angle_range`; RTS:
            `angle_range`, `scale_range`, `canvas_size`; P: `scale_range`,
            `corner_sigma`; E: `control_sigma`, `num_control_points`; TC:
            `canvas_size`, `num_patches`, `patch_size`, `clear_centre`.
    Items:
        `(images, labels)`: float32 `(B, S, S, 1)` in `[0, 1]` and int64
        `(B,)`; with `with_params`, also a dict of `index` and the
        distortion's parameters (`distortions`, `clutter`).
        `steps_per_epoch` items per epoch (`ceil(N / batch_size)`, `floor`
        with `drop_remainder`).
    Raises:
        ValueError: a bad argument or option; a corrupt MNIST file.
        FileNotFoundError: MNIST's files are neither found nor downloaded.
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
        )
        self.pool = None
        if self.variant == "TC":
            self.pool = mnist.load_mnist(manual_dir, "train", data_dir)[0]

    @property
    def image_size(self):
        """int `S`, the side of the images served."""
        return self.distortion.output_size

    def draw(self, indices, rng):
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

    def render(self, digits, *inputs):
        digits = distortions.unit_images(digits)
        images = self.distortion.apply(digits, *inputs)
        return distortions.clip_unit(images)

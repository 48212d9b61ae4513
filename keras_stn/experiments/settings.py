"""The experiments' constants and the one positive-number rule, in one place.

The ground floor of `keras_stn.experiments`: this module imports nothing
but the standard library, so the command line (`keras_stn_cli`) loads it
from its file without importing Keras, and everything else imports it.
"""

import math
import numbers

# MNIST's sizes.
MNIST_TRAIN_EXAMPLES = 60000
MNIST_TEST_EXAMPLES = 10000
# Pictures of more digits than this are unreadable (and slow to draw).
MAX_PICTURE_EXAMPLES = 64
# `keras.utils.set_random_seed` seeds NumPy, which takes 32-bit seeds.
MAX_SEED = 2**32 - 1
# Where a run's distorted digits come from: the tf.data adapter
# (TensorFlow backend) or the `keras.utils.PyDataset` adapter (any
# backend); "auto" takes tf.data on TensorFlow. Both serve the same
# batches (`keras_stn.experiments.data`), so the choice is not part of a
# run's identity.
DATA_SOURCES = ("auto", "tfds", "pydataset")
# The version of the random streams the distortions are drawn from,
# recorded in each run's settings: a run resumes only on the streams it
# started with. 1: the one data stack (NumPy draws per (seed, epoch,
# batch)); runs without it used the two stacks before it.
DATA_STREAM = 1


def positive_float(value, name):
    """`value` as a finite float > 0.

    Args:
        value: a real number, or a str that parses as one (command lines).
        name: the argument's name, for the message.
    Returns:
        float.
    Raises:
        ValueError: naming `name`, the expected form and `value`.
    """
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
    if (
        isinstance(number, bool)
        or not isinstance(number, numbers.Real)
        or not math.isfinite(number)
        or number <= 0
    ):
        raise ValueError(
            f"`{name}` must be a finite number > 0. Received: {name}={value!r}"
        )
    return float(number)

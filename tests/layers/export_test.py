"""SavedModel export, TFLite conversion and tf.distribute of an ST-CNN.

TensorFlow-only features. The export and distribution checks run a fresh
Python process: one that has never imported keras_stn (the exported graph
must run without it), and one whose CPU is split into two logical devices
(that must happen before TensorFlow starts).
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_stn
from tests import test_case

pytest.importorskip(
    "tensorflow", reason="TensorFlow is optional: pip install '.[tensorflow]'"
)

# The graphs users export: samplers compiled with op-level XLA; SavedModel,
# TFLite and tf.distribute are TensorFlow's alone.
pytestmark = [pytest.mark.xla_samplers, pytest.mark.tensorflow_only]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _st_cnn(transform="affine"):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras_stn.SpatialTransformer(transform=transform),
            keras.layers.Conv2D(8, 5, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def _python(script, *args):
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return run.stdout


def _trained(model, images):
    # Move the weights off the identity so the transformer does something.
    labels = np.arange(len(images)) % 10
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(images, labels, epochs=3, batch_size=len(images), verbose=0)
    return model


@pytest.mark.parametrize("transform", ["affine", "tps"])
def test_exported_savedmodel_serves_without_keras_stn(tmp_path, transform):
    images = test_case.rng(0).random((4, 28, 28, 1)).astype("float32")
    model = _trained(_st_cnn(transform), images)
    expected = model.predict(images, verbose=0)
    path = tmp_path / "exported"
    model.export(str(path), verbose=False)
    np.save(tmp_path / "x.npy", images)
    _python(
        """
        import sys
        import numpy as np
        import tensorflow as tf
        loaded = tf.saved_model.load(sys.argv[1])
        served = loaded.serve(np.load(sys.argv[2]))
        np.save(sys.argv[3], served.numpy())
        assert not any(m.startswith("keras_stn") for m in sys.modules)
        """,
        path,
        tmp_path / "x.npy",
        tmp_path / "y.npy",
    )
    test_case.assert_close(np.load(tmp_path / "y.npy"), expected, 1e-6)


def test_tflite_conversion_runs_and_matches(tmp_path):
    import tensorflow as tf

    images = test_case.rng(1).random((1, 28, 28, 1)).astype("float32")
    model = _trained(
        _st_cnn("affine"),
        test_case.rng(2).random((8, 28, 28, 1)).astype("float32"),
    )
    serve = tf.function(lambda x: model(x, training=False))
    concrete = serve.get_concrete_function(
        tf.TensorSpec(images.shape, tf.float32)
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    test_case.assert_close(out, model.predict(images, verbose=0), 1e-5)


def _sampler_tflite(batch, channels):
    """The bare affine sampler (60x60 -> 60x60) converted at `batch`."""
    import tensorflow as tf

    def warp(images, theta):
        grid = keras_stn.ops.affine_grid(theta, (60, 60))
        return keras_stn.ops.bilinear_sample(images, grid)

    concrete = tf.function(warp).get_concrete_function(
        tf.TensorSpec((batch, 60, 60, channels), tf.float32),
        tf.TensorSpec((batch, 6), tf.float32),
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    return warp, converter.convert()


# Both tap layouts: the corner table (one channel) and four taps (more).
@pytest.mark.parametrize("channels", [1, 3])
def test_tflite_size_does_not_grow_with_the_batch(channels):
    # Other converters' GridSample folds a batch-sized constant (the base
    # grid tiled over the batch) into the flatbuffer, so their file grows
    # with the batch it was converted for. Ours holds its constants once
    # (the block matrix of `grids.combine_points`, 12 floats per output
    # pixel, is most of the file); the two files differ in shape vectors
    # only. A batch-sized constant would add 31 copies of itself at batch
    # 32: even the smallest, the gather's batch index (one int32 per output
    # pixel, 14.4 kB), would more than double the file.
    import tensorflow as tf

    _, one = _sampler_tflite(1, channels)
    warp, many = _sampler_tflite(32, channels)
    assert abs(len(many) - len(one)) < 0.01 * len(one), (len(one), len(many))

    # And the batch-32 file computes what the ops compute.
    rng = test_case.rng(3)
    images = rng.random((32, 60, 60, channels)).astype("float32")
    theta = np.array([1, 0, 0, 0, 1, 0], "float32") + rng.normal(
        0.0, 0.1, (32, 6)
    ).astype("float32")
    interpreter = tf.lite.Interpreter(model_content=many)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        value = images if len(detail["shape"]) == 4 else theta
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    test_case.assert_close(out, warp(images, theta), 1e-5)


def test_mirrored_strategy_step_equals_single_device(tmp_path):
    _python(
        """
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from tests.layers.export_test import _st_cnn

        rng = np.random.default_rng(0)
        images = rng.random((8, 28, 28, 1)).astype("float32")
        labels = np.arange(8) % 10

        def one_step(strategy):
            with strategy.scope():
                model = _st_cnn("affine")
                model.compile(optimizer=keras.optimizers.SGD(0.1),
                              loss="sparse_categorical_crossentropy")
            model.fit(images, labels, epochs=2, batch_size=8, shuffle=False,
                      verbose=0)
            return model.get_weights()

        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        assert len(devices) == 2, devices
        mirrored = one_step(tf.distribute.MirroredStrategy(devices))
        single = one_step(tf.distribute.OneDeviceStrategy(devices[0]))
        for a, b in zip(mirrored, single):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
        print("replicas agree")
        """
    )

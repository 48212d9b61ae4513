"""Every public layer through the Keras layer checks, plus the behaviour
each one promises."""

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn.ops import transforms
from tests import test_case

FAMILIES = test_case.FAMILIES


def _images(shape=(2, 16, 16, 3), seed=0):
    return test_case.rng(seed).random(shape).astype("float32")


@pytest.mark.parametrize(
    "layer_cls,init_kwargs,input_data,symbolic_shapes",
    [
        (
            keras_stn.LocalizationHead,
            {"transform": "similarity"},
            np.ones((3, 7), "float32"),
            None,
        ),
        (
            keras_stn.GridGenerator,
            {"output_size": (4, 5), "transform": "tps"},
            np.tile(transforms.get("tps").identity(), (2, 1)).astype("float32"),
            None,
        ),
        (
            keras_stn.BilinearSampler,
            {"padding_mode": "border", "kernel": "bicubic"},
            [_images(), np.zeros((2, 4, 5, 2), "float32")],
            [(None, None, 3), (None, None, 2)],
        ),
        (
            keras_stn.SpatialTransformer,
            {"transform": "affine", "output_size": (8, 8)},
            _images(),
            [(None, None, 3)],
        ),
        (
            keras_stn.SpatialTransformer,
            {
                "transform": "projective",
                "return_theta": True,
                "return_grid": True,
            },
            _images(),
            None,
        ),
        (
            keras_stn.ParallelSpatialTransformers,
            {
                "num_transformers": 2,
                "output_size": (8, 8),
                "merge": "concat",
                "return_theta": True,
            },
            _images(),
            [(None, None, 3)],
        ),
        (
            keras_stn.ParallelSpatialTransformers,
            {"num_transformers": 3, "output_size": (6, 6)},
            _images(),
            None,
        ),
    ],
)
def test_layer_contract(
    layer_cls, init_kwargs, input_data, symbolic_shapes, tmp_path
):
    test_case.run_layer_test(
        layer_cls, init_kwargs, input_data, symbolic_shapes, tmp_path=tmp_path
    )


@pytest.mark.parametrize("transform", FAMILIES)
def test_new_spatial_transformer_returns_its_input(transform):
    images = _images((2, 20, 24, 3))
    layer = keras_stn.SpatialTransformer(transform=transform)
    # float32 rounding of the pixel centres only (see the ops' README).
    test_case.assert_close(layer(images), images, 2e-6)


def test_new_parallel_transformers_all_return_their_input():
    images = _images((2, 16, 16, 1))
    outs = keras_stn.ParallelSpatialTransformers(3, transform="affine")(images)
    assert len(outs) == 3
    for out in outs:
        test_case.assert_close(out, images, 2e-6)


def test_localization_head_starts_at_identity_for_any_features():
    head = keras_stn.LocalizationHead("attention")
    theta = head(test_case.rng(1).normal(size=(4, 9)).astype("float32"))
    test_case.assert_close(theta, np.tile([1.0, 0.0, 0.0], (4, 1)), 0.0)


@pytest.mark.xla_samplers
def test_one_step_moves_theta_the_way_the_task_needs():
    # The target shows the input's bright column one pixel-step to the left
    # (x = 0 instead of x = 0.25): the transformer must sample further right,
    # i.e. tx must grow.
    x = np.linspace(-1, 1, 16)
    column = np.exp(-((x - 0.25) ** 2) / 0.02)
    target_column = np.exp(-(x**2) / 0.02)
    images = np.tile(column[None, None, :, None], (8, 16, 1, 1)).astype(
        "float32"
    )
    targets = np.tile(target_column[None, None, :, None], (8, 16, 1, 1)).astype(
        "float32"
    )
    # Border padding: a vertical shift of a vertically constant image
    # changes nothing, so ty must stay put.
    layer = keras_stn.SpatialTransformer(
        transform="translation", padding_mode="border"
    )
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(images, targets, epochs=1, batch_size=8, verbose=0)
    tx, ty = np.asarray(layer.heads[0].bias)
    assert tx > 1e-3, tx
    assert abs(ty) < 1e-6, ty


@pytest.mark.tensorflow_only
def test_lr_multiplier_scales_the_localization_gradient():
    import tensorflow as tf

    features = tf.constant(test_case.rng(2).normal(size=(4, 5)), "float32")
    grads = []
    for multiplier in (1.0, 0.1):
        head = keras_stn.LocalizationHead("affine", lr_multiplier=multiplier)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(head(features) ** 3)
        grads.append(tape.gradient(loss, head.trainable_weights))
    for full, scaled in zip(*grads):
        test_case.assert_close(scaled, 0.1 * np.asarray(full), 1e-6)


def test_transformers_compose_in_series_and_sequential_and_subclassed():
    images = _images((2, 24, 24, 1))
    sequential = keras.Sequential(
        [
            keras.Input((24, 24, 1)),
            keras_stn.SpatialTransformer(transform="affine"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            # On a feature map, down-sampling to 12 x 12.
            keras_stn.SpatialTransformer(
                transform="similarity", output_size=(12, 12)
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    assert sequential(images).shape == (2, 3)

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.st = keras_stn.SpatialTransformer(transform="tps")
            self.head = keras.layers.Dense(3)

        def call(self, x):
            return self.head(keras.ops.mean(self.st(x), axis=(1, 2)))

    assert Net()(images).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"transform": "warp"}, r"`transform` must be one of"),
        ({"output_size": (0, 4)}, r"`output_size` must be a pair of"),
        ({"output_size": 7}, r"`output_size` must be a pair"),
        ({"padding_mode": "edge"}, r"`padding_mode` must be one of"),
        ({"kernel": "area"}, r"`kernel` must be one of"),
        ({"localization": "cnn"}, r"`localization` must be a Keras layer"),
        ({"lr_multiplier": 0}, r"`lr_multiplier` must be a finite number"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        keras_stn.SpatialTransformer(**kwargs)


def test_bad_inputs_are_refused_at_build_time():
    layer = keras_stn.SpatialTransformer()
    with pytest.raises(
        ValueError,
        match=r"`inputs` of SpatialTransformer "
        r"must have shape \(B, H, W, C\)",
    ):
        layer(np.zeros((2, 8, 8), "float32"))
    conv = keras_stn.SpatialTransformer(localization=keras.layers.Conv2D(4, 3))
    with pytest.raises(
        ValueError,
        match=r"`localization` must map the "
        r"input to features of shape",
    ):
        conv(np.zeros((2, 8, 8, 1), "float32"))
    unknown = keras_stn.SpatialTransformer(
        localization=keras.Sequential(
            [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)]
        )
    )
    with pytest.raises(ValueError, match=r"`output_size` must be given"):
        unknown(keras.Input((None, None, 3)))
    with pytest.raises(
        ValueError,
        match=r"`num_transformers` must be a "
        r"positive int",
    ):
        keras_stn.ParallelSpatialTransformers(0)
    with pytest.raises(ValueError, match=r"`merge` must be one of"):
        keras_stn.ParallelSpatialTransformers(2, merge="sum")


@pytest.mark.xla_samplers
def test_jit_compiled_training_matches_eager():
    # XLA on TensorFlow, jax.jit on JAX. On PyTorch `jit_compile=True` is
    # torch.compile, experimental in Keras: TorchInductor stops on the
    # symbolic batch size of the layer's `ops.where` (torch 2.13).
    if test_case.backend() == "torch":
        pytest.skip("Keras' jit_compile on PyTorch (torch.compile) fails")
    images = _images((4, 16, 16, 1))
    targets = test_case.rng(3).normal(size=(4, 3)).astype("float32")
    weights = None
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((16, 16, 1)),
                keras_stn.SpatialTransformer(transform="affine"),
                keras.layers.Flatten(),
                keras.layers.Dense(3),
            ]
        )
        if weights is None:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(
            optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=jit
        )
        model.fit(images, targets, epochs=1, batch_size=4, verbose=0)
        results.append((model.predict(images, verbose=0), model.get_weights()))
    # XLA reorders float32 sums: one step differs by float32 rounding.
    test_case.assert_close(results[0][0], results[1][0], 1e-5, rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        test_case.assert_close(a, b, 1e-5, rtol=1e-5)


@pytest.mark.xla_samplers
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_without_nan(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = keras.Sequential(
            [
                keras.Input((16, 16, 1)),
                keras_stn.SpatialTransformer(transform="similarity"),
                keras.layers.Flatten(),
                keras.layers.Dense(2),
            ]
        )
        out = model.layers[0](_images((4, 16, 16, 1)))
        assert keras.backend.standardize_dtype(out.dtype) == (
            "float16" if policy == "mixed_float16" else "bfloat16"
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
        history = model.fit(
            _images((8, 16, 16, 1)),
            np.ones((8, 2), "float32"),
            epochs=2,
            batch_size=4,
            verbose=0,
        )
        assert np.all(np.isfinite(history.history["loss"]))
        for w in model.get_weights():
            assert np.all(np.isfinite(w))
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.tensorflow_only
def test_transformer_maps_over_a_tf_data_pipeline():
    import tensorflow as tf

    layer = keras_stn.SpatialTransformer(transform="rigid", output_size=(8, 8))
    dataset = tf.data.Dataset.from_tensor_slices(_images((6, 16, 16, 1)))
    dataset = dataset.batch(3).map(layer)
    shapes = [tuple(batch.shape) for batch in dataset]
    assert shapes == [(3, 8, 8, 1), (3, 8, 8, 1)]


def test_initializer_refuses_wrong_shape():
    with pytest.raises(ValueError, match=r"`shape` must be \(6,\)"):
        keras_stn.TransformIdentity("affine")((5,))

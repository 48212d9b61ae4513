"""`data_format` on every layer that takes images: channels-first equals
channels-last on transposed tensors (values and gradients, 2-D and 3-D),
Keras' default, serialization, and configs saved before the argument.
"""

import json
import zipfile

import keras
import numpy as np
import pytest

import keras_stn
from tests import test_case
from tests.layers import layer_cases

# float64 on both sides: the same arithmetic on transposed memory, so the
# only differences are summation orders inside convolutions and matmuls.
ATOL = 1e-12
# TensorFlow's CPU Conv2D takes NCHW in float32 only (oneDNN; its float64
# kernel refuses "NCHW"): the cases with convolutions run in float32
# there, to the float32 tolerance.
_CONV_CASES = ("DepthwiseGradConv2D", "default_localization", "default-trunk")

_DEFAULT_TRUNK = layer_cases.Case(
    "SpatialTransformer",
    2,
    lambda df: keras_stn.SpatialTransformer(
        transform="affine",
        output_size=(12, 10),
        return_theta=True,
        data_format=df,
    ),
    lambda seed: [layer_cases._rng(seed).random((2, 18, 16, 3))],
    (True,),
    (True, False),
)

FORMAT_CASES = [
    pytest.param(case, id=case.id)
    for case in layer_cases.CASES
    if case.takes_data_format
] + [pytest.param(_DEFAULT_TRUNK, id="SpatialTransformer-default-trunk")]

# The public layers (classes) that take `data_format`.
FORMAT_CLASSES = [
    keras_stn.BilinearSampler,
    keras_stn.DenseSpatialTransformer,
    keras_stn.ParallelSpatialTransformers,
    keras_stn.SpatialTransformer,
    keras_stn.VelocityIntegration,
]


@pytest.fixture
def floatx(request):
    """float64, or float32 for convolutions on TensorFlow."""
    dtype, atol = "float64", ATOL
    if test_case.backend() == "tensorflow" and any(
        name in request.node.name for name in _CONV_CASES
    ):
        dtype, atol = "float32", test_case.TOLERANCES["float32"]
    # Keras caches its global dtype policy from floatx on first use: both
    # are set, and restored.
    previous = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    yield dtype, atol
    keras.config.set_floatx(previous[0])
    keras.config.set_dtype_policy(previous[1])


@pytest.fixture
def global_channels_first():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    yield
    keras.config.set_image_data_format(previous)


def _transposed(arrays, flags, data_format):
    return [
        layer_cases.from_layout(x, data_format) if image else x
        for x, image in zip(arrays, flags)
    ]


@pytest.mark.parametrize("case", FORMAT_CASES)
def test_channels_first_equals_channels_last(case, floatx):
    keras.utils.set_random_seed(0)
    dtype, atol = floatx
    runs = {}
    weights = upstream = None
    for data_format in ("channels_last", "channels_first"):
        inputs = layer_cases.layer_inputs(case, data_format, dtype=dtype)
        layer = case.make(data_format)
        outputs = layer_cases.build(case, layer, inputs)
        if weights is None:  # channels-last, drawn first
            layer_cases.perturb_weights(layer)
            weights = layer.get_weights()
            upstream = layer_cases.upstreams(outputs)
        else:
            layer.set_weights(weights)
        upstream_here = [
            layer_cases.to_layout(u, data_format) if image else u
            for u, image in zip(upstream, case.image_outputs)
        ]
        outputs, input_grads, weight_grads = layer_cases.gradients(
            case, layer, inputs, upstream_here
        )
        assert all(g is not None for g in [*input_grads, *weight_grads])
        runs[data_format] = (
            _transposed(outputs, case.image_outputs, data_format),
            _transposed(input_grads, case.image_inputs, data_format),
            weight_grads,
        )
    for what, last, first in zip(
        ("outputs", "input gradients", "weight gradients"),
        runs["channels_last"],
        runs["channels_first"],
    ):
        assert len(last) == len(first)
        for i, (a, b) in enumerate(zip(last, first)):
            assert a.dtype == dtype
            # Relative too: weight gradients sum over every pixel and
            # reach tens.
            test_case.assert_close(
                b, a, atol=atol, rtol=atol, msg=f"{what} {i}"
            )


@pytest.mark.parametrize("cls", FORMAT_CLASSES)
def test_data_format_defaults_to_keras_config(cls, global_channels_first):
    layer = cls()
    assert layer.data_format == "channels_first"
    config = layer.get_config()
    assert config["data_format"] == "channels_first"
    # Saved resolved: the config reproduces the layer under any default.
    keras.config.set_image_data_format("channels_last")
    assert cls.from_config(config).data_format == "channels_first"


def test_default_localization_follows_keras_config(global_channels_first):
    trunk = keras_stn.layers.default_localization(size=16)
    assert {layer.data_format for layer in trunk.layers[:-1]} == {
        "channels_first"
    }


@pytest.mark.parametrize("value", ["NHWC", "channels-last", 1, ""])
@pytest.mark.parametrize(
    "make",
    [
        *FORMAT_CLASSES,
        keras_stn.layers.default_localization,
    ],
)
def test_bad_data_format_names_argument_and_value(make, value):
    with pytest.raises(
        ValueError,
        match=r"`data_format` must be one of \('channels_last', "
        rf"'channels_first'\) or None.*Received: data_format={value!r}",
    ):
        make(data_format=value)


@pytest.mark.parametrize("cls", FORMAT_CLASSES)
def test_config_without_data_format_loads_as_channels_last(
    cls, global_channels_first
):
    config = cls(data_format="channels_last").get_config()
    del config["data_format"]
    assert cls.from_config(config).data_format == "channels_last"


def _strip_data_format(node):
    """Removes `data_format` from every keras_stn layer's config in a
    `.keras` config tree, as files saved before the argument have it;
    returns how many it removed (Keras' own layers keep theirs)."""
    removed = 0
    if isinstance(node, dict):
        if str(node.get("registered_name", "")).startswith("keras_stn>"):
            removed += node["config"].pop("data_format", None) is not None
        for value in node.values():
            removed += _strip_data_format(value)
    elif isinstance(node, list):
        for value in node:
            removed += _strip_data_format(value)
    return removed


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case.id)
        for case in layer_cases.CASES
        if case.name in {cls.__name__ for cls in FORMAT_CLASSES}
    ]
    + [pytest.param(_DEFAULT_TRUNK, id="SpatialTransformer-default-trunk")],
)
def test_old_keras_file_loads_as_channels_last(case, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = [
        x.astype("float32")
        for x in layer_cases.layer_inputs(case, "channels_last")
    ]
    symbolic = [keras.Input(x.shape[1:]) for x in inputs]
    model = keras.Model(
        symbolic, case.call(case.make("channels_last"), symbolic)
    )
    layer_cases.perturb_weights(model)
    expected = [
        keras.ops.convert_to_numpy(y) for y in keras.tree.flatten(model(inputs))
    ]
    new, old = tmp_path / "new.keras", tmp_path / "old.keras"
    model.save(new)
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                tree = json.loads(data)
                assert _strip_data_format(tree) == 1
                data = json.dumps(tree)
            dst.writestr(item, data)
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        loaded = keras.saving.load_model(old, safe_mode=True)
        actual = keras.tree.flatten(loaded(inputs))
    finally:
        keras.config.set_image_data_format(previous)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), a)

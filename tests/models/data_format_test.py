"""The model builders' `data_format`: a channels-first model is the
channels-last one (same weights' shapes and count) on transposed images,
values and gradients."""

import keras
import numpy as np
import pytest

from keras_stn import models
from tests import test_case
from tests.layers import layer_cases

# float32 (TensorFlow's CPU Conv2D takes NCHW in float32 only), relative
# as well: gradients w.r.t. weights sum over the batch and the pixels.
TOL = test_case.TOLERANCES["float32"]


def _backbone(data_format):
    shape = (8, 8, 2) if data_format == "channels_last" else (2, 8, 8)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(3, 3, data_format=data_format),
        ],
        name="tiny_backbone",
    )


def _shape(hwc, data_format):
    h, w, c = hwc
    return (h, w, c) if data_format == "channels_last" else (c, h, w)


BUILDERS = {
    "cnn": lambda df: models.cnn(
        _shape((12, 12, 2), df), 3, filters=(2, 2), data_format=df
    ),
    "fcn": lambda df: models.fcn(
        _shape((12, 12, 2), df), 3, units=(4,), data_format=df
    ),
    "st_cnn": lambda df: models.st_cnn(
        _shape((28, 28, 2), df), 3, data_format=df
    ),
    "st_fcn": lambda df: models.st_fcn(
        _shape((12, 12, 2), df), 3, data_format=df
    ),
    "wrap_backbone": lambda df: models.wrap_backbone(
        _backbone(df), 3, input_size=16, sample_size=8, data_format=df
    ),
}
_INPUT_HWC = {
    "cnn": (12, 12, 2),
    "fcn": (12, 12, 2),
    "st_cnn": (28, 28, 2),
    "st_fcn": (12, 12, 2),
    "wrap_backbone": (16, 16, 2),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_channels_first_model_equals_channels_last(name):
    keras.utils.set_random_seed(0)
    images = test_case.rng(0).random((2, *_INPUT_HWC[name]), dtype="f4")
    case = layer_cases.Case(
        name,
        2,
        BUILDERS[name],
        lambda seed: [images],
        (True,),
        (False,),
    )
    runs, weights = {}, None
    for data_format in ("channels_last", "channels_first"):
        model = case.make(data_format)
        if weights is None:
            layer_cases.perturb_weights(model)
            weights = model.get_weights()
        else:
            assert [w.shape for w in model.get_weights()] == [
                w.shape for w in weights
            ]
            model.set_weights(weights)
        inputs = layer_cases.layer_inputs(case, data_format)
        upstream = layer_cases.upstreams([np.zeros((2, 3))])
        outputs, (input_grad,), weight_grads = layer_cases.gradients(
            case, model, inputs, upstream
        )
        runs[data_format] = [
            *outputs,
            layer_cases.from_layout(input_grad, data_format),
            *weight_grads,
        ]
    for a, b in zip(runs["channels_last"], runs["channels_first"]):
        test_case.assert_close(b, a, atol=TOL, rtol=TOL)


def test_st_cnn_balances_parameters_in_either_format():
    last = models.st_cnn((28, 28, 1), data_format="channels_last")
    first = models.st_cnn((1, 28, 28), data_format="channels_first")
    assert first.count_params() == last.count_params()
    assert first.input_shape == (None, 1, 28, 28)


def test_wrap_backbone_checks_the_backbone_in_its_format():
    with pytest.raises(
        ValueError,
        match=r"`backbone` must take the transformers' samples.*"
        r"data_format='channels_first'",
    ):
        models.wrap_backbone(
            _backbone("channels_last"),
            3,
            input_size=16,
            sample_size=8,
            data_format="channels_first",
        )


@pytest.mark.parametrize(
    "builder",
    [
        models.cnn,
        models.fcn,
        models.st_cnn,
        models.st_fcn,
        models.paper_cnn_localization,
        models.paper_fcn_localization,
    ],
)
def test_bad_data_format_names_argument_and_value(builder):
    args = () if "localization" in builder.__name__ else ((28, 28, 1),)
    with pytest.raises(
        ValueError, match=r"`data_format` must be one of.*data_format='NCHW'"
    ):
        builder(*args, data_format="NCHW")

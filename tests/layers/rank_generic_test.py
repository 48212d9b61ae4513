"""Every public layer on images (rank 4) and volumes (rank 5).

For each case of `layer_cases.CASES`, in each `data_format` it takes: the
symbolic output shape equals the eager one; a `.keras` file loads in a
fresh process (one subprocess for all cases) and gives the same outputs;
gradients reach every input and weight through the backend's autodiff
(`jax.vjp(jax.jit(...))`, `torch.autograd`, a TensorFlow tape). Runs under
whichever Keras backend the run has.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_stn
from tests import test_case
from tests.layers import layer_cases

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
WORKER = os.path.join(os.path.dirname(__file__), "rank_generic_worker.py")

CASES = [
    pytest.param(case, data_format, id=f"{case.id}-{data_format}")
    for case in layer_cases.CASES
    for data_format in case.data_formats()
]


def test_every_public_layer_has_its_cases():
    names = {case.name for case in layer_cases.CASES}
    assert names == set(keras_stn.layers.__all__)
    volumes = {
        case.name for case in layer_cases.CASES if case.spatial_dims == 3
    }
    assert volumes == names - set(layer_cases.IMAGES_ONLY)


@pytest.mark.parametrize("case,data_format", CASES)
def test_symbolic_shape_equals_eager_shape(case, data_format):
    inputs = layer_cases.layer_inputs(case, data_format)
    symbolic = case.call(
        case.make(data_format), [keras.Input(x.shape[1:]) for x in inputs]
    )
    layer = case.make(data_format)
    eager = case.call(layer, inputs)
    sym_shapes = [tuple(y.shape) for y in keras.tree.flatten(symbolic)]
    eager_shapes = [tuple(y.shape) for y in keras.tree.flatten(eager)]
    assert [(None, *s[1:]) for s in eager_shapes] == sym_shapes
    if hasattr(layer, "compute_output_shape"):
        computed = (
            layer.compute_output_shape(*[x.shape for x in inputs])
            if (not case.as_list)
            else layer.compute_output_shape([x.shape for x in inputs])
        )
        assert [tuple(s) for s in test_case._flatten_shapes(computed)] == (
            eager_shapes
        )


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """`{case id: (outputs before saving, outputs after loading)}`, the
    loading done by one fresh process for every case."""
    folder = tmp_path_factory.mktemp("rank_generic")
    before, items = {}, []
    for param in CASES:
        case, data_format = param.values
        key = param.id
        keras.utils.set_random_seed(0)
        inputs = layer_cases.layer_inputs(case, data_format)
        symbolic = [keras.Input(x.shape[1:]) for x in inputs]
        layer = case.make(data_format)
        model = keras.Model(symbolic, case.call(layer, symbolic))
        layer_cases.perturb_weights(model)
        before[key] = [
            keras.ops.convert_to_numpy(y)
            for y in keras.tree.flatten(model(inputs))
        ]
        paths = {
            part: str(folder / f"{key}.{part}")
            for part in ("keras", "inputs.npz", "outputs.npz")
        }
        model.save(paths["keras"])
        np.savez(
            paths["inputs.npz"], **{f"x{i}": x for i, x in enumerate(inputs)}
        )
        items.append(
            {
                "model": paths["keras"],
                "inputs": paths["inputs.npz"],
                "outputs": paths["outputs.npz"],
            }
        )
    jax_flags = {}
    if keras.backend.backend() == "jax":
        import jax

        jax_flags = {
            name: jax.config.read(name)
            for name in ("jax_enable_x64", "jax_disable_most_optimizations")
        }
    spec = folder / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "jax_flags": jax_flags,
                # A module fixture runs outside the per-test switch of
                # conftest: the worker takes whatever this process had.
                "xla_samplers": keras_stn.config.xla_samplers(),
                "cases": items,
            }
        )
    )
    env = dict(
        os.environ,
        KERAS_BACKEND=keras.backend.backend(),
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    run = subprocess.run(
        [sys.executable, WORKER, str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    after = {}
    for param, item in zip(CASES, items):
        with np.load(item["outputs"]) as data:
            after[param.id] = [data[f"y{i}"] for i in range(len(data.files))]
    return {key: (before[key], after[key]) for key in before}


@pytest.mark.parametrize("case,data_format", CASES)
def test_keras_file_loads_in_a_fresh_process(case, data_format, reloaded):
    before, after = reloaded[f"{case.id}-{data_format}"]
    assert len(before) == len(after)
    for a, b in zip(before, after):
        # The same computation on the same backend and machine.
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case,data_format", CASES)
def test_gradients_reach_every_input_and_weight(case, data_format):
    keras.utils.set_random_seed(0)
    inputs = layer_cases.layer_inputs(case, data_format)
    layer = case.make(data_format)
    outputs = layer_cases.build(case, layer, inputs)
    layer_cases.perturb_weights(layer)
    upstream = layer_cases.upstreams(outputs)
    _, input_grads, weight_grads = layer_cases.gradients(
        case, layer, inputs, upstream
    )
    names = [f"input {i}" for i in range(len(inputs))] + [
        v.path for v in layer.trainable_variables
    ]
    for name, grad in zip(names, [*input_grads, *weight_grads]):
        assert grad is not None, f"no gradient reaches {name}"
        assert np.all(np.isfinite(grad)), f"non-finite gradient of {name}"
        assert np.any(grad != 0), f"zero gradient of {name}"

"""Loads `.keras` files in a fresh process and runs them on saved inputs.

`rank_generic_test.py` runs it once for all its cases: a model must load
where nothing of the process that saved it (registered objects, caches,
built layers) remains. Not a test module.

Usage: python rank_generic_worker.py SPEC.json
SPEC holds `{"jax_flags": {...}, "xla_samplers": bool, "cases":
[{"model", "inputs", "outputs"}, ...]}`: each model is loaded with
`safe_mode=True`, called on the arrays of its `inputs` `.npz` file (`x0`,
`x1`, ...), and its flattened outputs are written to `outputs` (`y0`,
`y1`, ...).
"""

import json
import os
import sys


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    import keras

    if keras.backend.backend() == "jax":
        import jax

        for name, value in spec["jax_flags"].items():
            jax.config.update(name, value)
    import numpy as np

    import keras_stn

    # As the process that saved the models (op-level XLA or TensorFlow's
    # kernels give results that differ in the last bit).
    keras_stn.config.set_xla_samplers(spec["xla_samplers"])
    for item in spec["cases"]:
        model = keras.saving.load_model(item["model"], safe_mode=True)
        with np.load(item["inputs"]) as data:
            inputs = [data[f"x{i}"] for i in range(len(data.files))]
        outputs = keras.tree.flatten(model(inputs))
        arrays = {
            f"y{i}": keras.ops.convert_to_numpy(y)
            for i, y in enumerate(outputs)
        }
        partial = item["outputs"] + ".part.npz"
        np.savez(partial, **arrays)
        os.replace(partial, item["outputs"])


if __name__ == "__main__":
    main(sys.argv[1])

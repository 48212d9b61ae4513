"""The paper's experiments, built on the library: an application, not API.

- `data`: the paper's data sets (distorted MNIST, MNIST addition, the
  two-digit canvas, CUB-200-2011) as tf.data pipelines (TensorFlow).
- `training`: one training run with its result files, resume and pictures.
- `results`: the result files (`results.json`, tables) written atomically.
- `invariance`: test accuracy as one distortion grows.
- `commands`: what the `keras-stn` command does (its parser is the
  top-level module `keras_stn_cli`).

Nothing here is imported by `import keras_stn`.
"""

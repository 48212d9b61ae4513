"""JAX's primitives: gathers of `(b, row, col)` indices on CPUs, and
arithmetic that keeps float64.

Imported only on the JAX backend.
"""

import jax
import jax.numpy as jnp
from jax import lax

from keras_stn.ops.backend import generic


def _on_cpu():
    return jax.default_backend() == "cpu"


def gather_pixels(images, rows, cols):
    """`generic.gather_pixels`; on a CPU as one XLA gather of `(b, row,
    col)` indices, like TensorFlow's `gather_nd(..., batch_dims=1)`:
    XLA:CPU compiles that several times faster than `take` of flat indices
    computed in the same program (measured with
    benchmarks/sampler_benchmark.py on a 2-core CPU). GPUs keep `take`,
    the form measured there. Its autodiff is a scatter-add."""
    if not _on_cpu():
        return generic.gather_pixels(images, rows, cols)
    batch = jnp.arange(rows.shape[0], dtype=rows.dtype)
    batch = jnp.broadcast_to(
        batch.reshape((-1,) + (1,) * (rows.ndim - 1)), rows.shape
    )
    numbers = lax.GatherDimensionNumbers(
        offset_dims=(rows.ndim,),
        collapsed_slice_dims=(0, 1, 2),
        start_index_map=(0, 1, 2),
    )
    return lax.gather(
        images,
        jnp.stack([batch, rows, cols], axis=-1),
        numbers,
        (1, 1, 1, images.shape[-1]),
        mode="clip",
    )


def gather_quads(images, rows, cols):
    """`generic.gather_quads` with this module's `gather_pixels`."""
    return gather_pixels(images, rows, cols)


def gather_taps(images, index, rows, cols):
    """`generic.gather_taps`; on a CPU one `(b, row, col)` gather per tap
    (see `gather_pixels`)."""
    if not _on_cpu():
        return generic.gather_taps(images, index, rows, cols)
    return [
        gather_pixels(images, rows[:, k], cols[:, k])
        for k in range(rows.shape[1])
    ]


def on_gpu(x):
    """Whether JAX's default device is a GPU."""
    return jax.default_backend() == "gpu"


def floor(x):
    """`jnp.floor`: Keras' JAX `floor` computes float64 in float32, which
    rounds an index just below an integer up onto it (into the next
    bilinear cell)."""
    return jnp.floor(x)


def cos_sin(angle):
    """`jnp.cos`, `jnp.sin`: Keras' JAX `cos`/`sin` compute float64 input
    in float32."""
    return jnp.cos(angle), jnp.sin(angle)

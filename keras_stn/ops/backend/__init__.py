"""The kernel seam: one module of primitives per Keras backend.

`generic` writes every primitive with `keras.ops`; `tensorflow_ops`,
`jax_ops` and `torch_ops` each define the primitives their backend does
faster or more exactly, under the same names. The active set is chosen
once per Keras backend: call sites write `backend.gather_pixels(...)` and
get the active backend's function, else the generic one.

A native sampler (a framework's own kernel, such as PyTorch's
`grid_sample`) is one more module with `supports(...)` and `sample(...)`,
registered in `NATIVE_SAMPLERS` under its backend; the sampler entry
(`keras_stn.ops.sampling`) asks `native_sampler` before it builds the
package's own kernel.

The primitives' interface (each backend module may define any of them):
- `gather_pixels(images, rows, cols)`, `gather_quads(images, rows, cols)`,
  `gather_taps(images, index, rows, cols)`, `scatter_add_rows(updates,
  indices, num_rows)`: row gathers and their transpose;
- `floor`, `cos_sin`, `matmul`: arithmetic that keeps float64;
- `on_gpu(x)`, `assert_dims(...)`, `xla_compiled(...)`;
- `CUSTOM_GRADIENT_SINGLE_OUTPUT`, `CUSTOM_GRADIENT_FORWARD_UNTRACKED`:
  what the backend's `keras.ops.custom_gradient` allows.
"""

import importlib
import types

import keras

from keras_stn import config
from keras_stn.ops.backend import generic

_MODULES = {
    "tensorflow": "keras_stn.ops.backend.tensorflow_ops",
    "jax": "keras_stn.ops.backend.jax_ops",
    "torch": "keras_stn.ops.backend.torch_ops",
}

# Per Keras backend, the module of its native sampler.
NATIVE_SAMPLERS = {}

_active = {}


def name():
    """The Keras backend's name: `"tensorflow"`, `"jax"` or `"torch"`."""
    return keras.backend.backend()


def active():
    """The primitives of the active Keras backend, as one namespace: the
    backend module's public names over `generic`'s."""
    backend = name()
    if backend not in _active:
        names = dict(_public(generic))
        if backend in _MODULES:
            names.update(_public(importlib.import_module(_MODULES[backend])))
        _active[backend] = types.SimpleNamespace(**names)
    return _active[backend]


def _public(module):
    return {
        key: value
        for key, value in vars(module).items()
        if not key.startswith("_") and not isinstance(value, types.ModuleType)
    }


def native_sampler(kernel, num_axes, padding_mode, align_corners, images,
                   deterministic):
    """The active backend's native `sample` function for this call, or None
    (no native kernel, `config.native_kernels()` off, or a call it does
    not serve)."""
    if not config.native_kernels() or name() not in NATIVE_SAMPLERS:
        return None
    module = importlib.import_module(NATIVE_SAMPLERS[name()])
    if not module.supports(
        kernel, num_axes, padding_mode, align_corners, images, deterministic
    ):
        return None
    return module.sample


def __getattr__(attribute):
    # PEP 562: `backend.gather_pixels` is the active backend's.
    try:
        return getattr(active(), attribute)
    except AttributeError:
        raise AttributeError(
            f"module {__name__!r} has no attribute {attribute!r}"
        ) from None

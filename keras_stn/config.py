"""Package-wide switches, as functions (the way `keras.config` does it).

- `set_xla_samplers(enabled)` / `xla_samplers()`: whether, on the TensorFlow
  backend, the samplers run as their own XLA-compiled functions (the
  default) or with TensorFlow's kernels. Other backends compile whole steps
  themselves and ignore it. The environment variable
  `KERAS_STN_XLA_SAMPLERS=0` (or `false`) sets the default to off.
- `set_native_kernels(enabled)` / `native_kernels()`: whether the samplers
  run on a framework's own kernel where one serves the call (PyTorch's
  `grid_sample` on the PyTorch backend) or always on the package's own.
  On by default; `KERAS_STN_NATIVE_KERNELS=0` (or `false`) sets it off.

- `set_deterministic(enabled)` / `deterministic()`: whether the samplers'
  image gradients are bitwise reproducible. The scatter-add that
  transposes the tap gather uses atomics on GPUs, whose order varies from
  run to run; the deterministic form sums integers instead (exactly,
  so in any order). By default it follows the framework's own switch
  where it can be read (`torch.use_deterministic_algorithms(True)`,
  `--xla_gpu_deterministic_ops=true` in `XLA_FLAGS` for JAX,
  `TF_DETERMINISTIC_OPS=1` for TensorFlow, whose
  `enable_op_determinism()` has no public reader: call
  `set_deterministic(True)` beside it) or the environment variable
  `KERAS_STN_DETERMINISTIC=1` (or `true`).
- `set_gather_layout(layout)` / `gather_layout()`: how the bilinear
  sampler reads its taps: `"framed"`, `"clipped"`, `"split"` or `"auto"`
  (the default: by device); see `set_gather_layout`. Values and gradients
  are the same.

The switches are read when a sampler is traced: set them before building
or compiling the model they should apply to. The environment variables take
`1`, `0`, `true` or `false` (any case); anything else is refused, naming
the variable, rather than silently ignored.
"""

import os

from keras_stn.utils import argument_validation

# Off by default when "0" or "false".
XLA_SAMPLERS_ENV = "KERAS_STN_XLA_SAMPLERS"
# On by default when "1" or "true".
DETERMINISTIC_ENV = "KERAS_STN_DETERMINISTIC"
# Off by default when "0" or "false".
NATIVE_KERNELS_ENV = "KERAS_STN_NATIVE_KERNELS"
GATHER_LAYOUTS = ("auto", "framed", "clipped", "split")

_ENV_VALUES = {"1": True, "true": True, "0": False, "false": False}

_state = {
    "xla_samplers": None,
    "deterministic": None,
    "native_kernels": None,
    "gather_layout": "auto",
}


def _env_flag(name, default):
    """The boolean environment variable `name`, or `default` when it is
    unset or empty.

    Raises:
        ValueError: for a value other than 1, 0, true or false (any case).
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if value.lower() not in _ENV_VALUES:
        raise ValueError(
            f"The environment variable {name} must be 1, 0, true or false "
            f"(any case). Received: {name}={value!r}"
        )
    return _ENV_VALUES[value.lower()]


def set_xla_samplers(enabled):
    """Turns op-level XLA for the samplers on or off (TensorFlow backend).

    Args:
        enabled: bool, or None to go back to the default (on, unless
            `KERAS_STN_XLA_SAMPLERS=0`).
    Raises:
        ValueError: if `enabled` is neither a bool nor None.

    Example:
    >>> import keras_stn
    >>> keras_stn.config.set_xla_samplers(False)
    >>> keras_stn.config.xla_samplers()
    False
    >>> keras_stn.config.set_xla_samplers(None)
    """
    if enabled is not None:
        argument_validation.check_bool(enabled, "enabled")
    _state["xla_samplers"] = enabled


def xla_samplers():
    """Returns whether the samplers compile themselves with XLA on TensorFlow.

    Returns:
        bool: the value given to `set_xla_samplers`, else the default (on,
        unless the environment variable `KERAS_STN_XLA_SAMPLERS` is `0` or
        `false`).
    Raises:
        ValueError: if that variable holds anything but 1, 0, true, false.
    """
    if _state["xla_samplers"] is not None:
        return _state["xla_samplers"]
    return _env_flag(XLA_SAMPLERS_ENV, True)


def set_native_kernels(enabled):
    """Lets the samplers run on a framework's own kernel, or not.

    On the PyTorch backend the samplers call `torch.nn.functional.
    grid_sample` where it computes what the package's own kernel computes
    (the package's contracts for non-finite points and second derivatives
    are kept on top of it). Values and gradients are the same either way,
    to float rounding; speed is not.

    Args:
        enabled: bool, or None to go back to the default (on, unless
            `KERAS_STN_NATIVE_KERNELS` is `0` or `false`).
    Raises:
        ValueError: if `enabled` is neither a bool nor None.
    """
    if enabled is not None:
        argument_validation.check_bool(enabled, "enabled")
    _state["native_kernels"] = enabled


def native_kernels():
    """Returns whether the samplers may run on a framework's own kernel.

    Returns:
        bool: the value given to `set_native_kernels`, else the default.
    Raises:
        ValueError: if `KERAS_STN_NATIVE_KERNELS` holds anything but 1, 0,
            true or false.
    """
    if _state["native_kernels"] is not None:
        return _state["native_kernels"]
    return _env_flag(NATIVE_KERNELS_ENV, True)


def set_deterministic(enabled):
    """Makes the samplers' image gradients bitwise reproducible, or not.

    The image gradient of a sampler is the scatter-add of the upstream
    gradient onto the pixels each point read. On GPUs that sum is done with
    atomic additions, whose order (and so the float rounding) varies from
    call to call. The deterministic form scales the contributions to
    integers (two int32 words each, scaled by the largest contribution and
    the largest number of contributions per pixel), sums those exactly
    and scales back: the same bits every call, equal to the default up to
    float rounding. It costs an extra scatter of counts and two integer
    words per value; on CPUs the default is already reproducible.

    An op's or layer's own `deterministic` argument overrides this.

    Args:
        enabled: bool, or None to go back to the default: the framework's
            own determinism switch (PyTorch's deterministic algorithms,
            `--xla_gpu_deterministic_ops=true` in `XLA_FLAGS` on JAX,
            `TF_DETERMINISTIC_OPS=1` on TensorFlow, whose
            `tf.config.experimental.enable_op_determinism()` cannot be
            read through a public API) or `KERAS_STN_DETERMINISTIC=1`.
    Raises:
        ValueError: if `enabled` is neither a bool nor None.

    Example:
    >>> import keras_stn
    >>> keras_stn.config.set_deterministic(True)
    >>> keras_stn.config.deterministic()
    True
    >>> keras_stn.config.set_deterministic(None)
    """
    if enabled is not None:
        argument_validation.check_bool(enabled, "enabled")
    _state["deterministic"] = enabled


def deterministic():
    """Returns whether the samplers' image gradients are deterministic.

    Returns:
        bool: the value given to `set_deterministic`; else the environment
        variable `KERAS_STN_DETERMINISTIC` where it is set; else whether the
        backend's framework has its own determinism switched on.
    Raises:
        ValueError: if that variable holds anything but 1, 0, true, false.
    """
    if _state["deterministic"] is not None:
        return _state["deterministic"]
    flag = _env_flag(DETERMINISTIC_ENV, None)
    if flag is not None:
        return flag
    return _framework_deterministic()


def _framework_deterministic():
    """The current backend framework's own determinism switch."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        # TensorFlow has no public reader of `enable_op_determinism()`'s
        # switch, only the environment variable it replaced.
        return os.environ.get("TF_DETERMINISTIC_OPS", "") in ("1", "true")
    if backend == "torch":
        import torch

        return bool(torch.are_deterministic_algorithms_enabled())
    if backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "").split()
        return "--xla_gpu_deterministic_ops=true" in flags
    return False


def resolve_deterministic(value, name="deterministic"):
    """An op's or layer's `deterministic` argument: a bool, or None for
    `deterministic()`.

    Raises:
        ValueError: if `value` is neither a bool nor None.
    """
    if value is None:
        return deterministic()
    argument_validation.check_bool(value, name)
    return bool(value)


def set_gather_layout(layout):
    """Chooses how the samplers read the pixels around each point.

    Values and gradients do not depend on it; speed does, by device.

    Args:
        layout: `"framed"`: the four taps as one `(..., 4, C)` array read
            from a copy of the images framed with one pixel of zeros (for
            one channel, from a table of each pixel's 2x2 block);
            `"clipped"`: the same array read from the images themselves at
            indices clipped into the image, the taps outside zeroed (no
            framed copy); `"split"`: as `"clipped"`, but four separate
            gathers, so that each output is one elementwise sum of them;
            `"auto"` (the default): `"split"` on a GPU, on a CPU for 16
            channels or more, and under JAX on a CPU for any; else
            `"framed"`. On TensorFlow on a CPU, whose samplers compile
            their forward pass and two gradients as separate functions,
            each takes its own faster form
            (`keras_stn.ops.tuning.tensorflow_cpu_plan`). Under
            whole-graph XLA (`jit_compile=True`) on a CPU those forms
            share no work, and below 16 channels `"framed"` alone makes a
            training step faster: set it there.
            `benchmarks/sampler_benchmark.py` times each
            (`stn-jit-framed`, ...).
    Raises:
        ValueError: for any other value.

    Example:
    >>> import keras_stn
    >>> keras_stn.config.set_gather_layout("clipped")
    >>> keras_stn.config.gather_layout()
    'clipped'
    >>> keras_stn.config.set_gather_layout("auto")
    """
    argument_validation.check_choice(layout, GATHER_LAYOUTS, "layout")
    _state["gather_layout"] = layout


def gather_layout():
    """Returns the layout set by `set_gather_layout` (`"auto"` by default)."""
    return _state["gather_layout"]

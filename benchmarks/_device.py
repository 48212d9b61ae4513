"""The header line every benchmark prints: versions, device and date.

Works under any Keras backend: the GPU is looked up through the backend's
own framework (TensorFlow, JAX or PyTorch), which is imported only when it
is the backend, so this module never needs TensorFlow on a JAX machine.
"""

import datetime
import functools
import os
import platform

import keras


def cpu_count():
    """The logical CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def cpu_name():
    """`CPU <model>, <n> logical CPUs`."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {model}, {cpu_count()} logical CPUs"


@functools.cache
def gpu_name():
    """The current backend's first GPU's name, or None without one."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return details.get("device_name", gpus[0].name)
    elif backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpus:
            return gpus[0].device_kind
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    return None


def has_gpu():
    """Whether the current backend runs on a GPU."""
    return gpu_name() is not None


def device_name():
    """The first GPU's name, else the CPU model and the usable CPUs."""
    gpu = gpu_name()
    return f"GPU {gpu}" if gpu else cpu_name()


def backend_version():
    """`<backend> <framework version>`, e.g. `jax 0.10.2`."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as framework
    elif backend == "jax":
        import jax as framework
    elif backend == "torch":
        import torch as framework
    else:
        return backend
    return f"{backend} {framework.__version__}"


def header(*extras):
    """Returns `Keras <v> on <backend> <v>[, extras]; <device>; <date>`.

    Args:
        *extras: strings such as `"torch 2.13.0"`, listed after the backend.
    """
    versions = ", ".join(
        [f"Keras {keras.__version__} on {backend_version()}", *extras]
    )
    now = datetime.datetime.now().isoformat(timespec="minutes")
    return f"{versions}; {device_name()}; {now}"


def gpu_memory_counters(framework):
    """`(reset, current, peak)` byte counters of `framework` (`"torch"`,
    `"jax"` or `"tensorflow"`) on the GPU; `reset` is None where the peak
    cannot be reset (JAX)."""
    if framework == "torch":
        import torch

        return (
            torch.cuda.reset_peak_memory_stats,
            torch.cuda.memory_allocated,
            torch.cuda.max_memory_allocated,
        )
    if framework == "jax":
        import jax

        device = jax.devices()[0]
        return (
            None,
            lambda: device.memory_stats()["bytes_in_use"],
            lambda: device.memory_stats()["peak_bytes_in_use"],
        )
    import tensorflow as tf

    return (
        lambda: tf.config.experimental.reset_memory_stats("GPU:0"),
        lambda: tf.config.experimental.get_memory_info("GPU:0")["current"],
        lambda: tf.config.experimental.get_memory_info("GPU:0")["peak"],
    )

"""The header line every benchmark prints: versions, device and date."""

import datetime
import os
import platform

import keras
import tensorflow as tf


def device_name():
    """The first GPU's name, else the CPU model and the usable cores."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU {details.get('device_name', gpus[0].name)}"
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {model}, {len(os.sched_getaffinity(0))} cores"


def header(*extras):
    """Returns `TF <v>, Keras <v>[, extras]; <device>; <date>`.

    Args:
        *extras: strings such as `"torch 2.13.0"`, listed after Keras.
    """
    versions = ", ".join(
        [f"TF {tf.__version__}", f"Keras {keras.__version__}", *extras]
    )
    now = datetime.datetime.now().isoformat(timespec="minutes")
    return f"{versions}; {device_name()}; {now}"

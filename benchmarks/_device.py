"""The device line every benchmark prints in its header."""

import os
import platform

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

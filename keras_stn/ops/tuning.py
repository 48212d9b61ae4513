"""Every speed choice of the samplers, with the measurement it rests on.

Values and gradients never depend on these choices; time does, by device,
backend and channel count. Each threshold names the benchmark and the
hardware it was measured on (`benchmarks/`); re-measure before changing
one. The functions take the facts they decide on as arguments, so that
this module imports nothing of the package but `config`.
"""

from keras_stn import config

# 2-D, up to this many channels a corner table (each framed pixel stacked
# with its east, south and south-east neighbours: one gather of 4C values
# per point) beats four gathers. Measured with
# benchmarks/sampler_benchmark.py on a 2-core CPU: faster for mnist, C = 1;
# slower for cub, C = 3, and feat, C = 64, forward and backward.
CORNER_TABLE_MAX_CHANNELS = 1

# 3-D, up to this many channels the eight taps come from the corner table.
# Measured with benchmarks/volume_benchmark.py's workloads on a 2-core CPU
# under XLA: several times faster than the framed slabs for the forward
# pass and the volume gradient, C = 1 and C = 8. More channels take the
# slabs, which build no table of 8 times the volume.
CORNER_TABLE_MAX_CHANNELS_3D = 8

# From this many channels the split layout is the faster on CPUs too,
# forward and backward. Measured with benchmarks/sampler_benchmark.py on a
# 2-core CPU: feat, C = 64, under TensorFlow's op-level XLA and JAX.
SPLIT_MIN_CHANNELS = 16

# Width of the slices that the grid gradient adds before it reduces over
# channels, on TensorFlow on a CPU (`bilinear._sum_over_channels`).
# Measured with benchmarks/channel_slices.py on a 2-core CPU: feat's
# training steps faster in both compile modes; narrower slices were slower
# than one reduction. Under JAX on a CPU the slices made the jitted step
# slower, so JAX keeps one reduction.
CHANNEL_SLICE_WIDTH = 16

# TensorFlow: up to this depth the transpose of `gather_quads` is one
# segment sum over the four taps' rows (tap-major); deeper, four
# scatter-adds in a row, so that only one tap's `(N, D)` updates are alive
# at a time (one segment sum of all four held 4x the updates and took the
# sampler's peak memory above the autodiff twin's). Measured under XLA on
# a 2-core CPU with benchmarks/sampler_benchmark.py.
TAP_MAJOR_MAX_DEPTH = 16


def gather_layout(channels, num_axes, backend_name, on_gpu):
    """`config.gather_layout()` with `"auto"` resolved.

    On a GPU `"split"` (2-D) or `"clipped"` (3-D): the framed copy of the
    input costs as much there as the gathers. On a CPU `"split"` from
    `SPLIT_MIN_CHANNELS` channels, else `"framed"`, except that JAX on a
    CPU takes `"split"` for 2-D images of any depth (measured with
    benchmarks/sampler_benchmark.py on a 2-core CPU: there the other
    layouts' stacked `(..., 4, C)` gathers took 5-15x as long, forward).
    Volumes know `"framed"` and `"clipped"`; any other layout reads as
    `"clipped"` for them.

    Args:
        channels: int or None, the input's channels.
        num_axes: 2 or 3, the input's spatial axes.
        backend_name: the Keras backend's name.
        on_gpu: bool, whether the sampler runs on a GPU.
    Returns:
        `"framed"`, `"clipped"` or `"split"`.
    """
    layout = config.gather_layout()
    if layout == "auto":
        many = channels is not None and channels >= SPLIT_MIN_CHANNELS
        if num_axes == 2 and backend_name == "jax" and not on_gpu:
            many = True
        layout = "split" if many or on_gpu else "framed"
    if num_axes == 3 and layout != "framed":
        return "clipped"
    return layout


def tensorflow_cpu_plan(channels):
    """`(forward, grid, direct)`: the gather layouts of the 2-D bilinear
    forward pass and of its gradient w.r.t. the grid, and whether the
    gradient w.r.t. the images is written directly
    (`bilinear.images_gradient`, else the autodiff of the layout's gather),
    for a sampler that TensorFlow compiles by itself on a CPU with
    `gather_layout("auto")`.

    Measured per function with benchmarks/sampler_benchmark.py on a
    2-core CPU: below `SPLIT_MIN_CHANNELS` channels four separate gathers
    are the faster forward pass and the framed layout the faster grid
    gradient; from there the clipped layout is as fast a forward pass and
    the faster grid gradient, and whole-step XLA then shares the two
    functions' gathers. The direct image gradient is faster than every
    layout's autodiff but the corner table's (one channel).
    """
    many = channels is not None and channels >= SPLIT_MIN_CHANNELS
    direct = channels is None or channels > CORNER_TABLE_MAX_CHANNELS
    if many:
        return "clipped", "clipped", direct
    return "split", "framed", direct

"""The sampler benchmark's variants: one builder per framework.

Every variant computes the same thing on the same data: the affine grid of
`theta` (align_corners=False) and the bilinear sample of `images` there
(zeros padding), then the loss `0.5 * sum((output - target) ** 2)`, which
depends on the output, so the forward pass cannot be pruned from the
step. A builder returns `(forward, step)`, zero-argument callables that
each run once and return only when their results are ready:

- `forward()` returns the output, `(B, H_out, W_out, C)`;
- `step()` returns `(loss, grads)`: the loss and its gradients w.r.t.
  `[images, theta]`, or `[theta]` for a `:theta` variant (a transformer on
  the network input, whose images need no gradient). Image gradients are
  channels-last like ours, whatever the framework's own layout.

The step reads its loss back to the host, as a training loop does when it
logs it; on a GPU it also waits for every output.
"""

import contextlib
import importlib.util

import keras
import numpy as np

from keras_stn import config
from keras_stn import ops as stn_ops

THETA = ":theta"


def _importable(name):
    return importlib.util.find_spec(name) is not None


def base_names(backend):
    """The variants (without `:theta`) that run under `backend`, ours first,
    then the peers."""
    names = {
        "tensorflow": [
            "stn",
            "stn-xla",
            "stn-split",
            "stn-xla-split",
            "stn-xla-framed",
            "stn-det",
            "twin",
            "twin-xla",
        ],
        "jax": [
            "stn-jit",
            "stn-jit-framed",
            "stn-jit-clipped",
            "stn-jit-split",
            "stn-jit-det",
            "jax-mc",
            "jax-mc-exact",
        ],
        "torch": ["stn-eager", "stn-eager-det", "stn-compile"],
    }[backend]
    if _importable("torch"):
        names.append("torch")
    return names


def all_names(backend):
    """Every variant of `backend`, each also as its `:theta` form."""
    return [n + s for n in base_names(backend) for s in ("", THETA)]


def split(variant):
    """`(base name, theta_only)` of a variant name."""
    if variant.endswith(THETA):
        return variant.removesuffix(THETA), True
    return variant, False


def framework(variant):
    """The framework that runs a variant: `torch`, `jax` or Keras'
    backend."""
    base, _ = split(variant)
    if base == "torch":
        return "torch"
    if base.startswith("jax-mc"):
        return "jax"
    return keras.backend.backend()


def build(variant, data, gpu):
    """Returns `(forward, step)` for `variant` on the workload `data`.

    Args:
        variant: a name from `all_names`.
        data: dict of numpy `images` `(B, H, W, C)`, `theta` `(B, 2, 3)`,
            `target` `(B, H_out, W_out, C)` and `out_size`.
        gpu: bool, whether the backend runs on a GPU (the torch peer then
            runs on CUDA).
    """
    base, theta_only = split(variant)
    out_size = data["out_size"]
    if base == "torch":
        return build_torch_peer(data, theta_only, gpu)
    if base in ("jax-mc", "jax-mc-exact"):
        sample = _map_coordinates_sample(out_size, base == "jax-mc-exact")
        return build_jax(sample, data, theta_only)
    if base.startswith("twin"):
        from tests.ops import reference

        def sample(images, theta):
            grid = reference.affine_grid(theta, out_size, align_corners=False)
            return reference.bilinear_sample(images, grid)
    else:
        sample = _stn_sampler(base)(out_size)
    if base.startswith("stn-jit"):
        return build_jax(sample, data, theta_only)
    if base.startswith("stn-eager") or base == "stn-compile":
        compiled = base == "stn-compile"
        return build_torch_backend(sample, data, theta_only, compiled)
    return build_tf(sample, data, theta_only, gpu, jit="-xla" in base)


def to_numpy(x):
    """A TensorFlow, JAX or PyTorch tensor as a numpy array."""
    if hasattr(x, "detach"):  # torch
        return x.detach().cpu().numpy()
    return np.asarray(x)


# Variant-name suffixes of the package's ops: `-det`, the deterministic
# image gradient; `-framed` / `-clipped` / `-split`, that gather layout
# instead of the device's default (`keras_stn.config.set_gather_layout`).
LAYOUT_SUFFIXES = {
    "-framed": "framed",
    "-clipped": "clipped",
    "-split": "split",
}


def _stn_sampler(base):
    """`make_sample(out_size)` for a variant of the package's ops."""
    layout = next(
        (v for k, v in LAYOUT_SUFFIXES.items() if base.endswith(k)), None
    )
    deterministic = base.endswith("-det")

    def make_sample(out_size):
        return _stn_sample(out_size, layout, deterministic)

    return make_sample


@contextlib.contextmanager
def gather_layout(layout):
    """Sets `keras_stn.config`'s gather layout inside the block (None: as
    it is); the ops read it when traced (JAX and TensorFlow) or called."""
    previous = config.gather_layout()
    config.set_gather_layout(layout or previous)
    try:
        yield
    finally:
        config.set_gather_layout(previous)


def _stn_sample(out_size, layout=None, deterministic=False):
    """`sample(images, theta)` with the package's ops in `layout`."""

    def sample(images, theta):
        with gather_layout(layout):
            grid = stn_ops.affine_grid(theta, out_size)
            return stn_ops.bilinear_sample(
                images, grid, deterministic=deterministic
            )

    return sample


# TensorFlow: the package's ops (`stn`) and the plain-autodiff twin.


# The builders below take `sample(images, theta)` and the workload `data`
# (images of any rank, channels last); the volume benchmark uses them too.


def build_tf(sample, data, theta_only, gpu, jit):
    """`(forward, step)` of `sample` in `tf.function`s (`jit`: whole-graph
    XLA)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per variant: retracing
    images = tf.constant(data["images"])
    theta = tf.constant(data["theta"])
    target = tf.constant(data["target"])

    @tf.function(jit_compile=jit)
    def forward_fn(images, theta):
        return sample(images, theta)

    @tf.function(jit_compile=jit)
    def step_fn(images, theta, target):
        with tf.GradientTape() as tape:
            tape.watch(theta)
            if not theta_only:
                tape.watch(images)
            output = sample(images, theta)
            loss = 0.5 * tf.reduce_sum(tf.square(output - target))
        sources = [theta] if theta_only else [images, theta]
        return loss, tape.gradient(loss, sources)

    def wait(tensors):
        # A tf.function on the CPU returns once it has run; on a GPU its
        # kernels may still be queued: fetching one value of each waits.
        if gpu:
            for t in tf.nest.flatten(tensors):
                tf.reshape(t, [-1])[0].numpy()

    def forward():
        output = forward_fn(images, theta)
        wait(output)
        return output

    def step():
        loss, grads = step_fn(images, theta, target)
        loss.numpy()
        wait(grads)
        return loss, grads

    return forward, step


# JAX: the package's ops under jax.jit, and map_coordinates.


def _map_coordinates_sample(out_size, exact=False):
    """`sample(images, theta)` as a JAX user writes it: the affine points
    in pixel coordinates, `map_coordinates(order=1)` per image and
    channel (vmap); zeros outside, as `padding_mode="zeros"`. The points
    are an einsum, which JAX computes in TF32 on GPUs by default (off by a
    fifth of a pixel at 448 pixels); `exact` writes them as products and
    sums in float32 instead (`jax-mc-exact`)."""
    import jax
    import jax.numpy as jnp
    from jax.scipy import ndimage

    out_height, out_width = out_size

    def axis(n):  # pixel centres in [-1, 1] (align_corners=False)
        return (2.0 * jnp.arange(n, dtype="float32") + 1.0) / n - 1.0

    y, x = jnp.meshgrid(axis(out_height), axis(out_width), indexing="ij")
    base = jnp.stack([x, y, jnp.ones_like(x)], axis=-1).reshape(-1, 3)

    def one_channel(channel, rows, cols):
        return ndimage.map_coordinates(
            channel, [rows, cols], order=1, mode="constant", cval=0.0
        )

    per_channel = jax.vmap(one_channel, in_axes=(2, None, None), out_axes=-1)
    per_image = jax.vmap(per_channel)

    def sample(images, theta):
        batch, height, width, channels = images.shape
        if exact:
            points = sum(
                base[None, :, None, k] * theta[:, None, :, k] for k in range(3)
            )
        else:
            points = jnp.einsum("pk,bjk->bpj", base, theta)  # (B, P, 2): x, y
        cols = ((points[..., 0] + 1.0) * width - 1.0) / 2.0
        rows = ((points[..., 1] + 1.0) * height - 1.0) / 2.0
        output = per_image(images, rows, cols)
        return output.reshape(batch, out_height, out_width, channels)

    return sample


def build_jax(sample, data, theta_only):
    """`(forward, step)` of `sample` under `jax.jit`."""
    import jax
    import jax.numpy as jnp

    images = jnp.asarray(data["images"])
    theta = jnp.asarray(data["theta"])
    target = jnp.asarray(data["target"])

    def loss_fn(images, theta, target):
        output = sample(images, theta)
        return 0.5 * jnp.sum(jnp.square(output - target))

    forward_fn = jax.jit(sample)
    argnums = (1,) if theta_only else (0, 1)
    step_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=argnums))

    def forward():
        # JAX dispatches asynchronously, on the CPU too.
        return jax.block_until_ready(forward_fn(images, theta))

    def step():
        loss, grads = step_fn(images, theta, target)
        float(loss)
        return loss, list(jax.block_until_ready(grads))

    return forward, step


# PyTorch: the package's ops on Keras' torch backend, and PyTorch's own.


def _torch_wait(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_torch_backend(sample, data, theta_only, compiled):
    """`(forward, step)` of `sample` on Keras' PyTorch backend, eager or
    under `torch.compile`."""
    import torch

    # Keras' torch backend puts tensors on its device (CUDA when present).
    images = keras.ops.convert_to_tensor(data["images"])
    theta = keras.ops.convert_to_tensor(data["theta"])
    target = keras.ops.convert_to_tensor(data["target"])
    images.requires_grad_(not theta_only)
    theta.requires_grad_(True)
    sources = [theta] if theta_only else [images, theta]

    def loss_fn(images, theta, target):
        output = sample(images, theta)
        return 0.5 * torch.sum(torch.square(output - target))

    forward_fn = sample
    if compiled:  # the forward compiled; autograd runs its compiled backward
        forward_fn = torch.compile(sample)
        loss_fn = torch.compile(loss_fn)

    def forward():
        with torch.no_grad():
            output = forward_fn(images, theta)
        _torch_wait(output.device)
        return output

    def step():
        loss = loss_fn(images, theta, target)
        grads = torch.autograd.grad(loss, sources)
        loss.item()
        _torch_wait(loss.device)
        return loss, list(grads)

    return forward, step


def build_torch_peer(data, theta_only, gpu):
    """PyTorch's `affine_grid` + `grid_sample`, channels first as PyTorch
    wants (NCHW, or NCDHW for volumes)."""
    import torch
    import torch.nn.functional as functional

    device = torch.device(
        "cuda" if gpu and torch.cuda.is_available() else "cpu"
    )
    rank = data["images"].ndim
    channels_first = (0, rank - 1, *range(1, rank - 1))
    channels_last = (0, *range(2, rank), 1)

    def to_torch(array):
        tensor = torch.from_numpy(array).permute(*channels_first)
        return tensor.contiguous().to(device)

    images = to_torch(data["images"]).requires_grad_(not theta_only)
    theta = torch.from_numpy(data["theta"]).to(device).requires_grad_()
    target = to_torch(data["target"])
    size = (images.shape[0], images.shape[1], *data["out_size"])
    sources = [theta] if theta_only else [images, theta]

    def sample(images, theta):
        grid = functional.affine_grid(theta, size, align_corners=False)
        return functional.grid_sample(
            images,
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )

    def forward():
        with torch.no_grad():
            output = sample(images, theta)
        _torch_wait(device)
        return output.permute(*channels_last)

    def step():
        loss = 0.5 * torch.sum(torch.square(sample(images, theta) - target))
        grads = list(torch.autograd.grad(loss, sources))
        loss.item()
        _torch_wait(device)
        if not theta_only:
            grads[0] = grads[0].permute(*channels_last)
        return loss, grads

    return forward, step

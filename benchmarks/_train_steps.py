"""One training step of a Keras model, written for each backend.

A step is what a custom training loop runs: the model's forward pass
(`training=True`), the sparse cross-entropy, the gradients w.r.t. the
trainable weights, the optimizer's update, and the loss returned and read
back to the host. It is written out rather than `model.train_on_batch`,
whose per-call Python work (data adapters, metric updates, logs) would add
the same constant to every network and shrink their ratios towards 1.

- TensorFlow: a `tf.function` with `tf.GradientTape` and
  `optimizer.apply`; configurations `op-xla` and `plain` (`tf.function`,
  the samplers traced with `keras_stn.config.set_xla_samplers(True)` or
  `False`) and `jit` (`tf.function(jit_compile=True)`);
- JAX: `jit`, the stateless step Keras' own JAX trainer runs:
  `jax.jit` of `model.stateless_call`, `jax.value_and_grad` and
  `optimizer.stateless_apply`, with the state buffers donated;
- PyTorch: `eager`, `torch.autograd.grad` and `optimizer.apply` under
  `torch.no_grad()`.

With `input_grad`, a step also computes the gradient w.r.t. its input
images (reduced to a sum that it returns, so that it is not pruned): the
gradient a transformer in front of the network needs at its output.
"""

import contextlib

import keras

from keras_stn import config as stn_config


def configs(transformer):
    """The configurations a network runs in under the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return (
            ("op-xla", "jit", "plain")
            if transformer
            else ("tf.function", "jit")
        )
    return ("jit",) if backend == "jax" else ("eager",)


def input_grad_config():
    """The configuration of the plain network's step with input gradient."""
    return configs(False)[0]


def make_step(model, optimizer, config, input_grad=False):
    """Returns `step(images, labels) -> float loss` for the backend.

    The call returns once the loss is on the host and the update is done.
    Its first call traces and compiles; on TensorFlow that call must run
    under `sampler_setting(config)` for the configuration to take effect.
    """
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_step(model, optimizer, loss_fn, config == "jit", input_grad)
    if backend == "jax":
        return _jax_step(model, optimizer, loss_fn, input_grad)
    return _torch_step(model, optimizer, loss_fn, input_grad)


@contextlib.contextmanager
def sampler_setting(config):
    """Sets `keras_stn.config.set_xla_samplers` for a configuration's trace
    (on for `op-xla`, off for `plain`), back to the default after it."""
    stn_config.set_xla_samplers({"op-xla": True, "plain": False}.get(config))
    try:
        yield
    finally:
        stn_config.set_xla_samplers(None)


def _tf_step(model, optimizer, loss_fn, jit, input_grad):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per variant: retracing

    @tf.function(jit_compile=jit)
    def step_fn(images, labels):
        with tf.GradientTape() as tape:
            if input_grad:
                tape.watch(images)
            loss = loss_fn(labels, model(images, training=True))
        variables = model.trainable_variables
        sources = variables + [images] if input_grad else variables
        grads = tape.gradient(loss, sources)
        optimizer.apply(grads[: len(variables)], variables)
        if input_grad:
            return loss, tf.reduce_sum(grads[-1])
        return loss

    gpu = bool(tf.config.list_physical_devices("GPU"))

    def step(images, labels):
        loss = tf.nest.flatten(step_fn(images, labels))[0]
        value = float(loss)  # waits for the step
        if gpu:  # and for its update, still queued on the device
            model.trainable_variables[-1].numpy()
        return value

    step.traced = step_fn
    return step


def xla_functions(step, images, labels):
    """Functions marked for XLA compilation in a TensorFlow step's graph
    (the per-op sampler kernels; a `jit` step itself is not counted)."""
    graph = step.traced.get_concrete_function(images, labels).graph
    return sum(
        1
        for function in graph.as_graph_def().library.function
        if function.attr["_XlaMustCompile"].b
    )


def _jax_step(model, optimizer, loss_fn, input_grad):
    import jax
    import jax.numpy as jnp

    def compute_loss(trainable, non_trainable, images, labels):
        predictions, non_trainable = model.stateless_call(
            trainable, non_trainable, images, training=True
        )
        return loss_fn(labels, predictions), non_trainable

    grad_fn = jax.value_and_grad(
        compute_loss, argnums=(0, 2) if input_grad else 0, has_aux=True
    )

    def step_fn(state, images, labels):
        trainable, non_trainable, optimizer_vars = state
        (loss, non_trainable), grads = grad_fn(
            trainable, non_trainable, images, labels
        )
        extra = None
        if input_grad:
            grads, image_grads = grads
            extra = jnp.sum(image_grads)
        trainable, optimizer_vars = optimizer.stateless_apply(
            optimizer_vars, grads, trainable
        )
        return loss, extra, (trainable, non_trainable, optimizer_vars)

    step_fn = jax.jit(step_fn, donate_argnums=0)
    # Copies: the step donates its state, which would otherwise delete the
    # buffers of the model's own variables.
    state = [
        (
            [jnp.copy(v.value) for v in model.trainable_variables],
            [jnp.copy(v.value) for v in model.non_trainable_variables],
            [jnp.copy(v.value) for v in optimizer.variables],
        )
    ]

    def step(images, labels):
        loss, _, new_state = step_fn(state[0], images, labels)
        state[0] = new_state
        value = float(loss)
        jax.block_until_ready(new_state)  # dispatch is asynchronous
        return value

    return step


def _torch_step(model, optimizer, loss_fn, input_grad):
    import torch

    variables = model.trainable_variables

    def step(images, labels):
        if input_grad:
            images = images.detach().requires_grad_(True)
        loss = loss_fn(labels, model(images, training=True))
        sources = [v.value for v in variables]
        if input_grad:
            sources.append(images)
        grads = torch.autograd.grad(loss, sources)
        with torch.no_grad():
            optimizer.apply(list(grads[: len(variables)]), variables)
        if input_grad:
            grads[-1].sum().item()
        value = loss.item()
        if loss.device.type == "cuda":
            torch.cuda.synchronize(loss.device)
        return value

    return step

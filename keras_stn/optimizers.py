"""Per-variable learning-rate multipliers for any Keras optimizer.

The paper trains the localization network with a smaller learning rate than
the rest. Scaling the gradient that reaches theta (`lr_multiplier` on the
layers) is that under SGD, but adaptive optimizers (Adam, RMSprop) divide
the gradient's scale out. `with_lr_multipliers` scales the *learning rate*
each variable's update is computed with, so it is a learning-rate
multiplier under every optimizer.

- `with_lr_multipliers(optimizer, multipliers)`: a copy of `optimizer`
  whose update of the variables named by `multipliers` uses the learning
  rate times their factor. The factors are resolved when the optimizer is
  built and kept in its state (`lr_factors`), so they survive `.keras`
  saving and loading, where variable paths may change.
- `localization_multipliers(model, factor)`: the mapping for every spatial
  transformer of a model (localization trunk and heads).
"""

import re

import keras

from keras_stn.utils import argument_validation

_CLASSES = {}  # Keras optimizer class -> its multiplied subclass
_BASES = {}  # and back


def _check_multipliers(multipliers):
    if not isinstance(multipliers, dict) or not all(
        isinstance(key, str) for key in multipliers
    ):
        raise ValueError(
            "`multipliers` must be a dict mapping variable-path regular "
            "expressions (str) to positive numbers. Received: "
            f"multipliers={multipliers!r}"
        )
    checked = {}
    for pattern, factor in multipliers.items():
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                "`multipliers` keys must be regular expressions. Received: "
                f"{pattern!r} ({error})"
            ) from None
        checked[pattern] = argument_validation.check_positive_float(
            factor, f"multipliers[{pattern!r}]"
        )
    return checked


def _multiplied_class(base):
    """The subclass of the Keras optimizer class `base` with multipliers."""
    if base in _CLASSES:
        return _CLASSES[base]

    class Multiplied(base):
        def __init__(self, *args, multipliers=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.multipliers = _check_multipliers(multipliers or {})
            self._patterns = [
                (re.compile(pattern), factor)
                for pattern, factor in self.multipliers.items()
            ]
            self.lr_factors = None

        def build(self, variables):
            """Also fixes each variable's factor, by its path now, in the
            optimizer variable `lr_factors` (one per variable, in the
            order of `variables`). It is saved and loaded with the rest of
            the optimizer's state, which Keras matches to the variables by
            that order: a loaded model's variable paths may differ (a
            nested model's trunk loses its outer name), its factors not."""
            if self.built:
                return
            super().build(variables)
            factors = [self._pattern_factor(v) for v in variables]
            self.lr_factors = self.add_variable(
                shape=(len(factors),),
                initializer=keras.initializers.Constant(factors),
                dtype="float32",
                name="lr_factors",
            )

        def _pattern_factor(self, variable):
            path = _path(variable)
            for pattern, factor in self._patterns:
                if pattern.search(path):
                    return factor
            return 1.0

        def lr_multiplier(self, variable):
            """The factor of `variable`: once built, the one stored for it
            in `lr_factors` (the one in use); before, that of the first
            pattern that matches its `path` (`re.search`), else 1."""
            if self.lr_factors is None:
                return self._pattern_factor(variable)
            index = self._get_variable_index(variable)
            return float(keras.ops.convert_to_numpy(self.lr_factors[index]))

        def update_step(self, gradient, variable, learning_rate):
            factor = self.lr_factors[self._get_variable_index(variable)]
            learning_rate = learning_rate * keras.ops.cast(
                factor, keras.backend.standardize_dtype(learning_rate.dtype)
            )
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "multipliers": self.multipliers}

    name = f"Multiplied{base.__name__}"
    Multiplied.__name__ = Multiplied.__qualname__ = name
    Multiplied.__doc__ = (
        f"`keras.optimizers.{base.__name__}` with per-variable learning-rate "
        "multipliers (`keras_stn.optimizers.with_lr_multipliers`)."
    )
    registered = keras.saving.register_keras_serializable(
        package="keras_stn", name=name
    )(Multiplied)
    _CLASSES[base] = registered
    _BASES[registered] = base
    return registered


def _path(variable):
    """A Keras variable's `path`. On TensorFlow `update_step` receives the
    backing `tf.Variable`, which Keras names `<path>:0`."""
    path = getattr(variable, "path", None)
    if path is None:
        path = variable.name.rsplit(":", 1)[0]
    return path


def _public_class(optimizer):
    """The public Keras class of `optimizer` (on the PyTorch backend Keras
    swaps some optimizers for fused versions that do not call
    `update_step`; their public class does), and that of a multiplied
    optimizer (its multipliers are replaced, never compounded)."""
    cls = type(optimizer)
    if cls in _BASES:
        return _BASES[cls]
    public = getattr(keras.optimizers, cls.__name__, None)
    if isinstance(public, type) and isinstance(optimizer, public):
        return public
    if isinstance(public, type) and cls.__module__.startswith("keras."):
        return public
    return cls


def with_lr_multipliers(optimizer, multipliers):
    """Returns a copy of `optimizer` with per-variable learning rates.

    Each variable whose `path` matches a pattern of `multipliers`
    (`re.search`, first match wins) is updated as if the learning rate
    (schedule included) were multiplied by the pattern's factor; the others
    as before. This holds for every optimizer, adaptive ones included,
    because the factor scales the learning rate `update_step` receives,
    not the gradient. Weight decay (AdamW) is not scaled. The copy is a
    registered Keras class (`keras_stn>Multiplied<Name>`), so a compiled
    model with it saves and loads.

    The patterns are matched once, when the optimizer is built (its first
    step, or `optimizer.build(variables)`); the factors found are kept in
    the optimizer variable `lr_factors` and saved and loaded with its
    state, so a model loaded from a `.keras` file (whose variable paths may
    differ from the original's) goes on with the same factors.

    An optimizer that already has multipliers gets `multipliers` instead
    of its own: wrapping again replaces them, never multiplies them. A
    `keras.optimizers.LossScaleOptimizer` (mixed precision) is rebuilt
    around a multiplied copy of its inner optimizer, with its own settings.

    Args:
        optimizer: a Keras optimizer instance (not yet used for training).
        multipliers: dict `{regex: factor}`, factors finite and > 0, e.g.
            from `localization_multipliers(model, 0.1)`.
    Returns:
        A new optimizer of the same kind and configuration.
    Raises:
        ValueError: `optimizer` is not a Keras optimizer, or bad
            `multipliers`.

    Example:
    >>> import keras
    >>> optimizer = with_lr_multipliers(
    ...     keras.optimizers.Adam(1e-3), {"^localization/": 0.1}
    ... )
    >>> type(optimizer).__name__
    'MultipliedAdam'
    >>> type(with_lr_multipliers(optimizer, {"^head/": 0.5})).__name__
    'MultipliedAdam'
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            "`optimizer` must be a keras.optimizers.Optimizer instance. "
            f"Received: optimizer={optimizer!r}"
        )
    multipliers = _check_multipliers(multipliers)
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        # Its `apply` hands the unscaled gradients to the inner optimizer,
        # whose `update_step` is the one that runs.
        config = optimizer.get_config()
        config["inner_optimizer"] = keras.saving.serialize_keras_object(
            with_lr_multipliers(optimizer.inner_optimizer, multipliers)
        )
        return type(optimizer).from_config(config)
    config = optimizer.get_config()
    config.pop("multipliers", None)
    cls = _multiplied_class(_public_class(optimizer))
    return cls.from_config({**config, "multipliers": multipliers})


def localization_multipliers(model, factor):
    """`{regex: factor}` for the variables of every spatial transformer.

    The localization trunk and the regression heads of each
    `SpatialTransformer` (and subclass) in `model`, nested ones included,
    matched by their exact variable paths.

    Args:
        model: a built Keras model or layer.
        factor: finite number > 0, e.g. the paper's 0.1 under SGD.
    Returns:
        dict `{regex: factor}` for `with_lr_multipliers`.
    Raises:
        ValueError: a bad `factor`, an unbuilt model, or a model with no
            spatial transformer.
    """
    from keras_stn.layers import spatial_transformer

    factor = argument_validation.check_positive_float(factor, "factor")
    if not isinstance(model, keras.layers.Layer) or not model.built:
        raise ValueError(
            "`model` must be a built Keras model or layer. Received: "
            f"model={model!r}"
        )
    transformers = [
        layer
        for layer in _layers(model)
        if isinstance(layer, spatial_transformer.SpatialTransformer)
    ]
    if not transformers:
        raise ValueError(
            "`model` must contain a SpatialTransformer. Received: model "
            f"{model.name!r} with none"
        )
    return {
        f"^{re.escape(variable.path)}$": factor
        for layer in transformers
        for variable in layer.trainable_variables
    }


def _layers(layer):
    """`layer` and every layer below it (`keras.Model.layers` and the
    layers a custom layer holds in public attributes), each once."""
    seen, order, stack = set(), [], [layer]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        children = []
        if isinstance(current, keras.Model):
            children.extend(current.layers)
        for name, value in vars(current).items():
            if name.startswith("_"):
                continue
            values = value if isinstance(value, (list, tuple)) else [value]
            children.extend(
                v for v in values if isinstance(v, keras.layers.Layer)
            )
        stack.extend(reversed(children))
    return order


def _register_builtins():
    """Registers the multiplied form of every public Keras optimizer, so a
    saved model loads once `keras_stn` is imported."""
    for name in dir(keras.optimizers):
        cls = getattr(keras.optimizers, name)
        if (
            isinstance(cls, type)
            and issubclass(cls, keras.optimizers.Optimizer)
            and cls is not keras.optimizers.Optimizer
            and name not in ("LossScaleOptimizer", "MultiOptimizer")
        ):
            _multiplied_class(cls)


_register_builtins()

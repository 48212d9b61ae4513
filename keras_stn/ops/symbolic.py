"""The public ops on symbolic tensors (`keras.Input`), as `keras.ops` work.

Called on a `keras.KerasTensor` in a functional model, a public
`keras_stn.ops` function becomes one `TensorOp` node of the graph: an
operation that calls the function on the real tensors when the model runs,
infers its output shape by tracing it, and is saved with the model by the
function's name and its non-tensor arguments. Called on real tensors, the
function runs directly, as before.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import keras

# The functions `TensorOp` may call, by name (filled by `symbolic`).
_FUNCTIONS: dict[str, Callable[..., Any]] = {}


# The wrapper has the signature of the function it wraps.
_F = TypeVar("_F", bound=Callable[..., Any])


def _is_tensor(value):
    return keras.backend.is_keras_tensor(value) or (
        hasattr(value, "shape") and hasattr(value, "dtype")
    )


@keras.saving.register_keras_serializable(package="keras_stn")
class TensorOp(keras.Operation):
    """One call of a public `keras_stn.ops` function in a functional graph.

    Args:
        function: str, the function's name in `keras_stn.ops`.
        tensor_names: sequence of str, the names of the arguments that are
            tensors, in the order `call` receives them.
        arguments: dict, the other (JSON-serializable) arguments.
        name: optional str.
    Call arguments:
        *tensors: the tensor arguments, in the order of `tensor_names`.
    Returns:
        What the function returns.
    """

    def __init__(self, function, tensor_names, arguments=None, name=None):
        if function not in _FUNCTIONS:
            raise ValueError(
                "`function` must name a public keras_stn.ops function, one "
                f"of {sorted(_FUNCTIONS)}. Received: function={function!r}"
            )
        super().__init__(name=name)
        self.function = function
        self.tensor_names = tuple(tensor_names)
        self.arguments = dict(arguments or {})

    def call(self, *tensors):
        return _FUNCTIONS[self.function](
            **dict(zip(self.tensor_names, tensors)), **self.arguments
        )

    def get_config(self):
        return {
            "function": self.function,
            "tensor_names": list(self.tensor_names),
            "arguments": self.arguments,
            "name": self.name,
        }


def symbolic(function: _F) -> _F:
    """Returns `function` taking `keras.KerasTensor`s as well (a `TensorOp`).

    Args:
        function: a public op; its tensors are the arguments with a `shape`
            and a `dtype`, everything else is configuration.
    Returns:
        The wrapped function, with `function`'s name, docstring and
        signature.
    """
    signature = inspect.signature(function)
    _FUNCTIONS[function.__name__] = function

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        values = (*args, *kwargs.values())
        if not any(keras.backend.is_keras_tensor(v) for v in values):
            return function(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        tensors = {
            name: value
            for name, value in bound.arguments.items()
            if _is_tensor(value)
        }
        arguments = {
            name: value
            for name, value in bound.arguments.items()
            if name not in tensors
        }
        operation = TensorOp(function.__name__, tuple(tensors), arguments)
        try:
            return operation(*tensors.values())
        except ValueError as error:
            # Keras wraps what shape inference raised in two messages about
            # `TensorOp`; the user called the function and should read its
            # own error (which names the argument) as a direct call gives.
            cause = error
            while isinstance(cause.__context__, ValueError):
                cause = cause.__context__
            raise cause from None

    return wrapper  # type: ignore[return-value]

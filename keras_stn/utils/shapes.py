"""Shapes: static where known, tensors where not."""

from keras import ops


def dims(x):
    """Returns the shape of `x`, static ints where known, else tensors."""
    dynamic = ops.shape(x)
    return [s if s is not None else dynamic[i] for i, s in enumerate(x.shape)]


# Plain words for the axis letters that recur across tensors.
_AXIS_WORDS = {"B": "batch size"}


def check_shapes(*specs):
    """Checks tensors' static shapes against declared forms, at once.

    Each spec is `(name, tensor, form)`, the form a tuple of axis labels:
    an int is a size the axis must have; a letter (`"B"`, `"H"`, ...)
    names a size, which every axis with that letter must share, across
    the specs. Dimensions unknown statically (None) pass; a traced graph
    checks those when it runs (`keras_stn.ops.backend.assert_dims`).

    Example: `check_shapes(("images", images, ("B", "H", "W", "C")),
    ("grid", grid, ("B", "H_out", "W_out", 2)))`.

    Raises:
        ValueError: naming the tensor, its expected form and the shape
            received: a wrong rank, a wrong fixed size, or a letter whose
            sizes differ (`images` and `grid` must have the same batch
            size).
    """
    seen = {}
    for name, tensor, form in specs:
        shape = tuple(tensor.shape)
        expected = "(" + ", ".join(str(axis) for axis in form) + ")"
        if len(shape) != len(form):
            raise ValueError(
                f"`{name}` must have shape {expected}. Received: "
                f"{name}.shape={shape} (rank {len(shape)})"
            )
        for axis, size in zip(form, shape):
            if size is None:
                continue
            if isinstance(axis, int):
                if size != axis:
                    raise ValueError(
                        f"`{name}` must have shape {expected}. Received: "
                        f"{name}.shape={shape}"
                    )
                continue
            if axis in seen and seen[axis][1] != size:
                other, _, other_shape = seen[axis]
                word = _AXIS_WORDS.get(axis, f"size {axis}")
                raise ValueError(
                    f"`{other}` and `{name}` must have the same {word}. "
                    f"Received: {other}.shape={other_shape}, "
                    f"{name}.shape={shape}"
                )
            seen.setdefault(axis, (name, size, shape))

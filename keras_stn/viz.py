"""Pictures of what spatial transformers do: views, sampled regions, figures.

`find_transformers` finds a model's transformers; `transformer_views` runs
the model and returns what every head sees and samples (with the layers'
public `recording_inputs` and `views`); `grid_outline` and `grid_boxes` turn a
sampling grid into the region it reads in the input image; `plot_views`
draws it all, `save_figure` and `save_animation` write PNGs and GIFs.
Matplotlib (and Pillow, which it brings) are imported only when drawing:
`pip install "keras-stn[examples]"`.
Convention: pixel coordinates are continuous, pixel (row i, column j)
covers `[j, j + 1] x [i, i + 1]`, so an image spans `[0, W] x [0, H]`
(matplotlib's `imshow(..., extent=(0, W, H, 0))`).
"""

import contextlib
import os
import sys

import keras
import numpy as np

from keras_stn.layers import spatial_transformer
from keras_stn.utils import argument_validation
from keras_stn.utils import files

_INSTALL_HINT = 'pip install "keras-stn[examples]"'


def new_figure(**kwargs):
    """A new matplotlib `Figure` on an Agg canvas: no pyplot, no window,
    and the process's backend left as it is (`Figure(**kwargs)`; add axes
    with `figure.subplots(...)`, write it with `save_figure`)."""
    try:
        from matplotlib import figure
        from matplotlib.backends import backend_agg
    except ImportError as error:
        raise ImportError(
            f"keras_stn.viz draws with matplotlib: {_INSTALL_HINT}"
        ) from error
    result = figure.Figure(**kwargs)
    backend_agg.FigureCanvasAgg(result)
    return result


def _pillow_image():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(
            f"keras_stn.viz writes GIFs with Pillow: {_INSTALL_HINT}"
        ) from error
    return Image


def _sublayers(value):
    """Layers held by one attribute value: a layer, or lists, tuples and
    dicts of them (nested), in order."""
    if isinstance(value, keras.layers.Layer):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _sublayers(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _sublayers(item)


def _children(layer):
    """`layer`'s direct sublayers, in the order they were assigned."""
    if isinstance(layer, keras.Model):
        return layer.layers
    # A custom layer: its attributes, in assignment order (`vars` keeps
    # it), and the layers they hold.
    return [
        child
        for value in vars(layer).values()
        for child in _sublayers(value)
        if child is not layer
    ]


def find_transformers(model, layer_name=None):
    """Every `SpatialTransformer` in `model`, depth first, each once.

    Subclasses such as `ParallelSpatialTransformers` count; nested models
    and layers are searched through `keras.Model.layers` and, for custom
    layers, the layers their attributes hold (directly or in lists,
    tuples and dicts), in assignment order. A transformer's own
    localization is not searched.

    Args:
        model: a `keras.Model` or layer.
        layer_name: optional str, keep only the transformer of this name.
    Returns:
        A non-empty list of `SpatialTransformer` layers, in model order.
    Raises:
        ValueError: `model` holds no transformer, or none is named
            `layer_name`.
    """
    argument_validation.check_optional_str(layer_name, "layer_name")
    found, seen = [], {id(model)}

    def visit(layer):
        for child in _children(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, spatial_transformer.SpatialTransformer):
                found.append(child)
            else:
                visit(child)

    visit(model)
    name = getattr(model, "name", repr(model))
    if not found:
        raise ValueError(
            f"`model` must contain a SpatialTransformer layer. Received: "
            f"model {name!r} with none"
        )
    if layer_name is None:
        return found
    named = [layer for layer in found if layer.name == layer_name]
    if not named:
        raise ValueError(
            f"`layer_name` must name a transformer of model {name!r}, one "
            f"of {[layer.name for layer in found]}. Received: "
            f"layer_name={layer_name!r}"
        )
    return named


def _inputs_of(model, layers, images):
    """What each of `layers` receives (its first call) when `model` runs
    on `images` in inference mode."""
    if not model.built:
        # Building traces the model symbolically; record eager calls only.
        model(images, training=False)
    with contextlib.ExitStack() as stack:
        received = [
            stack.enter_context(layer.recording_inputs()) for layer in layers
        ]
        model(images, training=False)
    for layer, calls in zip(layers, received):
        if not calls:
            raise ValueError(
                f"Layer {layer.name!r} was not called when "
                f"{getattr(model, 'name', repr(model))!r} ran on `images`, "
                "so it has no view."
            )
    return [calls[0] for calls in received]


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def transformer_views(model, images, layer_name=None):
    """What each spatial transformer in `model` receives, predicts and samples.

    Every `SpatialTransformer` (subclasses such as
    `ParallelSpatialTransformers` included) is found in `model` as
    `find_transformers` finds them. The model runs once on `images`, in
    inference mode, while each transformer records what it receives
    (`SpatialTransformer.recording_inputs`, its first call if it is called
    several times); its `views` then give each head's theta, grid and
    output, exactly as its `call` computes them.

    Args:
        model: a `keras.Model` (functional, Sequential or subclassed) or
            layer holding one or more transformers.
        images: float array `(B, H, W, C)`, the model's input.
        layer_name: optional str, keep only the transformer of this name.
    Returns:
        A list with one dict per transformer, in model order:
        `name` (str), `transform` (str), `align_corners` (bool), `inputs`
        `(B, H, W, C)` (what the layer received), and lists of one NumPy
        array per head (N heads, 1 for `SpatialTransformer`): `theta`
        `(B, P)`, `grids` `(B, H_out, W_out, 2)`, `outputs`
        `(B, H_out, W_out, C)`.
    Raises:
        ValueError: `images` is not `(B, H, W, C)`, `model` holds no
            transformer, none is named `layer_name`, or one is not called
            when `model` runs.
    """
    images = argument_validation.check_images(images)
    layers = find_transformers(model, layer_name)
    inputs = _inputs_of(model, layers, images)
    return [_view(layer, x) for layer, x in zip(layers, inputs)]


def _view(layer, inputs):
    views = layer.views(inputs, training=False)
    return {
        "name": layer.name,
        "transform": layer.transform,
        "align_corners": layer.align_corners,
        "inputs": _numpy(inputs),
        **{
            key: [_numpy(tensor) for tensor in tensors]
            for key, tensors in views.items()
        },
    }


def _pixels(grid, input_size, align_corners):
    """Normalised `(x, y)` points -> continuous pixel coordinates."""
    height, width = argument_validation.check_size(input_size, "input_size")
    size = np.array([width, height], dtype=np.float64)
    if align_corners:
        return (grid + 1.0) / 2.0 * (size - 1.0) + 0.5
    return (grid + 1.0) * size / 2.0


def _extend(points, axis):
    """Adds a row of points half a step beyond each end of `axis`."""
    first = np.take(points, [0], axis=axis)
    last = np.take(points, [-1], axis=axis)
    if points.shape[axis] > 1:
        before = 0.5 * (first - np.take(points, [1], axis=axis))
        after = 0.5 * (last - np.take(points, [-2], axis=axis))
    else:
        before = after = np.zeros_like(first)
    return np.concatenate([first + before, points, last + after], axis=axis)


def _footprint(points):
    """`(..., H_out, W_out, 2)` -> `(..., H_out + 2, W_out + 2, 2)`: the
    points with a border half a sample spacing outside them."""
    return _extend(_extend(points, axis=-2), axis=-3)


def grid_outline(grid, input_size, align_corners=False):
    """The border of the region a sampling grid reads, in input pixels.

    The grid's points, extended by half their spacing at each edge (the
    footprint of the output pixels), traced clockwise on screen from the
    top-left corner and closed. Exact for affine grids and follows
    projective and TPS grids point by point.
    Convention: grid `(x, y)` in `[-1, 1]` as `grid_sample`; pixels as the
    module docstring (the identity grid's outline is the image's border).

    Args:
        grid: float array `(H_out, W_out, 2)`.
        input_size: `(H, W)` of the sampled image.
        align_corners: bool, as the layer that made the grid. Defaults to
            `False`.
    Returns:
        float64 array `(2 * (H_out + W_out) + 5, 2)` of `(x, y)` pixel
        coordinates, first point repeated last.
    Raises:
        ValueError: a bad `grid` or `input_size`.
    """
    grid = argument_validation.check_array(
        grid, "grid", "(H_out, W_out, 2)", rank=3, last=2, non_empty=True
    )
    edge = _footprint(_pixels(grid, input_size, align_corners))
    return np.concatenate(
        [
            edge[0, :],
            edge[1:, -1],
            edge[-1, -2::-1],
            edge[-2::-1, 0],
        ]
    )


def grid_boxes(grids, input_size, align_corners=False):
    """Axis-aligned boxes around the regions sampling grids read.

    Each box encloses the footprint of the output pixels: the grid points
    extended by half their spacing at the grid's edges, so the identity
    grid's box is the whole image `[0, 0, W, H]`. Boxes are not clipped to
    the image. A tfds box `(y_min, x_min, y_max, x_max)` in fractions is
    `[x_min * W, y_min * H, x_max * W, y_max * H]` here.
    Convention: grid `(x, y)` in `[-1, 1]` as `grid_sample`; pixels as the
    module docstring.

    Args:
        grids: float array `(B, H_out, W_out, 2)`.
        input_size: `(H, W)` of the sampled images.
        align_corners: bool, as the layer that made the grids. Defaults to
            `False`.
    Returns:
        float64 array `(B, 4)`, `[x0, y0, x1, y1]` pixel coordinates.
    Raises:
        ValueError: a bad `grids` or `input_size`.

    Example:
    >>> import numpy as np
    >>> from keras_stn.ops import transforms
    >>> theta = np.array([[0.5, 0.5, 0.0]], "float32")  # right half, zoom 2
    >>> grids = transforms.grid_for("attention", theta, (8, 8))
    >>> grid_boxes(np.asarray(grids), (16, 16))
    array([[ 8.,  4., 16., 12.]])
    """
    grids = argument_validation.check_array(
        grids, "grids", "(B, H_out, W_out, 2)", rank=4, last=2, non_empty=True
    )
    points = _footprint(_pixels(grids, input_size, align_corners))
    low = points.min(axis=(1, 2))
    high = points.max(axis=(1, 2))
    return np.concatenate([low, high], axis=-1)


def box_iou(a, b):
    """Intersection over union of `[x0, y0, x1, y1]` boxes.

    Broadcasts like NumPy. A box with `x1 < x0` or `y1 < y0` has no area;
    two boxes with no area between them have IoU 0.

    Args:
        a: float array `(..., 4)`.
        b: float array `(..., 4)`.
    Returns:
        float64 array `(...)` in `[0, 1]`.
    Raises:
        ValueError: if either does not end in 4.

    Example:
    >>> box_iou([0, 0, 2, 2], [1, 0, 3, 2])
    array(0.33333333)
    """
    a = argument_validation.check_array(
        a, "a", "(..., 4), [x0, y0, x1, y1]", last=4
    )
    b = argument_validation.check_array(
        b, "b", "(..., 4), [x0, y0, x1, y1]", last=4
    )

    def area(box):
        return np.clip(box[..., 2] - box[..., 0], 0, None) * np.clip(
            box[..., 3] - box[..., 1], 0, None
        )

    low = np.maximum(a[..., :2], b[..., :2])
    high = np.minimum(a[..., 2:], b[..., 2:])
    inter = area(np.concatenate([low, high], axis=-1))
    union = area(a) + area(b) - inter
    safe = np.where(union > 0, union, 1.0)
    return np.where(union > 0, inter / safe, 0.0)


def _display_range(image):
    """`(low, high)` mapped to black and white: `(0, 1)` for images already
    in `[0, 1]`, else the image's own finite minimum and maximum."""
    finite = image[np.isfinite(image)]
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return low, (high if high > low else low + 1.0)


def _displayable(image, display_range):
    """`(H, W, C)` -> `(H, W)` or `(H, W, 3)` float64 in `[0, 1]`."""
    low, high = display_range
    image = np.nan_to_num(np.asarray(image, dtype=np.float64))
    image = np.clip((image - low) / (high - low), 0.0, 1.0)
    if image.shape[-1] == 3:
        return image
    if image.shape[-1] == 1:
        return image[..., 0]
    return image.mean(axis=-1)


def _show(axes, image, margin=0.0):
    """Shows `image` at pixel coordinates, `margin` (a fraction of its
    larger side) of grey around it."""
    height, width = image.shape[:2]
    axes.imshow(
        image,
        cmap="gray",
        vmin=0.0,
        vmax=1.0,
        extent=(0, width, height, 0),
        interpolation="nearest",
    )
    pad = margin * max(height, width)
    axes.set_xlim(-pad, width + pad)
    axes.set_ylim(height + pad, -pad)
    axes.set_facecolor("0.85")
    axes.set_xticks([])
    axes.set_yticks([])


def _draw_grid_lines(axes, points, count, colour):
    """`count` rows and columns of grid points inside the outline."""
    for axis in (0, 1):
        size = points.shape[axis]
        picks = np.linspace(0, size - 1, count + 2)[1:-1]
        for index in np.unique(np.round(picks).astype(int)):
            line = np.take(points, index, axis=axis)
            axes.plot(line[:, 0], line[:, 1], color=colour, lw=0.6, alpha=0.7)


def plot_views(view, labels=None, max_examples=8, title=None, grid_lines=8):
    """Draws one transformer's view: inputs, sampled regions, head outputs.

    One row per example; columns: the input, the input with each head's
    sampled region outlined (one head: red outline and `grid_lines` grid
    lines; several heads: one colour each, as the paper's CUB figure; a
    grey margin of 1/8 of the image shows outlines on and past its
    border), then each head's output ("head i", framed in its colour).
    C == 1 shows grey, C == 3 RGB, other C the channel mean. Each row is
    scaled by its input alone: kept as is when the input lies in `[0, 1]`,
    else its minimum and maximum map to black and white; outputs use the
    same scale, clipped, so the pictures stay comparable across training.
    Convention: pixels as the module docstring.

    Args:
        view: one dict from `transformer_views`.
        labels: optional sequence of ints or strings, one per example,
            shown at the left of each row.
        max_examples: positive int, the most rows. Defaults to 8.
        title: optional str, the figure's title.
        grid_lines: non-negative int, grid lines per direction drawn for a
            single head. Defaults to 8.
    Returns:
        A `matplotlib.figure.Figure` on an Agg canvas (not managed by
        pyplot, so it never opens a window), `rows x (N + 2)` axes.
    Raises:
        ValueError: bad `max_examples`, `grid_lines` or `labels`.
        ImportError: without matplotlib.
    """
    argument_validation.check_positive_int(max_examples, "max_examples")
    argument_validation.check_non_negative_int(grid_lines, "grid_lines")
    inputs = argument_validation.check_images(view["inputs"], "view['inputs']")
    rows = min(len(inputs), max_examples)
    labels = argument_validation.check_labels(labels, rows)
    heads = len(view["outputs"])
    align_corners = bool(view.get("align_corners", False))
    figure = new_figure(
        figsize=(2.0 * (heads + 2), 2.0 * rows + (0.4 if title else 0.0)),
        layout="constrained",
    )
    if title:
        figure.suptitle(title)
    axes_grid = figure.subplots(rows, heads + 2, squeeze=False)
    colours = (
        ["tab:red"] if heads == 1 else [f"C{i % 10}" for i in range(heads)]
    )
    size = inputs.shape[1:3]
    for row in range(rows):
        display_range = _display_range(inputs[row])
        image = _displayable(inputs[row], display_range)
        _show(axes_grid[row, 0], image)
        _show(axes_grid[row, 1], image, margin=0.125)
        name = f"#{row}" if labels is None else f"label {labels[row]}"
        axes_grid[row, 0].set_ylabel(name)
        for head in range(heads):
            points = np.asarray(view["grids"][head][row], dtype=np.float64)
            outline = grid_outline(points, size, align_corners)
            axes_grid[row, 1].plot(
                outline[:, 0], outline[:, 1], color=colours[head], lw=1.5
            )
            if heads == 1 and grid_lines:
                pixels = _pixels(points, size, align_corners)
                _draw_grid_lines(
                    axes_grid[row, 1], pixels, grid_lines, colours[0]
                )
            axes = axes_grid[row, 2 + head]
            _show(axes, _displayable(view["outputs"][head][row], display_range))
            for spine in axes.spines.values():
                spine.set_edgecolor(colours[head])
                spine.set_linewidth(2.0)
    column_titles = ["input", "sampled region" + ("s" if heads > 1 else "")]
    column_titles += [f"head {i}" for i in range(heads)]
    for axes, text in zip(axes_grid[0], column_titles):
        axes.set_title(text, fontsize=9)
    return figure


def save_figure(figure, path, dpi=100):
    """Writes `figure` as a PNG, atomically, and closes it.

    Args:
        figure: a `matplotlib.figure.Figure`.
        path: str or path-like; parent directories are created.
        dpi: positive number. Defaults to 100.
    Returns:
        `path`, as a str.
    Raises:
        ValueError: a bad `dpi`.
    """
    argument_validation.check_positive_float(dpi, "dpi")
    try:
        path = files.atomic_write(
            path, lambda temp: figure.savefig(temp, format="png", dpi=dpi)
        )
    finally:
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(figure)
    return path


def _frame(frame, image_lib):
    if isinstance(frame, (str, os.PathLike)):
        with image_lib.open(frame) as image:
            return image.convert("RGB")
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            "`frames` must hold PNG paths or uint8 arrays (H, W) / (H, W, 3)."
            f" Received: an array {array.dtype} of shape {array.shape}"
        )
    return image_lib.fromarray(array).convert("RGB")


def save_animation(frames, path, duration_ms=400):
    """Writes frames as a looping animated GIF, atomically.

    Frames of different sizes are padded with white at the right and bottom
    to the largest size. As Pillow does, identical consecutive frames merge
    into one longer frame.

    Args:
        frames: non-empty list of image paths (str or path-like) or uint8
            arrays `(H, W, 3)` (or `(H, W)`).
        path: str or path-like; parent directories are created.
        duration_ms: positive number, the time each frame shows. Defaults
            to 400.
    Returns:
        `path`, as a str.
    Raises:
        ValueError: empty `frames`, a bad frame or `duration_ms`.
        ImportError: without Pillow.
    """
    image_lib = _pillow_image()
    argument_validation.check_non_empty_sequence(
        frames, "frames", "PNG paths or uint8 arrays"
    )
    argument_validation.check_positive_float(duration_ms, "duration_ms")
    images = [_frame(frame, image_lib) for frame in frames]
    width = max(image.width for image in images)
    height = max(image.height for image in images)
    padded = []
    for image in images:
        canvas = image_lib.new("RGB", (width, height), "white")
        canvas.paste(image, (0, 0))
        padded.append(canvas)

    def write(temp):
        padded[0].save(
            temp,
            format="GIF",
            save_all=True,
            append_images=padded[1:],
            duration=duration_ms,
            loop=0,
        )

    return files.atomic_write(path, write)

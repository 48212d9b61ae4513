"""keras_stn.viz: sampled regions on hand-computed cases, views that match
the layers' own outputs, and figures that change exactly when theta does."""

import os
import sys

import keras
import numpy as np
import pytest

import keras_stn
from keras_stn import viz
from keras_stn.ops import transforms

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")


def _grids(transform, theta, size, align_corners=False):
    theta = np.asarray(theta, "float32")
    return np.asarray(
        transforms.grid_for(transform, theta, size, align_corners)
    )


def _images(shape=(3, 16, 16, 1), seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


def _numpy(x):
    # Torch tensors that require grad have no implicit NumPy conversion.
    return np.asarray(keras.ops.convert_to_numpy(x))


def _localization():
    return keras.Sequential(
        [keras.layers.Flatten(), keras.layers.Dense(4, activation="relu")]
    )


def _on_rectangle(points, box):
    """Every point lies on the border of `box` `[x0, y0, x1, y1]`."""
    x, y = points[:, 0], points[:, 1]
    x0, y0, x1, y1 = box
    tol = 1e-5
    on_x = np.isclose(x, x0, atol=tol) | np.isclose(x, x1, atol=tol)
    on_y = np.isclose(y, y0, atol=tol) | np.isclose(y, y1, atol=tol)
    inside = (x >= x0 - tol) & (x <= x1 + tol)
    inside &= (y >= y0 - tol) & (y <= y1 + tol)
    return bool(np.all((on_x | on_y) & inside))


# Regions --------------------------------------------------------------------


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_identity_region_is_the_whole_image(transform, align_corners):
    identity = transforms.get(transform).identity()[None]
    grids = _grids(transform, identity, (6, 8), align_corners)
    box = viz.grid_boxes(grids, (6, 8), align_corners)
    np.testing.assert_allclose(box, [[0.0, 0.0, 8.0, 6.0]], atol=1e-5)
    outline = viz.grid_outline(grids[0], (6, 8), align_corners)
    assert outline.shape == (2 * (6 + 8) + 5, 2)
    np.testing.assert_array_equal(outline[0], outline[-1])
    np.testing.assert_allclose(outline[0], [0.0, 0.0], atol=1e-5)
    assert _on_rectangle(outline, [0.0, 0.0, 8.0, 6.0])
    for corner in ([0, 0], [8, 0], [8, 6], [0, 6]):
        assert np.min(np.abs(outline - corner).sum(axis=1)) < 1e-5


def test_attention_region_by_hand():
    # scale 0.5, tx 0.5: output x in [-1, 1] reads input x in [0, 1] and
    # y in [-0.5, 0.5]; on a 16 x 16 image (pixel = (g + 1) * 16 / 2) that
    # is x in [8, 16], y in [4, 12], whatever the output size.
    grids = _grids("attention", [[0.5, 0.5, 0.0], [0.25, -0.5, 0.5]], (8, 8))
    boxes = viz.grid_boxes(grids, (16, 16))
    # Second: scale 0.25 around (-0.5, 0.5): x in [-0.75, -0.25] -> [2, 6],
    # y in [0.25, 0.75] -> [10, 14].
    np.testing.assert_allclose(boxes, [[8, 4, 16, 12], [2, 10, 6, 14]])
    outline = viz.grid_outline(grids[0], (16, 16))
    assert _on_rectangle(outline, [8, 4, 16, 12])
    # A 16 x 32 image (H, W): x scales by 32 / 2, y by 16 / 2.
    boxes = viz.grid_boxes(grids[:1], (16, 32))
    np.testing.assert_allclose(boxes, [[16, 4, 32, 12]])


def test_rotated_region_outline_follows_the_grid():
    # A quarter turn, input (x, y) = (-y_out, x_out), maps the square onto
    # itself: the box stays the image, but the outline, which starts at the
    # output's top-left corner (-1, -1), starts at input (1, -1): the top
    # right pixel corner (4, 0), and goes on down the right edge.
    grids = _grids("affine", [[0.0, -1.0, 0.0, 1.0, 0.0, 0.0]], (4, 4))
    np.testing.assert_allclose(
        viz.grid_boxes(grids, (4, 4)), [[0, 0, 4, 4]], atol=1e-5
    )
    outline = viz.grid_outline(grids[0], (4, 4))
    np.testing.assert_allclose(outline[0], [4.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(outline[1], [4.0, 0.5], atol=1e-5)
    assert _on_rectangle(outline, [0, 0, 4, 4])


def test_box_iou_cases():
    box = [0.0, 0.0, 2.0, 2.0]
    assert viz.box_iou(box, box) == 1.0
    assert viz.box_iou(box, [3.0, 3.0, 4.0, 4.0]) == 0.0
    np.testing.assert_allclose(viz.box_iou(box, [1.0, 0.0, 3.0, 2.0]), 1 / 3)
    # Broadcasting (2, 1, 4) x (1, 3, 4) -> (2, 3); empty boxes give 0.
    a = np.array([[box], [[0.0, 0.0, 0.0, 0.0]]])
    b = np.array([[box, [1.0, 0.0, 3.0, 2.0], [2.0, 2.0, 1.0, 1.0]]])
    np.testing.assert_allclose(
        viz.box_iou(a, b), [[1.0, 1 / 3, 0.0], [0.0, 0.0, 0.0]]
    )


def test_region_bad_arguments():
    with pytest.raises(ValueError, match="`grid`.*H_out, W_out, 2"):
        viz.grid_outline(np.zeros((2, 4, 4, 2)), (4, 4))
    with pytest.raises(ValueError, match="`grids`.*B, H_out, W_out, 2"):
        viz.grid_boxes(np.zeros((2, 4, 4, 3)), (4, 4))
    with pytest.raises(ValueError, match="`input_size`"):
        viz.grid_boxes(np.zeros((2, 4, 4, 2)), (4, 0))
    with pytest.raises(ValueError, match="`b`.*shape"):
        viz.box_iou([0, 0, 1, 1], [0, 0, 1])


# Views ----------------------------------------------------------------------


def test_views_of_a_sequential_model_starting_with_the_transformer():
    layer = keras_stn.SpatialTransformer(
        _localization(), transform="attention", output_size=(8, 8)
    )
    model = keras.Sequential([layer, keras.layers.Flatten()])
    images = _images()
    model(images)
    layer.heads[0].bias.assign([0.5, 0.5, 0.0])
    (view,) = viz.transformer_views(model, images)
    assert view["name"] == layer.name and view["transform"] == "attention"
    np.testing.assert_array_equal(view["inputs"], images)
    assert len(view["theta"]) == len(view["grids"]) == 1
    np.testing.assert_allclose(view["theta"][0], [[0.5, 0.5, 0.0]] * 3)
    assert view["grids"][0].shape == (3, 8, 8, 2)
    np.testing.assert_allclose(
        view["outputs"][0], _numpy(layer(images)), atol=1e-6
    )
    np.testing.assert_allclose(
        viz.grid_boxes(view["grids"][0], (16, 16)), [[8, 4, 16, 12]] * 3
    )


def test_views_of_a_functional_model_with_parallel_transformers():
    inputs = keras.Input((16, 16, 1))
    features = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    layer = keras_stn.ParallelSpatialTransformers(
        2, _localization(), output_size=(8, 8)
    )
    crops = layer(features)
    outputs = keras.layers.Concatenate()(crops)
    model = keras.Model(inputs, outputs)
    layer.heads[0].bias.assign([0.5, -0.5, -0.5])
    layer.heads[1].bias.assign([0.5, 0.5, 0.5])
    images = _images()
    (view,) = viz.transformer_views(model, images)
    conv = _numpy(keras.Model(inputs, features)(images))
    np.testing.assert_allclose(view["inputs"], conv, atol=1e-6)
    own = [_numpy(crop) for crop in keras.Model(inputs, crops)(images)]
    assert len(view["outputs"]) == len(view["grids"]) == 2
    for head in range(2):
        assert view["theta"][head].shape == (3, 3)
        assert view["grids"][head].shape == (3, 8, 8, 2)
        np.testing.assert_allclose(view["outputs"][head], own[head], atol=1e-6)
    boxes = [viz.grid_boxes(grid, (16, 16)) for grid in view["grids"]]
    np.testing.assert_allclose(boxes[0], [[0, 0, 8, 8]] * 3)
    np.testing.assert_allclose(boxes[1], [[8, 8, 16, 16]] * 3)


def test_views_inside_nested_and_subclassed_models():
    first = keras_stn.SpatialTransformer(_localization(), name="first")
    second = keras_stn.SpatialTransformer(_localization(), name="second")

    class Doubler(keras.Model):
        def __init__(self):
            super().__init__()
            self.transformer = second

        def call(self, x):
            return self.transformer(2.0 * x)

    inner = keras.Sequential([keras.layers.Rescaling(3.0), first])
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, Doubler()(inner(inputs)))
    images = _images()
    views = viz.transformer_views(model, images)
    assert [view["name"] for view in views] == ["first", "second"]
    np.testing.assert_allclose(views[0]["inputs"], 3 * images, atol=1e-6)
    np.testing.assert_allclose(views[1]["inputs"], 6 * images, atol=1e-5)
    (only,) = viz.transformer_views(model, images, layer_name="second")
    assert only["name"] == "second"
    with pytest.raises(ValueError, match="`layer_name`.*first"):
        viz.transformer_views(model, images, layer_name="third")


def test_views_of_transformers_held_by_a_custom_layer_in_lists_and_dicts():
    names = ["a", "b", "c", "d"]
    made = {
        name: keras_stn.SpatialTransformer(_localization(), name=name)
        for name in names
    }

    class Holder(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.first = made["a"]
            self.pair = [made["b"], {"inner": made["c"]}]
            self.last = {"x": made["d"]}

        def call(self, x):
            x = self.first(x)
            x = self.pair[1]["inner"](self.pair[0](x + 1.0))
            return self.last["x"](x)

    model = keras.Sequential([Holder()])
    images = _images()
    assert [layer.name for layer in viz.find_transformers(model)] == names
    views = viz.transformer_views(model, images)
    assert [view["name"] for view in views] == names
    np.testing.assert_allclose(views[0]["inputs"], images, atol=1e-6)
    # Identity transformers: b receives a's output plus one.
    np.testing.assert_allclose(views[1]["inputs"], images + 1.0, atol=1e-5)


def test_views_of_a_transformer_called_twice_use_its_first_call():
    # A functional graph cut at a shared layer has no single `layer.input`.
    shared = keras_stn.SpatialTransformer(_localization(), name="shared")
    inputs = keras.Input((16, 16, 1))
    outputs = shared(keras.layers.Rescaling(2.0)(shared(inputs)))
    model = keras.Model(inputs, outputs)
    shared.heads[0].bias.assign([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    images = _images()
    (view,) = viz.transformer_views(model, images)
    np.testing.assert_array_equal(view["inputs"], images)


def test_find_transformers_errors():
    model = keras.Sequential([keras_stn.SpatialTransformer(name="st")])
    with pytest.raises(ValueError, match="`layer_name` must be a str"):
        viz.find_transformers(model, layer_name=3)
    with pytest.raises(ValueError, match="`layer_name`.*\\['st'\\].*'nope'"):
        viz.find_transformers(model, layer_name="nope")


@pytest.mark.parametrize("module", ["viz", "callbacks"])
def test_uses_no_private_attribute_of_other_objects(module):
    """Private APIs (Keras' `_flatten_layers`, a layer's `_transform`,
    replacing `call` through `object.__setattr__`) break with any Keras
    or layer release: only `self._x` and `super().__init__` pass."""
    import ast
    import importlib

    source = importlib.import_module(f"keras_stn.{module}").__file__
    with open(source) as file:
        tree = ast.parse(file.read())

    def allowed(node):
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id == "self":
            return True
        # `super().__init__(...)`.
        return (
            isinstance(owner, ast.Call)
            and isinstance(owner.func, ast.Name)
            and owner.func.id == "super"
        )

    private = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not allowed(node)
    ]
    assert private == []


def test_views_bad_arguments():
    model = keras.Sequential([keras.layers.Flatten()], name="plain")
    with pytest.raises(ValueError, match="SpatialTransformer.*'plain'"):
        viz.transformer_views(model, _images())
    with pytest.raises(ValueError, match="`images`.*\\(B, H, W, C\\)"):
        viz.transformer_views(model, np.zeros((16, 16, 1)))


# Figures --------------------------------------------------------------------


def _attention_model(images):
    layer = keras_stn.SpatialTransformer(
        _localization(), transform="attention", output_size=(8, 8)
    )
    model = keras.Sequential([layer, keras.layers.Flatten()])
    model(images)
    return model, layer


def _pixels(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image)


def test_figures_change_exactly_when_theta_does(tmp_path):
    images = _images()
    model, layer = _attention_model(images)

    def draw(name):
        (view,) = viz.transformer_views(model, images)
        figure = viz.plot_views(view, labels=[1, 2, 3], title="snapshot")
        return _pixels(viz.save_figure(figure, tmp_path / "out" / name))

    first, again = draw("a.png"), draw("b.png")
    assert first.ndim == 3 and first.shape[-1] in (3, 4)
    assert first.shape[0] > 0 and first.shape[1] > 0
    np.testing.assert_array_equal(first, again)
    layer.heads[0].bias.assign([0.5, 0.5, 0.0])
    shifted = draw("c.png")
    assert shifted.shape == first.shape
    assert np.any(shifted != first)
    # Written atomically: no temporary files left beside the PNGs.
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize(
    "channels,shape", [(1, (8, 8)), (3, (8, 8, 3)), (5, (8, 8))]
)
def test_plot_views_layout_and_display_values(channels, shape):
    images = 255.0 * _images((3, 16, 16, channels))
    view = {
        "name": "t",
        "transform": "attention",
        "inputs": images,
        "theta": [np.zeros((3, 3))] * 2,
        "grids": [_grids("attention", [[0.5, 0.0, 0.0]] * 3, (8, 8))] * 2,
        "outputs": [images[:, 4:12, 4:12]] * 2,
    }
    figure = viz.plot_views(view, max_examples=2)
    axes = np.reshape(figure.axes, (2, 4))
    assert [a.get_title() for a in axes[0]] == [
        "input",
        "sampled regions",
        "head 0",
        "head 1",
    ]
    assert axes[1, 0].get_ylabel() == "#1"
    # Two outlines, in different colours, on the region panel.
    lines = axes[0, 1].get_lines()
    assert len(lines) == 2 and lines[0].get_color() != lines[1].get_color()
    shown = axes[0, 2].get_images()[0].get_array()
    assert shown.shape == shape
    # Scaled by the input's range: [0, 255] values land in [0, 1].
    assert 0.0 <= shown.min() and shown.max() <= 1.0
    low, high = images[0].min(), images[0].max()
    scaled = (images[0] - low) / (high - low)
    expected = {1: scaled[..., 0], 3: scaled, 5: scaled.mean(axis=-1)}
    np.testing.assert_allclose(
        axes[0, 0].get_images()[0].get_array(), expected[channels], atol=1e-6
    )


def test_single_head_draws_grid_lines():
    images = _images((1, 16, 16, 1))
    model, _ = _attention_model(images)
    (view,) = viz.transformer_views(model, images)
    figure = viz.plot_views(view, grid_lines=3)
    # The outline plus three lines in each direction.
    assert len(figure.axes[1].get_lines()) == 1 + 2 * 3
    figure = viz.plot_views(view, grid_lines=0)
    assert len(figure.axes[1].get_lines()) == 1


def test_plot_views_bad_arguments():
    images = _images((2, 16, 16, 1))
    model, _ = _attention_model(images)
    (view,) = viz.transformer_views(model, images)
    with pytest.raises(ValueError, match="`max_examples`.*0"):
        viz.plot_views(view, max_examples=0)
    with pytest.raises(ValueError, match="`grid_lines`.*-1"):
        viz.plot_views(view, grid_lines=-1)
    with pytest.raises(ValueError, match="`labels`"):
        viz.plot_views(view, labels=[1])
    with pytest.raises(ValueError, match="`dpi`.*dpi=0"):
        viz.save_figure(viz.plot_views(view), "unused.png", dpi=0)


def test_drawing_without_matplotlib_says_what_to_install(monkeypatch):
    view = {"inputs": _images(), "grids": [], "outputs": []}
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="keras-stn\\[examples\\]"):
        viz.plot_views(view)


def test_save_animation_pads_frames(tmp_path):
    small = np.zeros((10, 20, 3), np.uint8)
    large = np.full((30, 15, 3), 255, np.uint8)
    png = tmp_path / "frame.png"
    Image.fromarray(np.full((5, 5, 3), 128, np.uint8)).save(png)
    path = viz.save_animation(
        [small, large, str(png)], tmp_path / "gif" / "a.gif", duration_ms=50
    )
    with Image.open(path) as gif:
        assert gif.format == "GIF"
        assert gif.size == (20, 30)
        assert gif.n_frames == 3
    assert os.listdir(tmp_path / "gif") == ["a.gif"]
    with pytest.raises(ValueError, match="`frames`"):
        viz.save_animation([], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="`frames`.*float"):
        viz.save_animation([np.zeros((4, 4, 3))], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="`duration_ms`"):
        viz.save_animation([small], tmp_path / "b.gif", duration_ms=0)

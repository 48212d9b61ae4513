import numpy as np
import pytest
import tensorflow as tf

from keras_stn.experiments.data import clutter

pytestmark = pytest.mark.tensorflow_only

POOL_SIZE = 50


def _pool():
    rng = np.random.default_rng(0)
    return rng.integers(1, 256, (POOL_SIZE, 28, 28, 1)).astype("uint8")


def _draws(tc, count, exclude=-1):
    params = [
        tc.draw(tf.constant([s, 11]), POOL_SIZE, tf.constant(exclude, tf.int64))
        for s in range(count)
    ]
    return {k: tf.stack([p[k] for p in params]).numpy() for k in params[0]}


def _meets(start, size, low, high):
    """Whether `[start, start + size)` meets `[low, high)` (or, for an empty
    one, straddles the point `low`), per axis, all axes."""
    end = start + size
    hits = np.where(
        high > low, (start < high) & (end > low), (start < low) & (end > low)
    )
    return hits.all(axis=-1)


@pytest.mark.parametrize("clear_centre", [8, 0, 28])
def test_patches_never_cover_the_digit_centre(clear_centre):
    tc = clutter.Clutter(clear_centre=clear_centre)
    params = _draws(tc, 200)
    low = params["top_left"] + (28 - clear_centre) // 2
    high = low + clear_centre
    patches = params["patch_top_left"]
    assert not _meets(patches, 6, low[:, None], high[:, None]).any()
    assert patches.min() >= 0 and patches.max() <= 60 - 6
    assert params["top_left"].min() >= 0 and params["top_left"].max() <= 32
    assert params["patch_crop"].min() >= 0
    assert params["patch_crop"].max() <= 28 - 6
    # Patches still come close: some within 2 px of the protected square.
    gap = np.maximum(low[:, None] - (patches + 6), patches - high[:, None])
    assert (gap.max(axis=-1) <= 2).any()


def test_patches_come_from_other_digits():
    tc = clutter.Clutter()
    own = _draws(tc, 100, exclude=7)["patch_index"]
    assert own.min() >= 0 and own.max() < POOL_SIZE
    assert not (own == 7).any()
    anywhere = _draws(tc, 100)["patch_index"]
    assert anywhere.min() >= 0 and anywhere.max() < POOL_SIZE
    assert len(np.unique(anywhere)) == POOL_SIZE


def test_render_places_the_digit_and_pastes_the_recorded_crops():
    pool = _pool()
    tc = clutter.Clutter()
    params = _draws(tc, 8)
    digits = np.random.default_rng(1).random((8, 28, 28, 1)).astype("float32")
    canvas = tc.render(tf.constant(digits), tf.constant(pool), params).numpy()
    bare = clutter.Clutter(num_patches=0).render(
        tf.constant(digits), tf.constant(pool), params
    )
    bare = bare.numpy()
    assert canvas.shape == (8, 60, 60, 1)
    assert canvas.min() >= 0 and canvas.max() <= 1
    for b in range(8):
        x, y = params["top_left"][b]
        np.testing.assert_allclose(
            bare[b, y : y + 28, x : x + 28], digits[b], atol=1e-5
        )
        assert np.abs(bare[b]).sum() == pytest.approx(digits[b].sum(), 1e-4)
        # The centre square is the digit's alone.
        np.testing.assert_array_equal(
            canvas[b, y + 10 : y + 18, x + 10 : x + 18],
            bare[b, y + 10 : y + 18, x + 10 : x + 18],
        )
        covered = np.zeros((60, 60), bool)
        for k in range(6):
            px, py = params["patch_top_left"][b, k]
            cx, cy = params["patch_crop"][b, k]
            crop = pool[params["patch_index"][b, k], cy : cy + 6, cx : cx + 6]
            region = canvas[b, py : py + 6, px : px + 6]
            # Maximum compositing: at least the crop everywhere on it.
            assert (region >= crop / 255.0 - 1e-6).all()
            covered[py : py + 6, px : px + 6] = True
        # Off the patches, the canvas is the bare digit.
        np.testing.assert_array_equal(canvas[b][~covered], bare[b][~covered])
        assert (canvas[b][covered] >= bare[b][covered]).all()


def test_no_patches():
    tc = clutter.Clutter(num_patches=0)
    params = _draws(tc, 2)
    assert params["patch_index"].shape == (2, 0)
    assert params["patch_top_left"].shape == (2, 0, 2)


@pytest.mark.parametrize(
    "options, argument",
    [
        ({"canvas_size": 20}, "canvas_size"),
        ({"num_patches": -1}, "num_patches"),
        ({"patch_size": 0}, "patch_size"),
        ({"patch_size": 29}, "patch_size"),
        ({"clear_centre": 7}, "clear_centre"),
        ({"clear_centre": 30}, "clear_centre"),
    ],
)
def test_bad_arguments_are_named(options, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        clutter.Clutter(**options)

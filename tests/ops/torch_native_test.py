"""PyTorch's own kernel under the package's contracts
(`keras_stn.ops.backend.torch_native`): torch parity, the package's generic
path, non-finite points and pixels, second derivatives, dtypes,
determinism and the affine grid.

Runs only on Keras' PyTorch backend, the one that imports the module. The
generic path is reached by the public samplers with the module's
`supports` patched to refuse every call; each comparison checks that the
patch took (the generic output is not the native kernel's).
"""

import itertools

import keras
import numpy as np
import pytest

from keras_stn import ops as stn_ops
from tests import test_case

if keras.backend.backend() != "torch":
    pytest.skip(
        "torch_native runs on Keras' PyTorch backend only (KERAS_BACKEND="
        f"torch); this run's backend is {keras.backend.backend()}",
        allow_module_level=True,
    )

import torch  # noqa: E402
from torch.nn import functional  # noqa: E402

from keras_stn.ops.backend import torch_native  # noqa: E402

PADDINGS = ("zeros", "border", "reflection")
# (kernel, number of spatial axes): PyTorch has no 3-D bicubic.
KERNELS = [("bilinear", 2), ("nearest", 2), ("bicubic", 2)]
KERNELS += [("bilinear", 3), ("nearest", 3)]
CASES = [
    (kernel, axes, padding, align)
    for (kernel, axes), padding, align in itertools.product(
        KERNELS, PADDINGS, (False, True)
    )
]
# float64 results of one kernel reached two ways: values and image
# gradients are sums of a few products (rounding ~1e-16); grid gradients
# carry a factor of up to W / 2 and sum over channels (bicubic's ~1e-14).
VALUE_ATOL_64 = 1e-13
GRID_ATOL_64 = 1e-12
NATIVE = "_GridSampleBackward"


def _shapes(axes):
    """`(input spatial, output spatial)` shapes, small and not square."""
    if axes == 2:
        return (5, 7), (4, 6)
    return (4, 5, 6), (3, 2, 4)


def _data(axes, dtype="float64", seed=0, low=-1.3, high=1.3, channels=3):
    """Images `(2, *spatial, C)`, a grid inside and outside the input, and
    an upstream gradient, as NumPy."""
    spatial, out = _shapes(axes)
    gen = test_case.rng(seed)
    images = gen.normal(size=(2, *spatial, channels)).astype(dtype)
    grid = gen.uniform(low, high, size=(2, *out, axes)).astype(dtype)
    upstream = gen.normal(size=(2, *out, channels)).astype(dtype)
    return images, grid, upstream


def _tensor(x, grad=True):
    return torch.tensor(x).requires_grad_(grad)


def _run(fn, images, grid, upstream):
    """`(output, d images, d grid)` as NumPy, by torch.autograd."""
    images, grid = _tensor(images), _tensor(grid)
    output = fn(images, grid)
    grads = torch.autograd.grad(
        output, (images, grid), torch.tensor(upstream), allow_unused=True
    )
    grads = [
        torch.zeros_like(t) if g is None else g
        for t, g in zip((images, grid), grads)
    ]
    return [t.detach().numpy() for t in (output, *grads)]


def _native(kernel, padding, align, reference=None):
    return lambda i, g: torch_native.sample(
        i, g, kernel, padding, align, reference
    )


def _torch(kernel, padding, align):
    """PyTorch's `grid_sample` on channels-first copies, channels-last
    output."""

    def sample(images, grid):
        output = functional.grid_sample(
            images.movedim(-1, 1),
            grid,
            mode=kernel,
            padding_mode=padding,
            align_corners=align,
        )
        return output.movedim(1, -1)

    return sample


@pytest.fixture
def generic(monkeypatch):
    """`generic(kernel, padding, align)`: the package's own sampler (its
    public function with the native kernel refused)."""
    monkeypatch.setattr(torch_native, "supports", lambda *args: False)

    def make(kernel, padding, align):
        def sample(images, grid):
            output = stn_ops.sample(images, grid, kernel, padding, align)
            assert type(output.grad_fn).__name__ != NATIVE
            return output

        return sample

    return make


def _assert_results_close(actual, expected, atol, grid_atol):
    names = ("output", "d images", "d grid")
    for a, e, tol, name in zip(
        actual, expected, (atol, atol, grid_atol), names
    ):
        test_case.assert_close(a, e, tol, msg=name)


# Supports ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,axes,expected",
    [
        ("bilinear", 2, True),
        ("nearest", 2, True),
        ("bicubic", 2, True),
        ("bilinear", 3, True),
        ("nearest", 3, True),
        ("bicubic", 3, False),  # PyTorch has no 3-D bicubic
        ("lanczos", 2, False),
        ("bilinear", 4, False),
    ],
)
def test_supports_the_kernels_pytorch_has(kernel, axes, expected):
    images = torch.zeros((1, *([3] * axes), 2))
    for padding, align in itertools.product(PADDINGS, (False, True)):
        got = torch_native.supports(kernel, axes, padding, align, images, False)
        assert got is expected
        # `deterministic=True` keeps the package's exact integer sums
        # (ATen's CPU backward is reproducible, not exact).
        assert not torch_native.supports(
            kernel, axes, padding, align, images, True
        )


def test_supports_refuses_empty_inputs_and_unknown_paddings():
    for shape in [(0, 3, 3, 1), (1, 3, 3, 0), (1, 0, 3, 2)]:
        assert not torch_native.supports(
            "bilinear", 2, "zeros", False, torch.zeros(shape), False
        )
    assert not torch_native.supports(
        "bilinear", 2, "wrap", False, torch.zeros((1, 3, 3, 1)), False
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_supports_leaves_deterministic_cuda_calls_to_the_package():
    images = torch.zeros((1, 3, 3, 1), device="cuda")
    assert torch_native.supports("bilinear", 2, "zeros", False, images, False)
    assert not torch_native.supports(
        "bilinear", 2, "zeros", False, images, True
    )


# Values and gradients ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_matches_torch_grid_sample(kernel, axes, padding, align, dtype):
    images, grid, upstream = _data(axes, dtype, seed=1)
    actual = _run(_native(kernel, padding, align), images, grid, upstream)
    expected = _run(_torch(kernel, padding, align), images, grid, upstream)
    # The same kernel on channels-last and channels-first memory.
    atol = {"float32": 1e-6, "float64": VALUE_ATOL_64}[dtype]
    _assert_results_close(actual, expected, atol, 10 * atol)


@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_matches_the_generic_path_with_non_finite_points(
    generic, kernel, axes, padding, align
):
    images, grid, upstream = _data(axes, seed=2)
    grid[0, 0, 0] = np.nan
    grid[0, 1, 1, 0] = np.nan  # one coordinate of a point
    if not (axes == 3 and padding == "border"):
        # The generic 3-D path reads zeros at infinite indices under border
        # padding, where PyTorch reads the border (issue 22): that case is
        # test_infinite_points_read_the_border's.
        grid[1, 1, 0, 0] = 1e308  # an index that overflows float64
        grid[1, 0, 1, 0] = np.inf
        grid[0, 1, 0, -1] = -np.inf
    actual = _run(_native(kernel, padding, align), images, grid, upstream)
    expected = _run(generic(kernel, padding, align), images, grid, upstream)
    _assert_results_close(actual, expected, VALUE_ATOL_64, GRID_ATOL_64)
    for result in actual:
        assert np.all(np.isfinite(result))


@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_non_finite_points_sample_zeros_and_spare_the_batch(
    kernel, axes, padding, align
):
    images, grid, upstream = _data(axes, "float32", seed=3)
    bad = grid.copy()
    bad[0, 0, 0] = np.nan
    bad[0, 1, 1, 0] = np.nan
    bad[0, 1, 0, -1] = 3e38  # finite, but its index overflows float32
    bad[0, 0, 1, 0] = -np.inf
    run = _native(kernel, padding, align)
    out, d_images, d_grid = _run(run, images, bad, upstream)
    clean = _run(run, images[1:], grid[1:], upstream[1:])
    # The other sample: bit for bit what it gives alone.
    for got, alone in zip((out, d_images, d_grid), clean):
        np.testing.assert_array_equal(got[1:], alone)
    nan = np.isnan(bad).any(axis=-1)
    np.testing.assert_array_equal(out[nan], 0.0)
    np.testing.assert_array_equal(d_grid[nan], 0.0)
    infinite = np.isinf(bad).any(axis=-1) | (np.abs(bad) > 1e38).any(-1)
    if padding != "border" or kernel == "bicubic":
        np.testing.assert_array_equal(out[infinite], 0.0)
        np.testing.assert_array_equal(d_grid[infinite], 0.0)
    for result in (out, d_images, d_grid):
        assert np.all(np.isfinite(result))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
@pytest.mark.parametrize("axes", [2, 3])
def test_infinite_points_read_the_border(kernel, axes, align, dtype):
    # Under border padding an infinite index is clipped to the border, as
    # PyTorch does, in 2-D and 3-D alike, with a zero derivative along the
    # infinite axis (issue 22: the generic 3-D path read zeros there).
    images, grid, upstream = _data(axes, dtype, seed=4, low=-0.8, high=0.8)
    grid[0, 0, 0, 0] = np.inf
    grid[0, 0, 1, 1] = -np.inf
    grid[0, 1, 0] = np.inf
    grid[1, 1, 1, -1] = -np.inf
    actual = _run(_native(kernel, "border", align), images, grid, upstream)
    expected = _run(_torch(kernel, "border", align), images, grid, upstream)
    for result in expected:
        assert np.all(np.isfinite(result))
    atol = test_case.tolerance(dtype)
    _assert_results_close(actual, expected, atol, 10 * atol)
    d_grid = actual[2]
    np.testing.assert_array_equal(d_grid[np.isinf(grid)], 0.0)
    # Hand-computed: x = +inf reads the last column.
    if kernel == "bilinear" and axes == 2:
        y = grid[0, 0, 0, 1]
        _, width = images.shape[1:3]
        column = images[0, :, width - 1]
        height = images.shape[1]
        row = (
            (y + 1) / 2 * (height - 1) if align else ((y + 1) * height - 1) / 2
        )
        row = np.clip(row, 0, height - 1)
        expected_value = np.array(
            [np.interp(row, np.arange(height), column[:, c]) for c in range(3)]
        )
        test_case.assert_close(actual[0][0, 0, 0], expected_value, atol)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("kernel", ["bilinear", "nearest"])
def test_one_pixel_input_with_align_corners_reads_zero_at_nan(kernel, padding):
    # Every index of a 1-pixel axis is 0 when align_corners=True, so moving
    # a NaN point outside reads the pixel: the output is masked instead.
    images = np.full((1, 1, 1, 2), 3.0)
    grid = np.array([[[[np.nan, 0.2], [0.5, -0.4]]]])
    out, d_images, d_grid = _run(
        _native(kernel, padding, True), images, grid, np.ones((1, 1, 2, 2))
    )
    np.testing.assert_array_equal(out[0, 0, 0], 0.0)
    np.testing.assert_array_equal(out[0, 0, 1], 3.0)
    np.testing.assert_array_equal(d_images, 1.0)  # the finite point's
    np.testing.assert_array_equal(d_grid, 0.0)


@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_a_non_finite_pixel_stays_in_its_sample(kernel, axes, padding, align):
    images, grid, upstream = _data(axes, seed=5)
    images[0, (1,) * axes] = np.nan
    images[0, (2,) * axes] = -np.inf
    run = _native(kernel, padding, align)
    out, d_images, d_grid = _run(run, images, grid, upstream)
    alone = _run(run, images[1:], grid[1:], upstream[1:])
    for got, expected in zip((out, d_images, d_grid), alone):
        np.testing.assert_array_equal(got[1:], expected)
    # In its own sample, it spreads exactly as in PyTorch.
    expected = _run(_torch(kernel, padding, align), images, grid, upstream)
    for got, want in zip((out, d_grid), (expected[0], expected[2])):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        test_case.assert_close(got[finite], want[finite], GRID_ATOL_64)


def test_the_careful_path_gives_the_fast_paths_numbers():
    # One NaN point sends the whole call down the careful path (where
    # invalid points are moved and masked); the other sample's results
    # must not notice.
    images, grid, upstream = _data(2, "float32", seed=6)
    bad = grid.copy()
    bad[0, 2, 3, 1] = np.nan
    for padding, align in itertools.product(PADDINGS, (False, True)):
        run = _native("bilinear", padding, align)
        fast = _run(run, images, grid, upstream)
        careful = _run(run, images, bad, upstream)
        for a, b in zip(fast, careful):
            np.testing.assert_array_equal(a[1], b[1])


# Layout -----------------------------------------------------------------


@pytest.mark.parametrize("axes", [2, 3])
def test_channels_last_views_of_channels_first_memory(axes):
    images, grid, upstream = _data(axes, "float32", seed=7, channels=4)
    images, grid = _tensor(images), _tensor(grid)
    output = torch_native.sample(images, grid, "bilinear", "zeros", False)
    assert output.shape == (*grid.shape[:-1], 4)
    # The kernel's output, returned without a copy: channels-first memory.
    assert output.movedim(-1, 1).is_contiguous()
    d_images, _ = torch.autograd.grad(
        output, (images, grid), torch.tensor(upstream)
    )
    assert d_images.shape == images.shape
    assert d_images.movedim(-1, 1).is_contiguous()


# Second derivatives -----------------------------------------------------


def _off_kink_grid(gen, shape, sizes, align):
    """Grid points whose indices stay 0.1 away from integers and half
    integers (every kernel's kinks), inside and just outside the input."""
    grid = np.empty(shape)
    for axis, size in enumerate(sizes):
        index = np.floor(gen.uniform(-1.0, size, shape[:-1]))
        index += gen.choice([0.2, 0.3, 0.7, 0.8], shape[:-1])
        if align:
            grid[..., axis] = index / (size - 1) * 2 - 1
        else:
            grid[..., axis] = (2 * index + 1) / size - 1
    return grid


def _first_order_loss(sample):
    """`(images, grid) -> a scalar of both first derivatives`, built with
    create_graph=True: its gradient holds every second derivative."""

    def loss(images, grid):
        output = sample(images, grid)
        upstream = torch.linspace(-1.0, 1.0, output.numel(), dtype=output.dtype)
        d_images, d_grid = torch.autograd.grad(
            (output * upstream.reshape(output.shape)).sum(),
            (images, grid),
            create_graph=True,
        )
        # The last term couples d grid with the grid (its finite points).
        finite = torch.where(torch.isfinite(grid), grid, 0.0)
        return (d_images**2).sum() + (d_grid**2).sum() + (d_grid * finite).sum()

    return loss


def _second_order_data(axes, align, seed=8):
    """Tiny float64 images and an off-kink grid (gradcheck perturbs every
    entry twice): `(images, grid)`, tensors that require grad."""
    gen = test_case.rng(seed)
    spatial, out = ((3, 4), (2, 3)) if axes == 2 else ((2, 3, 3), (2, 1, 2))
    images = gen.normal(size=(1, *spatial, 1))
    grid = _off_kink_grid(gen, (1, *out, axes), spatial[::-1], align)
    return _tensor(images), _tensor(grid)


def _second_derivatives(loss, images, grid):
    """`[d loss / d images, d loss / d grid]` (zeros where unused)."""
    grads = torch.autograd.grad(
        loss(images, grid), (images, grid), allow_unused=True
    )
    return [
        torch.zeros_like(t) if g is None else g
        for t, g in zip((images, grid), grads)
    ]


@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_second_derivatives_match_finite_differences(
    kernel, axes, padding, align
):
    # Without a reference: torch's own differentiable sampler.
    images, grid = _second_order_data(axes, align)
    loss = _first_order_loss(_native(kernel, padding, align))
    # Central differences of a loss quadratic in the first derivatives,
    # off the kinks: float64 truncation and rounding ~1e-8 at this step.
    assert torch.autograd.gradcheck(
        loss, (images, grid), eps=1e-6, atol=1e-6, rtol=1e-5
    )


@pytest.mark.parametrize("kernel,axes,padding,align", CASES)
def test_second_derivatives_through_the_reference(
    generic, kernel, axes, padding, align
):
    # With the package's generic sampler as the reference: the same
    # second derivatives as torch's differentiable sampler.
    images, grid = _second_order_data(axes, align, seed=9)
    reference = generic(kernel, padding, align)
    through_reference = _second_derivatives(
        _first_order_loss(_native(kernel, padding, align, reference)),
        images,
        grid,
    )
    through_torch = _second_derivatives(
        _first_order_loss(_native(kernel, padding, align)), images, grid
    )
    for a, b in zip(through_reference, through_torch):
        test_case.assert_close(a, b, GRID_ATOL_64)
    if kernel != "nearest":  # piecewise constant: no second derivative
        assert max(float(g.abs().max()) for g in through_torch) > 0
    # The first derivatives either route builds equal the native ones.
    upstream = torch.ones(grid.shape[:-1] + images.shape[-1:], dtype=grid.dtype)
    native = _native(kernel, padding, align)
    expected = torch.autograd.grad(
        native(images, grid), (images, grid), upstream
    )
    for route in (reference, None):
        output = _native(kernel, padding, align, route)(images, grid)
        got = torch.autograd.grad(
            output, (images, grid), upstream, create_graph=True
        )
        for a, b in zip(got, expected):
            test_case.assert_close(a.detach(), b, GRID_ATOL_64)


@pytest.mark.parametrize("kernel,axes", KERNELS)
def test_second_derivatives_are_zero_at_non_finite_points(
    generic, kernel, axes
):
    images, grid, _ = _data(axes, seed=9, low=-0.8, high=0.8)
    grid[0, 0, 0] = np.nan
    grid[0, 1, 1, 0] = np.inf
    images, grid = _tensor(images), _tensor(grid)
    for reference in (None, generic(kernel, "zeros", False)):
        loss = _first_order_loss(_native(kernel, "zeros", False, reference))
        d_images, d_grid = torch.autograd.grad(
            loss(images, grid), (images, grid), allow_unused=True
        )
        if d_images is not None:  # nearest's loss does not read the images
            assert torch.isfinite(d_images).all()
        assert torch.isfinite(d_grid).all()
        assert (d_grid[~torch.isfinite(grid).all(-1)] == 0).all()


# Dtypes and determinism ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    images, grid, _ = _data(2, "float32", seed=10)
    half = getattr(torch, dtype)
    images16 = torch.tensor(images).to(half)
    grid16 = torch.tensor(grid).to(half)
    output = torch_native.sample(images16, grid16, "bilinear", "zeros", False)
    assert output.dtype == half
    expected = torch_native.sample(
        images16.float(), grid16.float(), "bilinear", "zeros", False
    )
    # One rounding of the float32 result.
    np.testing.assert_array_equal(
        output.float().numpy(), expected.to(half).float().numpy()
    )


def test_float64_grid_computes_in_float64():
    images, grid, _ = _data(2, "float32", seed=11)
    output = torch_native.sample(
        torch.tensor(images),
        torch.tensor(grid, dtype=torch.float64),
        "bilinear",
        "zeros",
        False,
    )
    assert output.dtype == torch.float32
    expected = torch_native.sample(
        torch.tensor(images, dtype=torch.float64),
        torch.tensor(grid, dtype=torch.float64),
        "bilinear",
        "zeros",
        False,
    )
    np.testing.assert_array_equal(
        output.numpy(), expected.to(torch.float32).numpy()
    )


@pytest.mark.parametrize("kernel,axes", [("bilinear", 2), ("bilinear", 3)])
def test_cpu_image_gradient_is_bitwise_repeatable(kernel, axes):
    # Many points per pixel (a zoom in), so that the image gradient sums
    # many updates per pixel, on several threads.
    images, grid, upstream = _data(axes, "float32", seed=12, low=-0.3, high=0.3)
    images = np.repeat(images, 4, axis=0)
    grid, upstream = np.repeat(grid, 4, axis=0), np.repeat(upstream, 4, axis=0)
    run = _native(kernel, "zeros", False)
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 4, 3, 4):
            torch.set_num_threads(n)
            results.append(_run(run, images, grid, upstream))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


# Affine grid --------------------------------------------------------------


def _base_points(size, align):
    """NumPy `(*size, N + 1)` homogeneous output points `(x, y[, z], 1)`,
    `x` along the last axis: pixel centres (align_corners=False) or the
    pixels from -1 to 1 (True); 0 for a 1-pixel axis."""

    def axis(n):
        if n == 1:
            return np.zeros(1)
        if align:
            return np.linspace(-1.0, 1.0, n)
        return (2.0 * np.arange(n) + 1.0) / n - 1.0

    mesh = np.meshgrid(*[axis(n) for n in size], indexing="ij")
    return np.stack([*mesh[::-1], np.ones(size)], axis=-1)


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("size", [(4, 6), (1, 5), (3, 4, 5)])
def test_affine_grid_matches_the_formula(size, align):
    # grid[b, p] = theta[b] @ base[p], d theta[b] = sum_p upstream[b, p]
    # base[p]^T, as the package's own grids (a NumPy oracle: on the torch
    # backend the package's 3-D grid is this one).
    gen = test_case.rng(13)
    axes = len(size)
    theta = np.eye(axes, axes + 1) + gen.normal(0, 0.2, (3, axes, axes + 1))
    theta[1, 0, 1] = np.nan
    theta[2, 1, 2] = np.inf
    upstream = gen.normal(size=(3, *size, axes))
    t = _tensor(theta)
    grid = torch_native.affine_grid(t, size, align)
    (d_theta,) = torch.autograd.grad(grid, t, torch.tensor(upstream))
    grid, d_theta = grid.detach().numpy(), d_theta.numpy()
    base = _base_points(size, align)
    want = np.einsum("...k,ik->...i", base, theta[0])
    test_case.assert_close(grid[0], want, 1e-15)
    # A sample with a non-finite entry anywhere: NaN at every point, so
    # that every padding samples zeros there; no gradient.
    assert np.isnan(grid[1:]).all()
    want_d = np.einsum(
        "pi,pk->ik", upstream[0].reshape(-1, axes), base.reshape(-1, axes + 1)
    )
    test_case.assert_close(d_theta[0], want_d, 1e-12)
    np.testing.assert_array_equal(d_theta[1:], 0.0)


def test_affine_grid_second_derivatives_flow():
    theta = _tensor(np.eye(2, 3)[None] + 0.1)
    grid = torch_native.affine_grid(theta, (3, 4), False)
    (d_theta,) = torch.autograd.grad((grid**3).sum(), theta, create_graph=True)
    (dd_theta,) = torch.autograd.grad(d_theta.sum(), theta)
    assert torch.isfinite(dd_theta).all() and dd_theta.abs().max() > 0

"""The backend-neutral gradient helpers of `tests/test_case.py` can fail.

Every gradient test rests on `test_case.gradients` and
`test_case.assert_jacobian_close`; here, on whichever Keras backend runs,
they give known derivatives and reject a custom gradient that is wrong.
"""

import numpy as np
import pytest
from keras import ops

from tests import test_case


def _cube(scale):
    """`x ** 3` whose custom gradient is `scale * 3 x^2` (right for 1)."""

    @ops.custom_gradient
    def cube(x):
        def _cube_grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return upstream * scale * 3.0 * x * x

        return x * x * x, _cube_grad

    return cube


def test_gradients_are_the_known_derivatives():
    x = np.array([[0.5, -1.0, 2.0]])
    y = np.array([[3.0, 0.25, -2.0]])
    upstream = np.array([[1.0, -2.0, 0.5]])
    out, (d_x, d_y) = test_case.gradients(
        lambda a, b: a * b + a * a, x, y, upstream=upstream
    )
    test_case.assert_close(out, x * y + x * x, 1e-15)
    test_case.assert_close(d_x, upstream * (y + 2.0 * x), 1e-15)
    test_case.assert_close(d_y, upstream * x, 1e-15)


def test_an_unused_input_has_a_zero_gradient():
    _, (_, d_unused) = test_case.gradients(
        lambda a, b: a * 2.0, np.ones((2, 2)), np.ones((3,))
    )
    np.testing.assert_array_equal(d_unused, np.zeros(3))


def test_jacobian_check_passes_a_right_custom_gradient():
    x = np.array([[0.3, -0.7], [1.1, 0.2]])
    test_case.assert_jacobian_close(_cube(1.0), [x], atol=1e-8)


def test_jacobian_check_rejects_a_wrong_custom_gradient():
    x = np.array([[0.3, -0.7], [1.1, 0.2]])
    with pytest.raises(AssertionError):
        test_case.assert_jacobian_close(_cube(1.01), [x], atol=1e-8)

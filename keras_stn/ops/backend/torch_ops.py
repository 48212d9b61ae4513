"""PyTorch's primitives: an exact `index_add_` scatter and arithmetic that
keeps float64.

Imported only on the PyTorch backend.
"""

import torch

# Keras' PyTorch custom gradient takes one output.
CUSTOM_GRADIENT_SINGLE_OUTPUT = True
# Keras runs a custom gradient's forward pass untracked on PyTorch: its
# values are constants to the gradient function.
CUSTOM_GRADIENT_FORWARD_UNTRACKED = True


def scatter_add_rows(updates, indices, num_rows):
    """`generic.scatter_add_rows` as `index_add_`: Keras' torch
    `segment_sum` sums in float32 whatever the dtype, which rounds float64
    and int32 sums."""
    out = torch.zeros(
        (num_rows, *updates.shape[1:]),
        dtype=updates.dtype,
        device=updates.device,
    )
    return out.index_add_(0, indices.long(), updates)


def on_gpu(x):
    """Whether tensor `x` lives on a CUDA device."""
    return getattr(getattr(x, "device", None), "type", "") == "cuda"


def floor(x):
    """`torch.floor`: Keras' `floor` computes float64 in float32 here."""
    return torch.floor(x)


def matmul(x1, x2):
    """`torch.matmul`: Keras' PyTorch `matmul` computes float64 inputs in
    float32 (its result type of two torch dtypes is float32)."""
    return torch.matmul(x1, x2)

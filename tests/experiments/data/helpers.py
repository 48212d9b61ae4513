"""Helpers of the tf.data tests (CUB-200-2011)."""


def batches(dataset, count=1):
    """The first `count` elements of a dataset as NumPy structures."""
    # range first: zip stops before pulling one element too many.
    return [
        element for _, element in zip(range(count), dataset.as_numpy_iterator())
    ]


def first(dataset):
    return batches(dataset)[0]

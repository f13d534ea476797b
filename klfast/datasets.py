"""Small data sets bundled with klfast for the worked examples."""
import numpy as np

__all__ = ["worm_teeth"]

_WORM_TEETH = (2, 3, 5, 14, 16, 15, 12, 8, 10, 8, 7)


def worm_teeth():
    """Counts of teeth on 100 worms: how many worms have 0, 1, ..., 10 teeth.

    The data set of the classic worked example of KL divergence as the
    information lost when a model replaces the observed distribution.

    Returns
    -------
    counts : ndarray of shape (11,), dtype int64
        ``counts[i]`` is the number of worms with exactly ``i`` teeth
        (index = number of teeth, 0 to 10); the counts sum to 100. The teeth
        values themselves are ``np.arange(counts.size)``. A new array on every
        call.

    Examples
    --------
    >>> import numpy as np
    >>> from klfast.datasets import worm_teeth
    >>> counts = worm_teeth()
    >>> counts
    array([ 2,  3,  5, 14, 16, 15, 12,  8, 10,  8,  7])
    >>> int(counts.sum())
    100
    >>> teeth = np.arange(counts.size)              # 0, 1, ..., 10
    >>> float(teeth @ counts / counts.sum())        # mean number of teeth
    5.44
    """
    return np.array(_WORM_TEETH, dtype=np.int64)

import doctest

import numpy as np

import klfast
import klfast.datasets


def test_worm_teeth():
    counts = klfast.datasets.worm_teeth()
    np.testing.assert_array_equal(counts, [2, 3, 5, 14, 16, 15, 12, 8, 10, 8, 7])
    assert counts.dtype == np.int64 and counts.shape == (11,) and counts.sum() == 100
    counts[0] = 99  # a fresh array each call
    assert klfast.datasets.worm_teeth()[0] == 2


def test_docstring_examples():
    result = doctest.testmod(klfast.datasets)
    assert result.attempted >= 3 and result.failed == 0

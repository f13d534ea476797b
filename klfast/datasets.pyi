import numpy as np
from numpy.typing import NDArray

__all__ = ["worm_teeth"]

def worm_teeth() -> NDArray[np.int64]: ...

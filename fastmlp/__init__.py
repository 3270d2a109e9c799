"""fastmlp: a two-layer neural network classifier and regressor with visible backpropagation."""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and IDEs; imported on first use otherwise
    from .backprop import BackpropResult, forward_backward
    from .classifier import TwoLayerClassifier
    from .model_io import load_model, save_model
    from .regressor import TwoLayerRegressor

__all__ = [
    "BackpropResult",
    "TwoLayerClassifier",
    "TwoLayerRegressor",
    "forward_backward",
    "load_model",
    "save_model",
]
__version__ = "0.1.0"

# The public names are imported on first use (PEP 562): ``import fastmlp`` alone, as
# ``python -m fastmlp`` does before it parses its options, then loads neither Numba
# nor scikit-learn. ``from fastmlp import TwoLayerClassifier`` works as before.
_LAZY = {
    "BackpropResult": "backprop",
    "forward_backward": "backprop",
    "TwoLayerClassifier": "classifier",
    "TwoLayerRegressor": "regressor",
    "load_model": "model_io",
    "save_model": "model_io",
}


_SUBMODULES = {"backprop", "bench", "classifier", "datasets", "kernels", "model_io",
               "reference", "regressor", "solvers"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif name in _SUBMODULES:  # ``fastmlp.solvers`` after a plain ``import fastmlp``
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))

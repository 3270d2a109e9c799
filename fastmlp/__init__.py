"""fastmlp: a two-layer neural network classifier with visible backpropagation."""

from .backprop import BackpropResult, forward_backward
from .classifier import TwoLayerClassifier

__all__ = ["BackpropResult", "TwoLayerClassifier", "forward_backward"]
__version__ = "0.1.0"

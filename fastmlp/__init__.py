"""fastmlp: a two-layer neural network classifier with visible backpropagation."""

from .backprop import BackpropResult, forward_backward

__all__ = ["BackpropResult", "forward_backward"]
__version__ = "0.1.0"

"""The one check of a fitted model's weights before compiled code reads them.

``coefs_`` and ``intercepts_`` are public and writable: a user may edit them, and
a model may be rebuilt from attributes. The kernels index ``W1`` with the
input's feature indices and trust every other dimension, so a weight of the
wrong shape reads out of bounds (a segfault for sparse input whose features
exceed ``W1``'s rows) or silently returns garbage. :func:`check_weights` compares
every shape with every other and with the fitted ``n_features_in_``,
``n_outputs_`` and number of classes, and names what disagrees.
"""

from __future__ import annotations

__all__ = ["check_weights", "unpack_weights"]


def _shapes(W1, b1, W2, b2):
    return [getattr(p, "shape", None) for p in (W1, W2, b1, b2)]


def unpack_weights(coefs, intercepts):
    """``(W1, W2, b1, b2)`` from ``coefs_`` and ``intercepts_``, each of two arrays."""
    try:
        (W1, W2), (b1, b2) = coefs, intercepts
    except (TypeError, ValueError):
        raise ValueError(
            "coefs_ and intercepts_ must each hold two arrays ([W1, W2] and [b1, b2]), got "
            f"{_count(coefs)} and {_count(intercepts)}."
        ) from None
    return W1, W2, b1, b2


def _count(x):
    try:
        return str(len(x))
    except TypeError:
        return type(x).__name__


def check_weights(est, W1, b1, W2, b2, n_features=None):
    """Raise ``ValueError`` unless the weights make one network that fits ``est``.

    Parameters
    ----------
    est : estimator
        Its fitted ``n_features_in_``, ``n_outputs_``, ``classes_`` and
        ``out_activation_`` are compared when present.
    W1, b1, W2, b2 : ndarray
        ``coefs_[0]``, ``intercepts_[0]``, ``coefs_[1]``, ``intercepts_[1]``.
    n_features : int, optional
        The width of the input about to be used with them.

    Returns
    -------
    (D, H, C) : tuple of int
        Input, hidden and output widths.
    """
    try:  # unpacking the shapes: cheaper than asking .ndim of each
        (D, H), (H2, C) = W1.shape, W2.shape
        (Hb,), (Cb,) = b1.shape, b2.shape
    except (AttributeError, ValueError):
        raise ValueError(
            "coefs_ and intercepts_ are inconsistent: expected [W1 (D, H), W2 (H, C)] and "
            f"[b1 (H,), b2 (C,)], got shapes {_shapes(W1, b1, W2, b2)}."
        ) from None
    if not (H2 == H == Hb and Cb == C and D > 0 and H > 0 and C > 0):
        raise ValueError(
            "coefs_ and intercepts_ are inconsistent: expected [W1 (D, H), W2 (H, C)] and "
            f"[b1 (H,), b2 (C,)] with D, H, C >= 1, got shapes {_shapes(W1, b1, W2, b2)}."
        )
    d = est.__dict__
    fitted = d.get("n_features_in_")
    if fitted is not None and fitted != D:
        raise ValueError(
            f"coefs_[0] has {D} rows but the model was fitted with n_features_in_={fitted}: "
            "the weights were edited; refit, or set both consistently."
        )
    if n_features is not None and n_features != D:
        raise ValueError(f"X has {n_features} features but coefs_[0] has {D} rows.")
    outputs = d.get("n_outputs_")
    if outputs is not None and outputs != C:
        raise ValueError(
            f"coefs_[1] has {C} output units but n_outputs_={outputs}: the weights were "
            "edited; refit, or set both consistently."
        )
    classes = d.get("classes_")
    if classes is not None:
        n_classes = len(classes)
        if d.get("out_activation_") == "logistic" and C == 1:  # binary: one unit
            ok = n_classes in (1, 2)
        else:  # softmax: one unit per class; multilabel: one per label
            ok = n_classes == C
        if not ok:
            raise ValueError(
                f"coefs_[1] has {C} output units, which cannot encode the {n_classes} "
                f"classes in classes_ (out_activation_={d.get('out_activation_')!r})."
            )
    return D, H, C

"""An independent, plain numpy backprop for the seed's network, written by hand.

It shares no code with derive: it is the textbook algorithm for tanh layers
and the summed squared-error loss, used to cross-check generated modules.
"""

from __future__ import annotations

import numpy as np


def forward(params, x):
    a = np.atleast_2d(x)
    for w, b in params:
        a = np.tanh(a @ w + b)
    return a


def loss(params, x, y):
    return float(np.sum((forward(params, x) - np.atleast_2d(y)) ** 2))


def backprop(params, x, y):
    """Loss and [(dW, db), ...] in layer order, for tanh layers and L = ||Ŷ - Y||²."""
    activations = [np.atleast_2d(x)]
    for w, b in params:
        activations.append(np.tanh(activations[-1] @ w + b))
    y = np.atleast_2d(y)
    out = activations[-1]
    grads = []
    delta = 2.0 * (out - y) * (1.0 - out**2)
    for layer in range(len(params) - 1, -1, -1):
        grads.append((activations[layer].T @ delta, delta.sum(axis=0, keepdims=True)))
        if layer:
            delta = (delta @ params[layer][0].T) * (1.0 - activations[layer] ** 2)
    return float(np.sum((out - y) ** 2)), grads[::-1]

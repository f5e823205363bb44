"""The MLP and every loss variant, forward and backward, written out by hand in NumPy.

This is backpropagation with nothing hidden: each line is one step of the chain rule, in the
order you would do it on paper. `jaxmlp.gradcheck` compares it with `jax.grad(losses.loss_fn)`,
so it is an independent second implementation, not a copy: it never calls JAX.

Notation, for a batch of B examples and K outputs:

    h_0 = x
    z_l = h_{l-1} @ W_l + b_l           (every layer l = 1..L)
    h_l = act(z_l)                      (hidden layers only; the last layer is linear: o = z_L)
    p   = predictions(o)                softmax, sum_normalize or none
    e   = error(p, t)                   (B, K): cross-entropy or squared error per class
    l_i = sum_k e_ik  or  mean_k e_ik   (class reduction)
    L   = sum_i l_i   or  mean_i l_i    (example reduction)

Backward, from the loss down:

    dL/dl_i = 1 or 1/B;   dl_i/de_ik = 1 or 1/K
    dL/dp   from the error, dL/do from the prediction map (its Jacobian)
    dL/dW_l = h_{l-1}^T @ dL/dz_l,   dL/db_l = sum over examples of dL/dz_l
    dL/dh_{l-1} = dL/dz_l @ W_l^T,   dL/dz_{l-1} = dL/dh_{l-1} * act'(z_{l-1})
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The same guard as `jaxmlp.losses.EPS`, repeated rather than imported so this module stays
# independent of the code it checks (a wrong EPS there shows up as a mismatch here).
EPS = 1e-7

NpParams = list[dict[str, np.ndarray]]

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


# --- activations and their derivatives ------------------------------------------------------------


def activation(z: np.ndarray, name: str) -> np.ndarray:
    """relu max(z, 0); tanh; sigmoid 1/(1+e^-z); gelu, in the tanh approximation JAX uses:
    0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))."""
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1/(1+e^-z), without overflow for large -z
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + _GELU_A * z**3)))
    raise ValueError(f"unknown activation {name!r}")


def activation_derivative(z: np.ndarray, name: str) -> np.ndarray:
    """act'(z), elementwise. relu'(0) is taken as 0, as JAX does."""
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = activation(z, "sigmoid")
        return s * (1.0 - s)
    if name == "gelu":
        u = _GELU_C * (z + _GELU_A * z**3)
        t = np.tanh(u)
        du = _GELU_C * (1.0 + 3.0 * _GELU_A * z**2)
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t**2) * du
    raise ValueError(f"unknown activation {name!r}")


# --- forward --------------------------------------------------------------------------------------


def forward(params: NpParams, x: np.ndarray, act: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Returns (pre-activations z_1..z_L, layer inputs h_0..h_{L-1}); the outputs are z_L."""
    zs, hs = [], [x]
    h = x
    for i, layer in enumerate(params):
        z = h @ layer["w"] + layer["b"]
        zs.append(z)
        if i < len(params) - 1:
            h = activation(z, act)
            hs.append(h)
    return zs, hs


def _softmax(o: np.ndarray) -> np.ndarray:
    e = np.exp(o - o.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _normalizer(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sum_normalize's divisor s' (the sum, replaced by EPS when |sum| < EPS) and whether the
    sum was used as is (where it was replaced, s' is a constant and passes back no gradient)."""
    s = o.sum(axis=-1, keepdims=True)
    used = np.abs(s) >= EPS
    return np.where(used, s, EPS), used


def predictions(o: np.ndarray, output: str) -> np.ndarray:
    if output == "softmax":
        return _softmax(o)
    if output == "sum_normalize":
        s, _ = _normalizer(o)
        return o / s
    if output == "none":
        return o
    raise ValueError(f"unknown output {output!r}")


def _targets(labels: np.ndarray, k: int, integer: bool, dtype: Any) -> np.ndarray:
    if integer:
        return labels.astype(dtype)[:, None]
    return np.eye(k, dtype=dtype)[labels]


def class_errors(o: np.ndarray, labels: np.ndarray, cfg: Any) -> np.ndarray:
    """e (B, K): (p - t)^2 for mse; -t log p for cross-entropy (log p clamped at log EPS, except
    for softmax where log p = o - logsumexp(o) exactly)."""
    integer = cfg.targets == "integer"
    t = _targets(labels, o.shape[-1], integer, o.dtype)
    if integer or cfg.error == "mse":
        return (predictions(o, cfg.output) - t) ** 2
    if cfg.output == "softmax":
        m = o.max(axis=-1, keepdims=True)
        log_p = o - m - np.log(np.exp(o - m).sum(axis=-1, keepdims=True))
        return -t * log_p
    return -t * np.log(np.maximum(predictions(o, cfg.output), EPS))


def loss(params: NpParams, x: np.ndarray, labels: np.ndarray, cfg: Any) -> float:
    """The scalar loss L, as `jaxmlp.losses.loss_fn` defines it, for the same `cfg` fields."""
    zs, _ = forward(params, x, cfg.activation)
    e = class_errors(zs[-1], labels, cfg)
    per_example = e.sum(-1) if cfg.class_reduction == "sum" else e.mean(-1)
    return float(per_example.sum() if cfg.example_reduction == "sum" else per_example.mean())


# --- backward -------------------------------------------------------------------------------------


def output_gradient(o: np.ndarray, labels: np.ndarray, cfg: Any) -> np.ndarray:
    """dL/do (B, K): the gradient of the loss with respect to the raw outputs."""
    b, k = o.shape
    integer = cfg.targets == "integer"
    t = _targets(labels, k, integer, o.dtype)
    # dL/de_ik: the two reductions are sums, so each error gets a constant weight.
    weight = (1.0 if cfg.example_reduction == "sum" else 1.0 / b) * (
        1.0 if cfg.class_reduction == "sum" else 1.0 / k
    )

    if not integer and cfg.error == "cross_entropy" and cfg.output == "softmax":
        # -log softmax(o)_y differentiates to p - t: the famous simplification.
        return weight * (_softmax(o) - t)

    p = predictions(o, cfg.output)
    if integer or cfg.error == "mse":
        dp = weight * 2.0 * (p - t)  # d(p - t)^2/dp
    else:
        # d(-t log max(p, EPS))/dp = -t/p where p > EPS, and 0 where the clamp holds it.
        dp = weight * np.where(p > EPS, -t / np.where(p > EPS, p, 1.0), 0.0)

    if cfg.output == "none":
        return dp
    if cfg.output == "softmax":
        # dp_k/do_j = p_k (delta_kj - p_j)  =>  dL/do_j = p_j (dp_j - sum_k dp_k p_k)
        return p * (dp - (dp * p).sum(-1, keepdims=True))
    # sum_normalize, p_k = o_k / s:  dp_k/do_j = delta_kj / s - o_k / s^2 (the second term only
    # where s is the real sum; a guarded s is the constant EPS).
    s, used = _normalizer(o)
    return dp / s - np.where(used, (dp * o).sum(-1, keepdims=True) / s**2, 0.0)


def backward(params: NpParams, x: np.ndarray, labels: np.ndarray, cfg: Any) -> NpParams:
    """dL/dW and dL/db for every layer, by the chain rule from the outputs down to layer 1."""
    zs, hs = forward(params, x, cfg.activation)
    dz = output_gradient(zs[-1], labels, cfg)  # the last layer is linear: dL/dz_L = dL/do
    grads: NpParams = [{} for _ in params]
    for i in reversed(range(len(params))):
        grads[i] = {"w": hs[i].T @ dz, "b": dz.sum(axis=0)}
        if i > 0:
            dh = dz @ params[i]["w"].T
            dz = dh * activation_derivative(zs[i - 1], cfg.activation)
    return grads

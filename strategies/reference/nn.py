"""Instrumented NumPy operations and a tiny multi-layer perceptron built only from them.

Every array operation of a reference run goes through :class:`Ops`, which does the NumPy
work and charges its FLOPs to the :class:`~strategies.reference.ledger.Ledger`, computed from
the operand shapes at run time. The rules (one FLOP = one add, multiply, compare, select,
divide or function evaluation on one element):

==========================  ====================================================
operation                   FLOPs charged
==========================  ====================================================
``matmul`` (m,k)@(k,n)      2·m·k·n (a multiply-add is 2 FLOP)
``affine`` x@W + b          2·m·k·n: the bias initialises the GEMM accumulator
                            (beta = 1), no extra charge (the convention of
                            simulator/workloads/layers.py: a dense 3->4 is 24 FLOP)
``matmul_acc`` C += A@B     2·m·k·n: accumulation into C is the GEMM's beta = 1
``colsum_acc`` c += A.sum0  one per element of A (the bias gradient)
element-wise                :data:`ELEMENTWISE` FLOPs x output elements
``rowmax``/``rowsum``/      one per input element
``total``
``sgd`` w -= lr·g           2 per element of w (multiply, subtract)
``rng_normal``              no FLOPs; ``size`` random samples
gather, reshape, copy,      nothing (data movement, not arithmetic)
concatenate, zeroing
==========================  ====================================================

The network: dense layers (weights (in, out), bias (out,)) with an activation after every
layer but the last, whose outputs are logits for softmax cross-entropy. A :class:`Block` holds
a consecutive range of layers (a pipeline stage, a local-loss block) with its gradients and
its stash of saved activations per micro-batch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from strategies.reference.ledger import Ledger

Activation = Literal["relu", "tanh"]

#: FLOPs per output element of the element-wise operations.
ELEMENTWISE: dict[str, int] = {
    "add": 1,
    "sub": 1,
    "mul": 1,
    "div": 1,
    "scale": 1,  # array times a scalar
    "exp": 1,
    "log": 1,
    "relu": 1,  # max(x, 0)
    "relu_grad": 1,  # select: dy where x > 0 else 0
    "tanh": 1,  # one function evaluation
    "tanh_grad": 3,  # dy * (1 - y * y): multiply, subtract, multiply
}


class Ops:
    """NumPy operations that charge FLOPs and random samples to ``ledger``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def _ew(self, name: str, out: np.ndarray) -> np.ndarray:
        self.ledger.charge_flops(ELEMENTWISE[name] * out.size)
        return out

    # Matrix products ----------------------------------------------------------------------
    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a @ b`` for (m, k) and (k, n): 2mkn FLOPs."""
        (m, k), (_, n) = a.shape, b.shape
        self.ledger.charge_flops(2 * m * k * n)
        return a @ b

    def affine(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``x @ w + b``: 2mkn FLOPs (the bias is the accumulator's initial value)."""
        (m, k), (_, n) = x.shape, w.shape
        self.ledger.charge_flops(2 * m * k * n)
        return x @ w + b

    def matmul_acc(self, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """``out += a @ b`` in place: 2mkn FLOPs."""
        (m, k), (_, n) = a.shape, b.shape
        self.ledger.charge_flops(2 * m * k * n)
        out += a @ b

    def colsum_acc(self, out: np.ndarray, a: np.ndarray) -> None:
        """``out += a.sum(axis=0)`` in place: one FLOP per element of ``a``."""
        self.ledger.charge_flops(a.size)
        out += a.sum(axis=0)

    # Element-wise -------------------------------------------------------------------------
    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a + b`` (broadcasting)."""
        return self._ew("add", a + b)

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a - b`` (broadcasting)."""
        return self._ew("sub", a - b)

    def mul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a * b`` (broadcasting)."""
        return self._ew("mul", a * b)

    def div(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a / b`` (broadcasting)."""
        return self._ew("div", a / b)

    def scale(self, a: np.ndarray, s: float) -> np.ndarray:
        """``s * a`` for a scalar ``s`` (kept in ``a``'s dtype)."""
        return self._ew("scale", a * a.dtype.type(s))

    def exp(self, a: np.ndarray) -> np.ndarray:
        """``exp(a)``."""
        return self._ew("exp", np.exp(a))

    def log(self, a: np.ndarray) -> np.ndarray:
        """``log(a)``."""
        return self._ew("log", np.log(a))

    def relu(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)``."""
        return self._ew("relu", np.maximum(x, 0))

    def relu_grad(self, dy: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``dy`` where ``x > 0``, else 0."""
        return self._ew("relu_grad", np.where(x > 0, dy, 0).astype(dy.dtype))

    def tanh(self, x: np.ndarray) -> np.ndarray:
        """``tanh(x)``."""
        return self._ew("tanh", np.tanh(x))

    def tanh_grad(self, dy: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``dy * (1 - y²)`` given the output ``y = tanh(x)``."""
        return self._ew("tanh_grad", dy * (1 - y * y))

    # Reductions ---------------------------------------------------------------------------
    def rowmax(self, a: np.ndarray) -> np.ndarray:
        """Maximum of each row: one FLOP per element."""
        self.ledger.charge_flops(a.size)
        return a.max(axis=1)

    def rowsum(self, a: np.ndarray) -> np.ndarray:
        """Sum of each row: one FLOP per element."""
        self.ledger.charge_flops(a.size)
        return a.sum(axis=1)

    def total(self, a: np.ndarray) -> float:
        """Sum of all elements: one FLOP per element."""
        self.ledger.charge_flops(a.size)
        return float(a.sum())

    # Update and randomness ----------------------------------------------------------------
    def sgd(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        """``w -= lr * g`` in place: 2 FLOPs per element."""
        self.ledger.charge_flops(2 * w.size)
        w -= w.dtype.type(lr) * g

    def rng_normal(
        self, rng: np.random.Generator, shape: tuple[int, ...], dtype: type[np.floating]
    ) -> np.ndarray:
        """Standard normal samples: charges ``prod(shape)`` samples, no FLOPs."""
        out = rng.standard_normal(shape).astype(dtype)
        self.ledger.charge_samples(out.size)
        return out


@dataclass
class Dense:
    """One dense layer's weights (in, out), bias (out,) and their gradient accumulators."""

    w: np.ndarray
    b: np.ndarray
    gw: np.ndarray = field(init=False)
    gb: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.gw = np.zeros_like(self.w)
        self.gb = np.zeros_like(self.b)

    @property
    def size(self) -> int:
        """Parameters (weights and bias)."""
        return self.w.size + self.b.size

    def copy(self) -> Dense:
        """A copy of the weights with zero gradients."""
        return Dense(self.w.copy(), self.b.copy())


def init_mlp(sizes: tuple[int, ...], seed: int, dtype: type[np.floating]) -> list[Dense]:
    """Dense layers for widths ``sizes`` (input first), Glorot-uniform weights, zero biases.

    Initialisation is not part of a training step and is not charged to any ledger.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for n_in, n_out in itertools.pairwise(sizes):
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype)
        layers.append(Dense(w, np.zeros(n_out, dtype=dtype)))
    return layers


def softmax_cross_entropy(
    ops: Ops, logits: np.ndarray, labels: np.ndarray, scale: float
) -> tuple[float, np.ndarray]:
    """Summed cross-entropy of ``logits`` (B, C) and ``scale`` x its gradient.

    With ``scale = 1 / global batch`` the gradients of all micro-batches and replicas add up to
    the gradient of the mean loss. FLOPs (B rows, C classes): rowmax BC, shift BC, exp BC,
    rowsum BC, normalise BC, log B, pick-and-subtract B, total B, minus one-hot BC, scale BC:
    7BC + 3B.
    """
    rows = np.arange(len(labels))
    shifted = ops.sub(logits, ops.rowmax(logits)[:, None])
    e = ops.exp(shifted)
    z = ops.rowsum(e)
    probs = ops.div(e, z[:, None])
    log_likelihood = ops.sub(shifted[rows, labels], ops.log(z))
    loss = -ops.total(log_likelihood)
    onehot = np.zeros_like(probs)
    onehot[rows, labels] = 1
    grad = ops.scale(ops.sub(probs, onehot), scale)
    return loss, grad


class Block:
    """Consecutive dense layers ``[first, first + len(layers))`` of a network of ``depth``.

    ``forward`` and ``backward`` are keyed by micro-batch so several can be in flight (a
    pipeline stage's stash). The caller sets the ledger's device and micro-batch; the block
    sets the phase: forward; backward_input (activation gradients, the gradient sent to the
    previous block); backward_weight (weight and bias gradients, accumulated over calls).
    The network's first layer computes no input gradient (nothing needs it).
    """

    def __init__(
        self, ops: Ops, layers: list[Dense], first: int, depth: int, activation: Activation
    ) -> None:
        self.ops = ops
        self.layers = layers
        self.first = first
        self.depth = depth
        self.activation = activation
        self.stash: dict[int, list[tuple[np.ndarray, np.ndarray | None]]] = {}

    @property
    def last(self) -> bool:
        """Whether the block ends with the network's output layer (logits)."""
        return self.first + len(self.layers) == self.depth

    def zero_grad(self) -> None:
        """Reset the gradient accumulators (not charged: a memset)."""
        for layer in self.layers:
            layer.gw[...] = 0
            layer.gb[...] = 0

    def forward(self, x: np.ndarray, key: int) -> np.ndarray:
        """Run the layers on ``x``, keep what backward needs under ``key``."""
        saved: list[tuple[np.ndarray, np.ndarray | None]] = []
        with self.ops.ledger.at(phase="forward"):
            for i, layer in enumerate(self.layers):
                z = self.ops.affine(x, layer.w, layer.b)
                if self.first + i == self.depth - 1:
                    saved.append((x, None))
                    x = z
                elif self.activation == "relu":
                    saved.append((x, z))
                    x = self.ops.relu(z)
                else:  # tanh: its gradient needs the output
                    y = self.ops.tanh(z)
                    saved.append((x, y))
                    x = y
        self.stash[key] = saved
        return x

    def backward(self, dy: np.ndarray, key: int) -> np.ndarray | None:
        """Accumulate weight gradients from ``dy``; return the input gradient (None at layer 0)."""
        saved = self.stash.pop(key)
        ops, at = self.ops, self.ops.ledger.at
        for i in reversed(range(len(self.layers))):
            layer, (x, kept) = self.layers[i], saved[i]
            if kept is not None:
                with at(phase="backward_input"):
                    if self.activation == "relu":
                        dy = ops.relu_grad(dy, kept)
                    else:
                        dy = ops.tanh_grad(dy, kept)
            with at(phase="backward_weight"):
                ops.matmul_acc(layer.gw, x.T, dy)
                ops.colsum_acc(layer.gb, dy)
            if self.first + i == 0:
                return None
            with at(phase="backward_input"):
                dy = ops.matmul(dy, layer.w.T)
        return dy

"""The layers of the tensor-parallel reference, forward and backward, in plain NumPy.

Each function works on one chip's share: with every argument whole it is the unsplit layer;
given a shard of the weights (some heads, some FFN columns, some vocabulary rows) it returns
that chip's *partial* result, which the caller sums over the group. Matrix products are charged
to a :class:`Flops` counter (2·m·k·n each), so the reference counts the work it did.

Shapes: activations (B, S, H) — batch, sequence, hidden; token ids and targets (B, S).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

EPS = 1e-5
GELU_C = float(np.sqrt(2.0 / np.pi))


@dataclass
class Flops:
    """Matrix-product FLOPs by (worker, layer, phase): charged by :meth:`mm` as they run."""

    counts: defaultdict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))
    where: tuple[int, str, str] = (0, "", "F")

    def mm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a @ b`` over the last two axes (batched), charging 2·m·k·n per product."""
        out = a @ b
        k = a.shape[-1]
        self.counts[self.where] += 2 * k * int(np.prod(out.shape))
        return out


# ---- layer norm ----------------------------------------------------------------------------
def layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, tuple]:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    inv = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv
    return gamma * xhat + beta, (xhat, inv, gamma)


def layernorm_back(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dgamma, dbeta) summed over every leading axis."""
    xhat, inv, gamma = cache
    n = xhat.shape[-1]
    axes = tuple(range(dy.ndim - 1))
    dgamma = (dy * xhat).sum(axis=axes)
    dbeta = dy.sum(axis=axes)
    dxhat = dy * gamma
    dx = (
        inv
        / n
        * (n * dxhat - dxhat.sum(-1, keepdims=True) - xhat * (dxhat * xhat).sum(-1, keepdims=True))
    )
    return dx, dgamma, dbeta


# ---- attention -----------------------------------------------------------------------------
def attention(
    fl: Flops,
    h: np.ndarray,
    w_qkv: np.ndarray,
    b_qkv: np.ndarray,
    w_proj: np.ndarray,
    d: int,
) -> tuple[np.ndarray, tuple]:
    """Causal multi-head attention over the heads whose columns ``w_qkv`` holds ([Q | K | V],
    head-major in each third) and whose rows ``w_proj`` holds; the output bias is the caller's
    (added once, after the group's sum); ``d`` is the head dimension. Returns the (partial)
    output."""
    b, s, _ = h.shape
    width = w_qkv.shape[1] // 3
    assert width == w_proj.shape[0]
    a = width // d
    qkv = fl.mm(h, w_qkv) + b_qkv
    q, k, v = (qkv[..., i * width : (i + 1) * width].reshape(b, s, a, d) for i in range(3))
    q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, A, S, d)
    scale = 1.0 / float(np.sqrt(d))  # a Python float: keeps the run's dtype
    scores = fl.mm(q, k.transpose(0, 1, 3, 2)) * scale
    mask = np.triu(np.ones((s, s), dtype=bool), 1)
    scores = np.where(mask, -np.inf, scores)
    scores = scores - scores.max(-1, keepdims=True)
    e = np.exp(scores)
    p = e / e.sum(-1, keepdims=True)
    ctx = fl.mm(p, v).transpose(0, 2, 1, 3).reshape(b, s, width)
    out = fl.mm(ctx, w_proj)
    return out, (h, q, k, v, p, ctx, w_qkv, w_proj, scale)


def attention_back(
    fl: Flops, dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(partial dh, dw_qkv, db_qkv, dw_proj) from the gradient of the whole output."""
    h, q, k, v, p, ctx, w_qkv, w_proj, scale = cache
    b, a, s, d = q.shape
    width = a * d
    dw_proj = fl.mm(ctx.reshape(-1, width).T, dout.reshape(-1, dout.shape[-1]))
    dctx = fl.mm(dout, w_proj.T).reshape(b, s, a, d).transpose(0, 2, 1, 3)
    dp = fl.mm(dctx, v.transpose(0, 1, 3, 2))
    dv = fl.mm(p.transpose(0, 1, 3, 2), dctx)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
    dq = fl.mm(ds, k)
    dk = fl.mm(ds.transpose(0, 1, 3, 2), q)
    dqkv = np.concatenate(
        [t.transpose(0, 2, 1, 3).reshape(b, s, width) for t in (dq, dk, dv)], axis=-1
    )
    dw_qkv = fl.mm(h.reshape(-1, h.shape[-1]).T, dqkv.reshape(-1, 3 * width))
    db_qkv = dqkv.sum(axis=(0, 1))
    dh = fl.mm(dqkv, w_qkv.T)
    return dh, dw_qkv, db_qkv, dw_proj


# ---- feed-forward --------------------------------------------------------------------------
def gelu(u: np.ndarray) -> np.ndarray:
    return 0.5 * u * (1.0 + np.tanh(GELU_C * (u + 0.044715 * u**3)))


def gelu_grad(u: np.ndarray) -> np.ndarray:
    t = np.tanh(GELU_C * (u + 0.044715 * u**3))
    return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * GELU_C * (1.0 + 3 * 0.044715 * u**2)


def ffn(
    fl: Flops, h: np.ndarray, w_up: np.ndarray, b_up: np.ndarray, w_down: np.ndarray
) -> tuple[np.ndarray, tuple]:
    """GELU feed-forward over the columns of ``w_up`` (rows of ``w_down``) given; the down
    bias is the caller's. Returns the (partial) output."""
    u = fl.mm(h, w_up) + b_up
    g = gelu(u)
    return fl.mm(g, w_down), (h, u, g, w_up, w_down)


def ffn_back(
    fl: Flops, dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(partial dh, dw_up, db_up, dw_down) from the gradient of the whole output."""
    h, u, g, w_up, w_down = cache
    dw_down = fl.mm(g.reshape(-1, g.shape[-1]).T, dout.reshape(-1, dout.shape[-1]))
    du = fl.mm(dout, w_down.T) * gelu_grad(u)
    dw_up = fl.mm(h.reshape(-1, h.shape[-1]).T, du.reshape(-1, du.shape[-1]))
    db_up = du.sum(axis=(0, 1))
    return fl.mm(du, w_up.T), dw_up, db_up, dw_down


# ---- vocabulary ----------------------------------------------------------------------------
def embed(table: np.ndarray, ids: np.ndarray, first: int) -> np.ndarray:
    """Rows ``first .. first + len(table)`` of the vocabulary: the tokens in that range get
    their row, the others zeros (the partial sum of a vocabulary-split lookup)."""
    local = ids - first
    inside = (local >= 0) & (local < len(table))
    rows = table[np.clip(local, 0, len(table) - 1)]
    return np.where(inside[..., None], rows, 0.0).astype(table.dtype)


def embed_back(grad: np.ndarray, dout: np.ndarray, ids: np.ndarray, first: int) -> None:
    """Scatter-add ``dout`` into the rows of ``grad`` (this chip's vocabulary range)."""
    local = ids - first
    inside = (local >= 0) & (local < len(grad))
    np.add.at(grad, local[inside], dout[inside])


def head_logits(fl: Flops, h: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Logits of the vocabulary rows ``table`` holds (the head tied to the embedding)."""
    return fl.mm(h, table.T)


__all__ = [
    "Flops",
    "attention",
    "attention_back",
    "embed",
    "embed_back",
    "ffn",
    "ffn_back",
    "head_logits",
    "layernorm",
    "layernorm_back",
]

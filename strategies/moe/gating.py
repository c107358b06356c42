"""The MoE reference run's routing half: configuration, generated tokens, noisy top-k gating,
capacity and the router-only counts the plan's ``routing: reference`` uses.

See :mod:`strategies.moe.reference` for the whole algorithm and its ledger.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from strategies.reference.ledger import Ledger
from strategies.reference.nn import Ops

TAGS = ("dispatch", "combine", "dispatch_grad", "combine_grad")

#: FLOPs per output element of the MoE-only element-wise operations (docs/strategies/moe.md).
MOE_ELEMENTWISE: dict[str, int] = {
    "softplus": 3,  # log(1 + exp(x)): exp, add, log
    "sigmoid": 3,  # 1 / (1 + exp(-x)): exp, add, divide
}


def expert_capacity(tokens: int, experts: int, top_k: int, capacity_factor: float) -> int:
    """C = ceil(top_k x tokens x capacity_factor / experts), rounded to 1e-9 before the ceiling
    so that 2 x 32 x 1.25 / 4 is 20, not 21."""
    return max(0, math.ceil(round(top_k * tokens * capacity_factor / experts, 9)))


class MoeOps(Ops):
    """:class:`Ops` plus the gating operations (FLOP rules in :data:`MOE_ELEMENTWISE`)."""

    def softplus(self, x: np.ndarray) -> np.ndarray:
        """``log(1 + exp(x))`` (computed stably)."""
        self.ledger.charge_flops(MOE_ELEMENTWISE["softplus"] * x.size)
        return np.logaddexp(0, x).astype(x.dtype)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        """``1 / (1 + exp(-x))``."""
        self.ledger.charge_flops(MOE_ELEMENTWISE["sigmoid"] * x.size)
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)

    def top_k(self, h: np.ndarray, k: int) -> np.ndarray:
        """Indices of the k largest entries per row, best first (ties: lower index).

        k passes of a row maximum: k x E compares per row."""
        self.ledger.charge_flops(k * h.size)
        return np.argsort(-h, axis=1, kind="stable")[:, :k]

    def softmax(self, a: np.ndarray) -> np.ndarray:
        """Row softmax: rowmax, shift, exp, rowsum, divide (5 per element)."""
        e = self.exp(self.sub(a, self.rowmax(a)[:, None]))
        return self.div(e, self.rowsum(e)[:, None])

    def softmax_grad(self, p: np.ndarray, dp: np.ndarray) -> np.ndarray:
        """``p * (dp - rowsum(p * dp))`` (4 per element)."""
        s = self.rowsum(self.mul(p, dp))
        return self.mul(p, self.sub(dp, s[:, None]))


# ---- configuration and data ------------------------------------------------------------------
@dataclass(frozen=True)
class MoeConfig:
    """One reference configuration (defaults: a few seconds of training on a laptop).

    ``tokens`` is T, a device's tokens per micro-batch; ``vocab`` and ``token_zipf`` shape the
    generated data (token ids ~ Zipf(token_zipf) over the vocabulary: frequent tokens always
    pick the same experts, which is what unbalances the load); a token's label is a fixed
    random class of its id.
    """

    devices: int = 4
    experts: int = 4
    top_k: int = 2
    capacity_factor: float = 1.25
    static_capacity: bool = True
    noisy: bool = True
    tokens: int = 32
    micro_batches: int = 1
    d_model: int = 16
    hidden: int = 32
    classes: int = 8
    vocab: int = 64
    token_zipf: float = 1.0
    balance_alpha: float = 0.01
    learning_rate: float = 0.5
    dtype: str = "fp32"
    seed: int = 0

    def __post_init__(self) -> None:
        d, e = self.devices, self.experts
        if self.top_k > e:
            raise ValueError(f"top_k {self.top_k} exceeds the {e} experts")
        if self.capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be > 0, got {self.capacity_factor}")
        if (e >= d and e % d) or (e < d and d % e):
            raise ValueError(f"{e} experts do not spread evenly over {d} devices")

    @property
    def capacity(self) -> int:
        """C per (source device, expert) per micro-batch."""
        return expert_capacity(self.tokens, self.experts, self.top_k, self.capacity_factor)

    @property
    def group_size(self) -> int:
        """Devices that exchange tokens with each other (min(D, E))."""
        return min(self.devices, self.experts)

    def expert_device(self, source: int, expert: int) -> int:
        """The device that serves ``source``'s tokens for ``expert``."""
        if self.experts >= self.devices:
            return expert // (self.experts // self.devices)
        return (source // self.experts) * self.experts + expert

    def experts_on(self, device: int) -> list[int]:
        """Experts whose weights ``device`` holds."""
        if self.experts >= self.devices:
            per = self.experts // self.devices
            return list(range(device * per, (device + 1) * per))
        return [device % self.experts]

    def sources_of(self, device: int) -> list[int]:
        """Devices whose tokens ``device``'s experts serve."""
        if self.experts >= self.devices:
            return list(range(self.devices))
        g = device // self.experts
        return list(range(g * self.experts, (g + 1) * self.experts))


def zipf_probabilities(vocab: int, exponent: float) -> np.ndarray:
    """p_i proportional to (i + 1)^-exponent over the vocabulary (0: uniform)."""
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
    return p / p.sum()


def embedding_table(seed: int, vocab: int, d_model: int) -> np.ndarray:
    """Initial token features, N(0, 1) entries (fp32)."""
    return np.random.default_rng([seed, 7]).standard_normal((vocab, d_model)).astype(np.float32)


def token_ids(
    seed: int, vocab: int, exponent: float, tokens: int, step: int, micro_batch: int, device: int
) -> np.ndarray:
    """The ``tokens`` token ids device ``device`` routes in (step, micro-batch)."""
    rng = np.random.default_rng([seed, 11, step, micro_batch, device])
    return rng.choice(vocab, size=tokens, p=zipf_probabilities(vocab, exponent))


def glorot(rng: np.random.Generator, n_in: int, n_out: int) -> np.ndarray:
    """Glorot-uniform (fan_in + fan_out) weights, fp32."""
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_in, n_out)).astype(np.float32)


@dataclass
class Router:
    """Gating weights (fp32, d x E, Glorot-uniform from the seed and layer) and gradients.

    Shazeer et al. initialise W_g and W_noise to zero (routing starts as pure noise); a random
    initialisation makes the measured routing depend on the tokens, which is the point here.
    """

    w_gate: np.ndarray
    w_noise: np.ndarray
    g_gate: np.ndarray = field(init=False)
    g_noise: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.g_gate = np.zeros_like(self.w_gate)
        self.g_noise = np.zeros_like(self.w_noise)

    @classmethod
    def init(cls, seed: int, layer: int, d_model: int, experts: int) -> Router:
        rng = np.random.default_rng([seed, 13, layer])
        return cls(glorot(rng, d_model, experts), glorot(rng, d_model, experts))


@dataclass
class Gating:
    """What the router computed for T tokens (fp32)."""

    x: np.ndarray | None  # router input (T, d); None when only the routing is wanted
    noise_logits: np.ndarray  # x Wn
    eps: np.ndarray | None  # the N(0, 1) draws (None: no noise)
    h: np.ndarray  # noisy logits (T, E)
    probs: np.ndarray  # softmax of h over all experts (for the balance loss)
    top: np.ndarray  # (T, k) expert indices, best first
    gates: np.ndarray  # (T, k) softmax over the kept logits


def noise_rng(
    seed: int, layer: int, step: int, micro_batch: int, device: int
) -> np.random.Generator:
    """Generator of the gating noise of one (layer, step, micro-batch, device)."""
    return np.random.default_rng([seed, 17, layer, step, micro_batch, device])


def gate(
    ops: MoeOps, router: Router, x: np.ndarray, k: int, rng: np.random.Generator | None
) -> Gating:
    """Noisy top-k gating of Shazeer et al.: H = x Wg + eps softplus(x Wn), keep the top k."""
    x = x.astype(router.w_gate.dtype)
    clean = ops.matmul(x, router.w_gate)
    return gate_logits(ops, x, clean, ops.matmul(x, router.w_noise), k, rng)


def gate_logits(
    ops: MoeOps,
    x: np.ndarray | None,
    clean: np.ndarray,
    noise_logits: np.ndarray,
    k: int,
    rng: np.random.Generator | None,
) -> Gating:
    """The gating after the two router products (``clean`` = x Wg, ``noise_logits`` = x Wn)."""
    eps = None
    h = clean
    if rng is not None:
        eps = ops.rng_normal(rng, clean.shape, clean.dtype.type)
        h = ops.add(clean, ops.mul(eps, ops.softplus(noise_logits)))
    top = ops.top_k(h, k)
    rows = np.arange(len(h))[:, None]
    gates = ops.softmax(h[rows, top])
    return Gating(x, noise_logits, eps, h, ops.softmax(h), top, gates)


def dispatch_slots(top: np.ndarray, experts: int, capacity: int) -> np.ndarray:
    """Slot of each (token, choice) in its expert's buffer, -1 when dropped.

    Priority: all first choices in token order, then all second choices, ... (GShard)."""
    slots = np.full(top.shape, -1, dtype=np.int64)
    fill = np.zeros(experts, dtype=np.int64)
    for j in range(top.shape[1]):
        for t in range(top.shape[0]):
            e = top[t, j]
            if fill[e] < capacity:
                slots[t, j] = fill[e]
                fill[e] += 1
    return slots


def router_counts(
    *,
    seed: int,
    layers: int,
    devices: int,
    tokens: int,
    micro_batches: int,
    d_model: int,
    experts: int,
    top_k: int,
    vocab: int,
    token_zipf: float,
    noisy: bool = True,
    step: int = 0,
) -> np.ndarray:
    """Assignments routed per (layer, micro-batch, source device, expert), before capacity.

    The reference router on the reference data (:func:`token_ids` of :func:`embedding_table`):
    layer l has its own router (seed, layer l) and noise; every layer sees the token features
    (deeper layers' real inputs are not modelled). For one layer this is exactly what
    :func:`run_step` routes in its first step.
    """
    ops = MoeOps(Ledger())
    table = embedding_table(seed, vocab, d_model)
    out = np.zeros((layers, micro_batches, devices, experts), dtype=np.int64)
    with ops.ledger.at(device=0, phase="forward"):
        for layer in range(layers):
            router = Router.init(seed, layer, d_model, experts)
            # a token's logits depend on its id only: the products of each vocabulary row,
            # gathered (bit-for-bit the rows of the per-token product; tested)
            clean, noise = table @ router.w_gate, table @ router.w_noise
            for m in range(micro_batches):
                for d in range(devices):
                    ids = token_ids(seed, vocab, token_zipf, tokens, step, m, d)
                    rng = noise_rng(seed, layer, step, m, d) if noisy else None
                    g = gate_logits(ops, None, clean[ids], noise[ids], top_k, rng)
                    out[layer, m, d] = np.bincount(g.top.ravel(), minlength=experts)
    return out

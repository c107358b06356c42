"""Mixture of experts, the real algorithm: noisy top-k routing, capacity, dropping, two
all-to-alls per direction, Switch load-balance loss — with an exact ledger.

The network (one MoE layer, residual, as in a Switch/GShard block):

    x = emb[ids]                         token features: a trainable table (V x d)
    H = x Wg + eps * softplus(x Wn)      noisy gating (Shazeer et al. 2017), eps ~ N(0, 1)
    top = the top_k experts of H per token; G = softmax(H over those k)
    y = x + sum_j G_j * FFN_{top_j}(x)   kept assignments only (dropped ones add nothing)
    logits = y Wc + bc; softmax cross-entropy + alpha E sum_i f_i P_i (Switch)

The router runs in fp32 (fp64 in an fp64 run) whatever the run's dtype (Switch Transformer's
"selective precision"); experts and messages use the run's dtype.

Devices and experts: D devices, E experts. E >= D: device ``e // (E/D)`` holds expert e (E/D
experts each), one group of D devices. E < D: D/E groups of E consecutive devices; device
``g E + e`` holds a replica of expert e and serves group g's tokens. Each device routes its own
T tokens per micro-batch (GShard's "group" is a device's tokens).

Capacity, per (source device, expert), per micro-batch: ``C = ceil(top_k x T x cf / E)``
(Switch: tokens per group / experts x capacity factor; GShard's top-2 capacity 2T/E scales it
by k). Assignments are served in priority order — every token's first choice in token order,
then every second choice — and those past C are dropped (the token keeps its residual).

Messages through the :class:`~strategies.reference.ledger.CountingCommunicator`, per micro-batch
and (source, expert device) pair, off-device pairs only: ``dispatch`` (token features to the
expert), ``combine`` (expert outputs back), and in the backward pass ``dispatch_grad``
(gradients of the expert outputs, source -> expert) and ``combine_grad`` (gradients of the
expert inputs, expert -> source). With ``static_capacity`` every buffer is the full
[C, d] per expert (padding rows are zeros and the experts compute them: static shapes, as on
IPUs and TPUs); without it only the kept rows are sent and computed.

Two ledgers: the main one (router, combine, classifier, loss, optimizer, all bytes) and
``expert_ledger`` (the expert FFNs, by the device that runs them), so expert work can be
compared on its own. Gradients: the non-expert weights are all-reduced over all D devices, an
expert's weights over its D/E replicas (none when E >= D); then SGD everywhere.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from strategies.moe.gating import (
    TAGS,
    Gating,
    MoeConfig,
    MoeOps,
    Router,
    dispatch_slots,
    embedding_table,
    expert_capacity,
    gate,
    glorot,
    noise_rng,
    router_counts,
    token_ids,
)
from strategies.reference.ledger import (
    NUMPY_DTYPES,
    CountingCommunicator,
    Ledger,
    LedgerSummary,
)
from strategies.reference.nn import Ops, softmax_cross_entropy


# ---- the model -------------------------------------------------------------------------------
@dataclass
class Expert:
    """One expert FFN: d -> hidden (ReLU) -> d, with gradient accumulators."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    grads: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.grads = [np.zeros_like(p) for p in self.params]

    @property
    def params(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    def copy(self) -> Expert:
        return Expert(*(p.copy() for p in self.params))

    def forward(self, ops: Ops, x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        z = ops.affine(x, self.w1, self.b1)
        a = ops.relu(z)
        return ops.affine(a, self.w2, self.b2), (x, z, a)

    def backward(self, ops: Ops, dy: np.ndarray, saved: tuple[np.ndarray, ...]) -> np.ndarray:
        x, z, a = saved
        g1, gb1, g2, gb2 = self.grads
        at = ops.ledger.at
        with at(phase="backward_weight"):
            ops.matmul_acc(g2, a.T, dy)
            ops.colsum_acc(gb2, dy)
        with at(phase="backward_input"):
            da = ops.relu_grad(ops.matmul(dy, self.w2.T), z)
        with at(phase="backward_weight"):
            ops.matmul_acc(g1, x.T, da)
            ops.colsum_acc(gb1, da)
        with at(phase="backward_input"):
            return ops.matmul(da, self.w1.T)


@dataclass
class Shared:
    """One device's copy of the non-expert weights (data-parallel) and their gradients."""

    emb: np.ndarray
    router: Router
    wc: np.ndarray
    bc: np.ndarray
    grads: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.grads = [np.zeros_like(p) for p in self.params]
        self.grads[1], self.grads[2] = self.router.g_gate, self.router.g_noise

    @property
    def params(self) -> list[np.ndarray]:
        return [self.emb, self.router.w_gate, self.router.w_noise, self.wc, self.bc]

    def copy(self) -> Shared:
        r = Router(self.router.w_gate.copy(), self.router.w_noise.copy())
        return Shared(self.emb.copy(), r, self.wc.copy(), self.bc.copy())


@dataclass(frozen=True)
class MoeLedgerSummary:
    """What one MoE step did; the plan for the same configuration must equal it.

    * ``ledger``: the main ledger (non-expert FLOPs; ``transfers[(src, dst, tag)]`` with the
      tags of :data:`TAGS`; the gradient all-reduces).
    * ``expert_flops[device][phase]``: the experts' FLOPs on the device that ran them.
    * ``capacity``: C per (source, expert) per micro-batch.
    * ``assigned`` / ``dropped``: per (micro-batch, source device, expert), assignments routed
      and dropped (over capacity).
    * ``expert_tokens[(micro_batch, device)]``: kept tokens the device's experts received.
    * ``expert_rows[(micro_batch, device)]``: rows its experts computed (C per source and
      expert with static capacity, else the kept tokens).
    * ``loss``, ``balance_loss``: the mean cross-entropy and the mean Switch auxiliary loss.
    """

    ledger: LedgerSummary
    expert_flops: dict[int, dict[str, int]]
    capacity: int
    assigned: dict[tuple[int, int, int], int]
    dropped: dict[tuple[int, int, int], int]
    expert_tokens: dict[tuple[int, int], int]
    expert_rows: dict[tuple[int, int], int]
    loss: float
    balance_loss: float

    def bytes_by_tag(self) -> dict[str, int]:
        """Off-device bytes per all-to-all tag, summed over pairs."""
        out = dict.fromkeys(TAGS, 0)
        for (_, _, tag), n in self.ledger.transfers.items():
            out[tag] += n
        return out

    @property
    def all_to_all_bytes(self) -> int:
        """Bytes of all four all-to-alls, all pairs, the whole step."""
        return sum(self.bytes_by_tag().values())


class MoeModel:
    """D devices of one MoE layer network (see the module docstring)."""

    def __init__(self, cfg: MoeConfig) -> None:
        self.cfg = cfg
        self.dtype = NUMPY_DTYPES[cfg.dtype]
        self.ledger = Ledger()
        self.expert_ledger = Ledger()
        self.ops = MoeOps(self.ledger)
        self.xops = Ops(self.expert_ledger)
        self.comm = CountingCommunicator(self.ledger)
        rng = np.random.default_rng([cfg.seed, 19])
        d, h, dt = cfg.d_model, cfg.hidden, self.dtype
        router = Router.init(cfg.seed, 0, d, cfg.experts)
        rdt = np.promote_types(dt, np.float32)
        shared = Shared(
            embedding_table(cfg.seed, cfg.vocab, d).astype(dt),
            # without noisy gating there is no noise product: an empty W_noise (d x 0)
            Router(
                router.w_gate.astype(rdt),
                router.w_noise.astype(rdt) if cfg.noisy else np.zeros((d, 0), rdt),
            ),
            glorot(rng, d, cfg.classes).astype(dt),
            np.zeros(cfg.classes, dt),
        )
        self.shared = [shared.copy() for _ in range(cfg.devices)]
        experts = [
            Expert(
                glorot(rng, d, h).astype(dt),
                np.zeros(h, dt),
                glorot(rng, h, d).astype(dt),
                np.zeros(d, dt),
            )
            for _ in range(cfg.experts)
        ]
        # replica of expert e on each device that holds it
        self.experts = {
            (dev, e): experts[e].copy() for dev in range(cfg.devices) for e in cfg.experts_on(dev)
        }
        labels = np.random.default_rng([cfg.seed, 23]).integers(0, cfg.classes, cfg.vocab)
        self.label_of = labels

    # -- one micro-batch ------------------------------------------------------------------------
    def _buffer(self, rows: int) -> np.ndarray:
        return np.zeros((rows, self.cfg.d_model), dtype=self.dtype)

    def micro_batch(
        self, step: int, m: int, counts: MoeCounts, scale: float
    ) -> tuple[float, float]:
        """Forward and backward of micro-batch m on every device; returns (CE sum, aux sum)."""
        cfg, ops = self.cfg, self.ops
        cap, devices, at = cfg.capacity, range(cfg.devices), self.ledger.at
        ids: dict[int, np.ndarray] = {}
        gating: dict[int, Gating] = {}
        picks: dict[int, list[tuple[int, int, np.ndarray, np.ndarray]]] = {}
        inbox: dict[tuple[int, int], np.ndarray] = {}  # (source, expert) -> its buffer
        # 1. route (fp32), drop over capacity, pack each (source, expert) buffer by slot
        for s in devices:
            ids[s] = token_ids(cfg.seed, cfg.vocab, cfg.token_zipf, cfg.tokens, step, m, s)
            x = self.shared[s].emb[ids[s]]
            with at(device=s, phase="forward", micro_batch=m):
                rng = noise_rng(cfg.seed, 0, step, m, s) if cfg.noisy else None
                g = gating[s] = gate(ops, self.shared[s].router, x, cfg.top_k, rng)
            slots = dispatch_slots(g.top, cfg.experts, cap)
            picks[s] = []
            for e in range(cfg.experts):
                kept = int(((g.top == e) & (slots >= 0)).sum())
                counts.assigned[(m, s, e)] += int((g.top == e).sum())
                counts.dropped[(m, s, e)] += int((g.top == e).sum()) - kept
                inbox[(s, e)] = self._buffer(cap if cfg.static_capacity else kept)
            for j in range(cfg.top_k):
                for e in range(cfg.experts):
                    tok = np.nonzero((g.top[:, j] == e) & (slots[:, j] >= 0))[0]
                    if len(tok):
                        picks[s].append((j, e, tok, slots[tok, j]))
                        inbox[(s, e)][slots[tok, j]] = x[tok]
        inbox = self._exchange(inbox, "dispatch", m, to_expert=True)
        # 2. experts, on the device that holds them, over the rows of all their sources
        outbox: dict[tuple[int, int], np.ndarray] = {}
        stash = {}
        for dev in devices:
            srcs = cfg.sources_of(dev)
            for e in cfg.experts_on(dev):
                parts = [inbox[(s, e)] for s in srcs]
                x = np.concatenate(parts)
                counts.expert_rows[(m, dev)] += len(x)
                counts.expert_tokens[(m, dev)] += sum(
                    len(tok) for s in srcs for _, pe, tok, _ in picks[s] if pe == e
                )
                with self.expert_ledger.at(device=dev, phase="forward", micro_batch=m):
                    y, stash[(dev, e)] = self.experts[(dev, e)].forward(self.xops, x)
                outbox.update(zip(((s, e) for s in srcs), _split(y, parts), strict=True))
        outbox = self._exchange(outbox, "combine", m, to_expert=False)
        # 3. combine (gate-weighted), classifier, loss; gradients of the expert outputs
        ce = 0.0
        grad_out: dict[tuple[int, int], np.ndarray] = {}
        d_gates: dict[int, np.ndarray] = {}
        dys: dict[int, np.ndarray] = {}
        for s in devices:
            sh, g = self.shared[s], gating[s]
            with at(device=s, micro_batch=m):
                x = sh.emb[ids[s]]
                mix = np.zeros_like(x)
                with at(phase="forward"):
                    for j, e, tok, rows in picks[s]:
                        w = g.gates[tok, j].astype(self.dtype)[:, None]
                        mix[tok] = ops.add(mix[tok], ops.mul(outbox[(s, e)][rows], w))
                    y = ops.add(x, mix)
                    logits = ops.affine(y, sh.wc, sh.bc)
                with at(phase="loss"):
                    loss, dlogits = softmax_cross_entropy(ops, logits, self.label_of[ids[s]], scale)
                ce += loss
                with at(phase="backward_weight"):
                    ops.matmul_acc(sh.grads[3], y.T, dlogits)
                    ops.colsum_acc(sh.grads[4], dlogits)
                with at(phase="backward_input"):
                    dy = dys[s] = ops.matmul(dlogits, sh.wc.T)
                    d_gate = d_gates[s] = np.zeros_like(g.gates)
                    for e in range(cfg.experts):
                        grad_out[(s, e)] = np.zeros_like(outbox[(s, e)])
                    for j, e, tok, rows in picks[s]:
                        w = g.gates[tok, j].astype(self.dtype)[:, None]
                        grad_out[(s, e)][rows] = ops.mul(dy[tok], w)
                        d_gate[tok, j] = ops.rowsum(ops.mul(dy[tok], outbox[(s, e)][rows]))
        # 4. backward through the experts
        grad_out = self._exchange(grad_out, "dispatch_grad", m, to_expert=True)
        grad_in: dict[tuple[int, int], np.ndarray] = {}
        for dev in devices:
            srcs = cfg.sources_of(dev)
            for e in cfg.experts_on(dev):
                parts = [grad_out[(s, e)] for s in srcs]
                with self.expert_ledger.at(device=dev, micro_batch=m):
                    dx = self.experts[(dev, e)].backward(
                        self.xops, np.concatenate(parts), stash[(dev, e)]
                    )
                grad_in.update(zip(((s, e) for s in srcs), _split(dx, parts), strict=True))
        grad_in = self._exchange(grad_in, "combine_grad", m, to_expert=False)
        # 5. token gradients, router backward (gates and balance loss), embedding rows
        aux = 0.0
        for s in devices:
            sh, g = self.shared[s], gating[s]
            with at(device=s, micro_batch=m, phase="backward_input"):
                dx = dys[s].copy()
                for _, e, tok, rows in picks[s]:
                    dx[tok] = ops.add(dx[tok], grad_in[(s, e)][rows])
                aux += self._router_backward(
                    sh, g, d_gates[s], dx, 1.0 / (cfg.devices * cfg.micro_batches)
                )
            with at(device=s, micro_batch=m, phase="backward_weight"):
                self.ledger.charge_flops(dx.size)  # scatter-add of dx into the embedding rows
                np.add.at(sh.grads[0], ids[s], dx)
        return ce, aux

    def _router_backward(
        self, sh: Shared, g: Gating, d_gate: np.ndarray, dx: np.ndarray, scale_aux: float
    ) -> float:
        """Gradients of Wg and Wn through the kept gates and the balance loss; adds the
        router's input gradient to ``dx``; returns this group's auxiliary loss."""
        cfg, ops = self.cfg, self.ops
        e_n, t_n = cfg.experts, len(g.h)
        rows = np.arange(t_n)[:, None]
        f = np.bincount(g.top.ravel(), minlength=e_n) / (cfg.top_k * t_n)
        p_mean = g.probs.mean(axis=0)
        aux = cfg.balance_alpha * e_n * float(np.sum(f * p_mean))
        dh = np.zeros_like(g.h)
        dh[rows, g.top] = ops.softmax_grad(g.gates, d_gate)
        # d aux / d probs[t, i] = alpha E f_i / T, scaled to the mean over groups
        dp = np.broadcast_to((cfg.balance_alpha * e_n * scale_aux / t_n) * f, g.probs.shape)
        dh = ops.add(dh, ops.softmax_grad(g.probs, dp.astype(dh.dtype)))
        dx32 = ops.matmul(dh, sh.router.w_gate.T)
        assert g.x is not None
        with ops.ledger.at(phase="backward_weight"):
            ops.matmul_acc(sh.router.g_gate, g.x.T, dh)
        if g.eps is not None:
            dn = ops.mul(ops.mul(dh, g.eps), ops.sigmoid(g.noise_logits))
            dx32 = ops.add(dx32, ops.matmul(dn, sh.router.w_noise.T))
            with ops.ledger.at(phase="backward_weight"):
                ops.matmul_acc(sh.router.g_noise, g.x.T, dn)
        dx += dx32.astype(dx.dtype)
        ops.ledger.charge_flops(dx.size)
        return aux

    def _exchange(
        self, boxes: dict[tuple[int, int], np.ndarray], tag: str, m: int, *, to_expert: bool
    ) -> dict[tuple[int, int], np.ndarray]:
        """Move every (source, expert) buffer between the source and the expert's device:
        one message per off-device (sender, receiver) pair, the experts' buffers concatenated
        in expert order."""
        cfg, out = self.cfg, {}
        pairs: dict[tuple[int, int], list[int]] = defaultdict(list)
        for s, e in sorted(boxes):
            dev = cfg.expert_device(s, e)
            if dev == s:
                out[(s, e)] = boxes[(s, e)]
            else:
                pairs[(s, dev) if to_expert else (dev, s)].append(e)
        for (a, b), experts in pairs.items():
            src = a if to_expert else b
            parts = [boxes[(src, e)] for e in experts]
            self.comm.send(np.concatenate(parts), a, b, tag, key=m)
            got = self.comm.recv(a, b, tag, key=m)
            for e, part in zip(
                experts, np.split(got, np.cumsum([len(p) for p in parts])[:-1]), strict=True
            ):
                out[(src, e)] = part
        return out

    # -- one step -------------------------------------------------------------------------------
    def step(self, step: int = 0) -> MoeStepResult:
        """Every micro-batch on every device, the all-reduces, then SGD."""
        cfg = self.cfg
        for sh in self.shared:
            for gr in sh.grads:
                gr[...] = 0
        for ex in self.experts.values():
            for gr in ex.grads:
                gr[...] = 0
        counts = MoeCounts()
        total_tokens = cfg.devices * cfg.micro_batches * cfg.tokens
        ce = aux = 0.0
        for m in range(cfg.micro_batches):
            c, a = self.micro_batch(step, m, counts, 1.0 / total_tokens)
            ce, aux = ce + c, aux + a
        self._all_reduce()
        for dev in range(cfg.devices):
            with self.ledger.at(device=dev, phase="optimizer"):
                for p, gr in zip(self.shared[dev].params, self.shared[dev].grads, strict=True):
                    self.ops.sgd(p, gr.astype(p.dtype), cfg.learning_rate)
            with self.expert_ledger.at(device=dev, phase="optimizer"):
                for e in cfg.experts_on(dev):
                    ex = self.experts[(dev, e)]
                    for p, gr in zip(ex.params, ex.grads, strict=True):
                        self.xops.sgd(p, gr, cfg.learning_rate)
        return MoeStepResult(ce / total_tokens, aux / (cfg.devices * cfg.micro_batches), counts)

    def _all_reduce(self) -> None:
        cfg = self.cfg
        if cfg.devices > 1:
            bufs = {
                d: np.concatenate([g.ravel().astype(self.dtype) for g in self.shared[d].grads])
                for d in range(cfg.devices)
            }
            summed = self.comm.all_reduce(bufs, tag="gradients")
            for d, flat in summed.items():
                _unflatten(flat, self.shared[d].grads)
        if cfg.devices > cfg.experts:
            for e in range(cfg.experts):
                holders = [d for d in range(cfg.devices) if e in cfg.experts_on(d)]
                bufs = {
                    d: np.concatenate([g.ravel() for g in self.experts[(d, e)].grads])
                    for d in holders
                }
                summed = self.comm.all_reduce(bufs, tag=f"expert {e} gradients")
                for d, flat in summed.items():
                    _unflatten(flat, self.experts[(d, e)].grads)


def _split(a: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """``a`` cut into consecutive pieces as long as the arrays of ``like``."""
    return np.split(a, np.cumsum([len(p) for p in like])[:-1])


def _unflatten(flat: np.ndarray, grads: list[np.ndarray]) -> None:
    offset = 0
    for gr in grads:
        gr[...] = flat[offset : offset + gr.size].reshape(gr.shape)
        offset += gr.size


@dataclass
class MoeCounts:
    """Routing counts charged while a step runs."""

    assigned: defaultdict[tuple[int, int, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    dropped: defaultdict[tuple[int, int, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    expert_tokens: defaultdict[tuple[int, int], int] = field(
        default_factory=lambda: defaultdict(int)
    )
    expert_rows: defaultdict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))


@dataclass(frozen=True)
class MoeStepResult:
    """Mean cross-entropy and auxiliary loss of a step, and its routing counts."""

    loss: float
    balance_loss: float
    counts: MoeCounts


def reference_moe_ledger(cfg: MoeConfig) -> MoeLedgerSummary:
    """Run one training step of ``cfg`` and return everything it counted."""
    model = MoeModel(cfg)
    res = model.step(0)
    devices = list(range(cfg.devices))
    xl = model.expert_ledger.summary(cfg.dtype, devices=devices)
    return MoeLedgerSummary(
        ledger=model.ledger.summary(cfg.dtype, devices=devices),
        expert_flops=xl.flops,
        capacity=cfg.capacity,
        assigned=dict(res.counts.assigned),
        dropped=dict(res.counts.dropped),
        expert_tokens=dict(res.counts.expert_tokens),
        expert_rows=dict(res.counts.expert_rows),
        loss=res.loss,
        balance_loss=res.balance_loss,
    )


def train_moe(cfg: MoeConfig, steps: int) -> list[MoeStepResult]:
    """``steps`` training steps (fresh data each step); the per-step results."""
    model = MoeModel(cfg)
    return [model.step(t) for t in range(steps)]


__all__ = [
    "TAGS",
    "MoeConfig",
    "MoeLedgerSummary",
    "MoeModel",
    "expert_capacity",
    "reference_moe_ledger",
    "router_counts",
    "train_moe",
]

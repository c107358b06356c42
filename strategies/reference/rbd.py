"""Random-subspace training (Gressmann et al., NeurIPS 2020): RBD, FPD, and NES for contrast.

W workers (each optionally R data-parallel replicas) train the MLP of :mod:`.nn` in random
subspaces. One step ``t`` on worker ``w`` (device ``w·R + r`` for replica ``r``), with the flat
parameter vector θ split into compartments (:func:`compartments`), compartment ``k`` holding
``D_k`` parameters and ``d_k`` of the ``d`` coefficients:

1. **forward** (ledger phase ``forward``, per-step work: micro-batch ``None``): draw the basis
   ``E_k`` (d_k × D_k) from the seed implied by (t, w, k) and project, θ_k = θ_k + c_kᵀ E_k with
   the coordinates c reset to 0 (the paper's formulation; the identity in value, paid in work:
   ``affine``, 2·d_k·D_k FLOPs, d_k·D_k samples). Then the network's forward pass and loss on
   the replica's rows (micro-batch 0).
2. **backward**: the network's backward pass leaves ∇θ; then (phase ``backward_weight``,
   per-step) the basis is *regenerated* (d_k·D_k samples again, never stored) and the
   coordinate gradient g_k = E_k ∇θ_k computed (``matmul``, 2·d_k·D_k FLOPs).
3. **exchange**: replicas of one worker all-reduce (sum) their d coordinate gradients
   (4d bytes); then, *independent* bases: the devices of replica r of every worker all-gather
   the payload ``(t, g)`` — a 4-byte step counter and d coefficients, 4 + 4d bytes, nothing
   else: the bases follow from the seeds; *shared* basis (one seed for all): the d-vectors are
   all-reduced over all devices.
4. **update** (phase ``optimizer``): *independent*: for every worker v in order (the same
   order on every device), regenerate v's bases from (t_v, v, k), scale g_v by −lr/(W·R)
   (d FLOPs) and apply θ_k += u_kᵀ E_k (2·d_k·D_k FLOPs), so a device draws W·d·D/c samples;
   *shared*: regenerate once and apply the summed g (d + 2·d·D/c FLOPs, d·D/c samples).
   With a shared basis every device uses the same seeds, so the W·R devices all-reduce their
   d-vectors once (no separate replica all-reduce).

Every device therefore performs the same operations on the same values in the same order:
the workers end with **bit-identical** weights while exchanging only (step, coefficients).
FPD (fixed projection descent, Li et al. 2018) is the same with seeds that do not depend on t.

Samples are counted by the drawing functions (``Ops.rng_normal`` and its uniform and
Bernoulli siblings here), bytes by the counting communicator (all-gather added here, on a
real ring), FLOPs by the instrumented ops: the counts are what the run did.

NES (:func:`train_nes`, Salimans et al. 2017 style, antithetic): d random directions per step,
the gradient estimated from loss differences only; the accuracy baseline of the paper's
Table 1. It is not a parallel strategy here and has no ledger comparison.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from strategies.reference.data import Dataset, blobs
from strategies.reference.ledger import (
    NUMPY_DTYPES,
    CollectiveRecord,
    CountingCommunicator,
    Ledger,
    LedgerSummary,
)
from strategies.reference.nn import Activation, Block, Dense, Ops, init_mlp, softmax_cross_entropy

Mode = Literal["rbd", "fpd"]
Basis = Literal["independent", "shared"]
Distribution = Literal["gaussian", "uniform", "bernoulli"]
DISTRIBUTIONS: tuple[str, ...] = ("gaussian", "uniform", "bernoulli")

#: Bytes of the step counter sent with the coefficients (a uint32).
STEP_COUNTER_BYTES = 4


# ---- compartments -------------------------------------------------------------------------
def parameter_sizes(sizes: Sequence[int]) -> list[int]:
    """Parameters of each dense layer (weights then bias) of the MLP with widths ``sizes``."""
    return [a * b + b for a, b in itertools.pairwise(sizes)]


def compartments(
    layer_params: Sequence[int], spec: int | Literal["layers"], d: int
) -> list[tuple[slice, int]]:
    """(slice of the flat parameter vector, coefficients) of each compartment.

    ``spec = "layers"``: one compartment per layer with parameters; an integer c: the flat
    vector cut into c consecutive parts of D // c parameters, the first D % c one more.
    The d coefficients are split the same way: d // c each, the first d % c one more.
    Raises ValueError when a compartment would get more coefficients than parameters.
    """
    total = sum(layer_params)
    if spec == "layers":
        lengths = [p for p in layer_params if p > 0]
    else:
        if not 1 <= spec <= total:
            raise ValueError(f"compartments must be in 1..{total} (got {spec})")
        lengths = [total // spec + (i < total % spec) for i in range(spec)]
    c = len(lengths)
    if d < c:
        raise ValueError(f"d = {d} is smaller than the {c} compartments (one coefficient each)")
    coeffs = [d // c + (i < d % c) for i in range(c)]
    out, start = [], 0
    for i, (n, k) in enumerate(zip(lengths, coeffs, strict=True)):
        if k > n:
            raise ValueError(
                f"compartment {i} has {n} parameters but {k} coefficients: d = {d} over {c} "
                "compartments is larger than the compartment size"
            )
        out.append((slice(start, start + n), k))
        start += n
    return out


# ---- drawing directions -------------------------------------------------------------------
def draw(
    ops: Ops,
    seed: Sequence[int],
    shape: tuple[int, int],
    distribution: Distribution,
    dtype: type[np.floating],
) -> np.ndarray:
    """Directions (rows) from the generator seeded by ``seed``; charges prod(shape) samples.

    Gaussian N(0, 1); uniform U(−√3, √3) and Bernoulli ±1 (both unit variance).
    """
    rng = np.random.default_rng(list(seed))
    if distribution == "gaussian":
        return ops.rng_normal(rng, shape, dtype)
    if distribution == "uniform":
        out = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), shape).astype(dtype)
    elif distribution == "bernoulli":
        out = (2 * rng.integers(0, 2, shape) - 1).astype(dtype)
    else:
        raise ValueError(f"unknown distribution {distribution!r}; one of {DISTRIBUTIONS}")
    ops.ledger.charge_samples(out.size)
    return out


# ---- communication ------------------------------------------------------------------------
class GatheringCommunicator(CountingCommunicator):
    """The counting communicator with a ring all-gather.

    ``all_gather`` over N devices, each contributing ``nbytes``: a record
    ``CollectiveRecord("all_gather", group, tag, N·nbytes)`` (the output buffer per device,
    the engine's ``Collective.bytes`` for all-gather) and ``ring_sent[device] += (N−1)·nbytes``:
    in N−1 steps each ring position passes the piece it received last to its successor.
    """

    def all_gather(
        self, buffers: Mapping[int, np.ndarray], tag: str
    ) -> dict[int, list[np.ndarray]]:
        group = tuple(buffers)
        n = len(group)
        first = buffers[group[0]]
        if any(b.shape != first.shape or b.dtype != first.dtype for b in buffers.values()):
            raise ValueError("all_gather buffers differ in shape or dtype")
        self.ledger.collectives.append(CollectiveRecord("all_gather", group, tag, n * first.nbytes))
        held: list[dict[int, np.ndarray]] = [{i: buffers[d].copy()} for i, d in enumerate(group)]
        for step in range(n - 1):  # position i sends piece (i - step) to i + 1
            moves = [(i, (i - step) % n) for i in range(n)]
            payload = [held[i][p].copy() for i, p in moves]
            for (i, p), data in zip(moves, payload, strict=True):
                self.ledger.ring_sent[group[i]] += data.nbytes
                held[(i + 1) % n][p] = data
        return {d: [held[i][p] for p in range(n)] for i, d in enumerate(group)}


def pack(step: int, coefficients: np.ndarray) -> np.ndarray:
    """The message of one worker: the step counter (uint32) then the fp32 coefficients."""
    head = np.array([step], dtype=np.uint32).view(np.uint8)
    return np.concatenate([head, coefficients.astype(np.float32).view(np.uint8)])


def unpack(message: np.ndarray) -> tuple[int, np.ndarray]:
    """Inverse of :func:`pack`."""
    return int(message[:STEP_COUNTER_BYTES].view(np.uint32)[0]), message[STEP_COUNTER_BYTES:].view(
        np.float32
    )


# ---- the run ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubspaceConfig:
    """One random-subspace configuration.

    * ``sizes``: MLP widths, input first. ``d``: total coefficients. ``compartments``: an
      integer c or ``"layers"`` (:func:`compartments`).
    * ``mode``: ``rbd`` (bases redrawn every step) or ``fpd`` (fixed bases).
    * ``basis``: ``independent`` (own bases per worker, all-gather of (t, g)) or ``shared``.
    * ``workers`` W, ``replicas`` R per worker; ``batch``: rows per replica per step (the
      global batch is W·R·batch).
    * ``distribution`` of the direction entries; ``learning_rate`` multiplies the applied
      coordinate step (the normalisation of the directions is folded into it).
    """

    sizes: tuple[int, ...] = (64, 32, 10)
    d: int = 40
    compartments: int | Literal["layers"] = 1
    mode: Mode = "rbd"
    basis: Basis = "independent"
    workers: int = 1
    replicas: int = 1
    batch: int = 32
    distribution: Distribution = "gaussian"
    learning_rate: float = 0.01
    activation: Activation = "relu"
    dtype: str = "fp32"
    seed: int = 0

    @property
    def devices(self) -> int:
        """W·R."""
        return self.workers * self.replicas

    @property
    def global_batch(self) -> int:
        """Rows per step over all devices."""
        return self.devices * self.batch

    def check(self) -> None:
        """Raise ValueError for a configuration that cannot run."""
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1 (got {self.workers})")
        if self.replicas < 1:
            raise ValueError(f"replicas must be >= 1 (got {self.replicas})")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {self.distribution!r}; one of {DISTRIBUTIONS}")
        if self.dtype not in NUMPY_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} not in {sorted(NUMPY_DTYPES)}")
        compartments(parameter_sizes(self.sizes), self.compartments, self.d)


@dataclass
class _Replica:
    """One device's copy: the flat θ and ∇θ with the layers as views into them."""

    theta: np.ndarray
    grad: np.ndarray
    block: Block


def _replica(ops: Ops, layers: Sequence[Dense], activation: Activation) -> _Replica:
    total = sum(x.size for x in layers)
    dtype = layers[0].w.dtype
    theta, grad = np.zeros(total, dtype=dtype), np.zeros(total, dtype=dtype)
    views, start = [], 0
    for layer in layers:
        parts = []
        for a in (layer.w, layer.b):
            sl = slice(start, start + a.size)
            theta[sl] = a.ravel()
            parts.append((theta[sl].reshape(a.shape), grad[sl].reshape(a.shape)))
            start += a.size
        dense = Dense(parts[0][0], parts[1][0])
        dense.gw, dense.gb = parts[0][1], parts[1][1]
        views.append(dense)
    return _Replica(theta, grad, Block(ops, views, 0, len(views), activation))


@dataclass
class SubspaceRun:
    """W·R devices training in random subspaces; ``step`` runs one step on all of them."""

    config: SubspaceConfig
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        cfg = self.config
        cfg.check()
        self.ops = Ops(self.ledger)
        self.comm = GatheringCommunicator(self.ledger)
        self.dtype = NUMPY_DTYPES[cfg.dtype]
        layers = init_mlp(cfg.sizes, cfg.seed, self.dtype)
        self.replicas = [_replica(self.ops, layers, cfg.activation) for _ in range(cfg.devices)]
        self.parts = compartments(parameter_sizes(cfg.sizes), cfg.compartments, cfg.d)
        self.t = 0

    # seeds: (run seed, t or 0 for FPD, worker or 0 for a shared basis, compartment)
    def _seed(self, t: int, worker: int, k: int) -> tuple[int, int, int, int]:
        cfg = self.config
        return (
            cfg.seed,
            t if cfg.mode == "rbd" else 0,
            worker if cfg.basis == "independent" else 0,
            k,
        )

    def _basis(self, t: int, worker: int, k: int) -> np.ndarray:
        sl, dk = self.parts[k]
        shape = (dk, sl.stop - sl.start)
        return draw(self.ops, self._seed(t, worker, k), shape, self.config.distribution, self.dtype)

    def _apply(self, rep: _Replica, t: int, worker: int, g: np.ndarray, scale: float) -> None:
        """θ += (scale·g)ᵀ E over the compartments of ``worker``'s bases at step ``t``."""
        u = self.ops.scale(g.astype(self.dtype), scale)
        offset = 0
        for k, (sl, dk) in enumerate(self.parts):
            e = self._basis(t, worker, k)
            rep.theta[sl] = self.ops.affine(u[None, offset : offset + dk], e, rep.theta[sl])[0]
            offset += dk

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One step on the global batch (W·R·batch rows, device i takes the i-th slice)."""
        cfg, ops, at = self.config, self.ops, self.ledger.at
        t, b = self.t, cfg.batch
        if len(y) != cfg.global_batch:
            raise ValueError(f"a step takes {cfg.global_batch} rows (got {len(y)})")
        coords: dict[int, np.ndarray] = {}
        loss = 0.0
        for dev, rep in enumerate(self.replicas):
            worker = dev // cfg.replicas
            rep.grad[...] = 0
            with at(device=dev, phase="forward"):  # projection: per-step work
                zero = np.zeros((1, cfg.d), dtype=self.dtype)
                offset = 0
                for k, (sl, dk) in enumerate(self.parts):
                    e = self._basis(t, worker, k)
                    c = zero[:, offset : offset + dk]
                    rep.theta[sl] = ops.affine(c, e, rep.theta[sl])[0]
                    offset += dk
            rows = slice(dev * b, (dev + 1) * b)
            with at(device=dev, micro_batch=0):
                logits = rep.block.forward(x[rows], key=0)
                with at(phase="loss"):
                    value, dlogits = softmax_cross_entropy(ops, logits, y[rows], 1.0 / b)
                rep.block.backward(dlogits, key=0)
            loss += value
            with at(device=dev, phase="backward_weight"):
                parts = []
                for k, (sl, _) in enumerate(self.parts):
                    e = self._basis(t, worker, k)
                    parts.append(ops.matmul(e, rep.grad[sl][:, None])[:, 0])
                coords[dev] = np.concatenate(parts)
        if cfg.replicas > 1 and cfg.basis == "independent":  # a worker's replicas: sum
            for w in range(cfg.workers):
                group = range(w * cfg.replicas, (w + 1) * cfg.replicas)
                coords.update(
                    self.comm.all_reduce({d: coords[d] for d in group}, tag="coefficients")
                )
        scale = -cfg.learning_rate / cfg.devices
        if cfg.basis == "shared":
            summed = self.comm.all_reduce(coords, tag="coefficients") if cfg.devices > 1 else coords
            for dev, rep in enumerate(self.replicas):
                with at(device=dev, phase="optimizer"):
                    self._apply(rep, t, 0, summed[dev], scale)
        else:
            received: dict[int, list[np.ndarray]] = {}
            for r in range(cfg.replicas):
                workers = [w * cfg.replicas + r for w in range(cfg.workers)]
                messages = {d: pack(t, coords[d]) for d in workers}
                if cfg.workers > 1:
                    received.update(self.comm.all_gather(messages, tag="coefficients"))
                else:
                    received.update({d: [m] for d, m in messages.items()})
            for dev, rep in enumerate(self.replicas):
                with at(device=dev, phase="optimizer"):
                    for v, message in enumerate(received[dev]):
                        step, g = unpack(message)
                        self._apply(rep, step, v, g, scale)
        self.t += 1
        return loss / cfg.devices

    def layers(self, device: int = 0) -> list[Dense]:
        """Device ``device``'s layers (views into its θ)."""
        return self.replicas[device].block.layers


def subspace_ledger(config: SubspaceConfig) -> LedgerSummary:
    """Run one step of ``config`` on generated data; return what the ledger counted."""
    run = SubspaceRun(config)
    data = blobs(
        config.global_batch, config.sizes[0], config.sizes[-1], seed=config.seed, test_fraction=0
    ).astype(run.dtype)
    run.step(data.x_train, data.y_train)
    return run.ledger.summary(config.dtype, devices=range(config.devices))


# ---- training to an accuracy --------------------------------------------------------------
@dataclass(frozen=True)
class Accuracy:
    """Outcome of a training run: test accuracy, samples drawn per device, steps."""

    method: str
    test_accuracy: float
    train_accuracy: float
    samples_per_step: int
    steps: int


def _accuracy(layers: list[Dense], x: np.ndarray, y: np.ndarray, act: Activation) -> float:
    ops = Ops(Ledger())
    with ops.ledger.at(device=0):
        logits = Block(ops, layers, 0, len(layers), act).forward(x, key=0)
    return float(np.mean(logits.argmax(axis=1) == y))


def _batches(n: int, batch: int, epochs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out += [order[s : s + batch] for s in range(0, n - batch + 1, batch)]
    return out


def train_subspace(config: SubspaceConfig, data: Dataset, epochs: int) -> Accuracy:
    """Train ``config`` for ``epochs`` (seeded shuffles, global batches, partial one dropped)."""
    run = SubspaceRun(config)
    data = data.astype(run.dtype)
    steps = _batches(len(data.y_train), config.global_batch, epochs, config.seed)
    for rows in steps:
        run.step(data.x_train[rows], data.y_train[rows])
    layers = run.layers(0)
    return Accuracy(
        f"{config.mode.upper()}",
        _accuracy(layers, data.x_test, data.y_test, config.activation),
        _accuracy(layers, data.x_train, data.y_train, config.activation),
        run.ledger.samples[0] // max(1, len(steps)),
        len(steps),
    )


def train_sgd(
    sizes: tuple[int, ...], data: Dataset, epochs: int, batch: int, lr: float, seed: int = 0
) -> Accuracy:
    """Plain SGD on the same MLP, batches and initialisation (the upper reference)."""
    ops = Ops(Ledger())
    rep = _replica(ops, init_mlp(sizes, seed, np.float32), "relu")
    data = data.astype(np.float32)
    steps = _batches(len(data.y_train), batch, epochs, seed)
    with ops.ledger.at(device=0, micro_batch=0):
        for rows in steps:
            rep.grad[...] = 0
            logits = rep.block.forward(data.x_train[rows], key=0)
            with ops.ledger.at(phase="loss"):
                _, dl = softmax_cross_entropy(ops, logits, data.y_train[rows], 1.0 / batch)
            rep.block.backward(dl, key=0)
            rep.theta -= np.float32(lr) * rep.grad
    layers = rep.block.layers
    return Accuracy(
        "SGD",
        _accuracy(layers, data.x_test, data.y_test, "relu"),
        _accuracy(layers, data.x_train, data.y_train, "relu"),
        0,
        len(steps),
    )


def train_nes(
    sizes: tuple[int, ...],
    data: Dataset,
    epochs: int,
    batch: int,
    directions: int,
    lr: float,
    sigma: float,
    seed: int = 0,
) -> Accuracy:
    """NES as Salimans et al. 2017 run it: ``directions`` Gaussian perturbations per step in
    mirrored pairs (ε, −ε), the losses L(θ + σε_i) on the step's batch replaced by centred
    ranks u_i in [−0.5, 0.5], g = Σ_i u_i ε_i / (σ·directions), θ −= lr·g. Loss values only:
    no gradient is computed."""
    if directions < 2 or directions % 2:
        raise ValueError(f"NES takes an even number of directions >= 2 (got {directions})")
    ops = Ops(Ledger())
    rep = _replica(ops, init_mlp(sizes, seed, np.float32), "relu")
    data = data.astype(np.float32)
    steps = _batches(len(data.y_train), batch, epochs, seed)
    rng = np.random.default_rng([seed, 1])
    with ops.ledger.at(device=0, micro_batch=0):
        for rows in steps:
            x, y = data.x_train[rows], data.y_train[rows]
            half = rng.standard_normal((directions // 2, rep.theta.size)).astype(np.float32)
            eps = np.concatenate([half, -half])
            base = rep.theta.copy()
            losses = np.empty(directions)
            for i in range(directions):
                rep.theta[...] = base + np.float32(sigma) * eps[i]
                logits = rep.block.forward(x, key=0)
                rep.block.stash.clear()
                with ops.ledger.at(phase="loss"):
                    losses[i], _ = softmax_cross_entropy(ops, logits, y, 1.0)
            ranks = np.empty(directions)
            ranks[np.argsort(losses, kind="stable")] = np.arange(directions)
            utility = (ranks / (directions - 1) - 0.5).astype(np.float32)
            grad = utility @ eps / np.float32(sigma * directions)
            rep.theta[...] = base - np.float32(lr) * grad
    layers = rep.block.layers
    return Accuracy(
        "NES",
        _accuracy(layers, data.x_test, data.y_test, "relu"),
        _accuracy(layers, data.x_train, data.y_train, "relu"),
        directions // 2 * rep.theta.size,
        len(steps),
    )

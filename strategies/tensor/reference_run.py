"""One training step of the tensor-parallel reference (:mod:`strategies.tensor.reference`):
every worker's forward and backward pass over M micro-batches, the group's collectives between
them, the gradients accumulated; see that module for the model and the split."""

from __future__ import annotations

import numpy as np

from strategies.reference.ledger import Ledger
from strategies.tensor import reference_layers as R
from strategies.tensor.reference import (
    GroupCommunicator,
    ReferenceConfig,
    TensorRun,
    data,
    init_params,
    join,
    shard,
)


class _Step:
    """The workers of one group through one step (lock-step, collectives between layers)."""

    def __init__(self, cfg: ReferenceConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.n = cfg.tensor
        self.sp = cfg.mode == "reduce_scatter" and self.n > 1
        self.ledger = Ledger()
        self.comm = GroupCommunicator(self.ledger, self.n)
        self.fl = R.Flops()
        whole = init_params(cfg)
        self.w = [shard(whole, cfg, t) for t in range(self.n)]
        self.g = [{k: np.zeros_like(v) for k, v in w.items()} for w in self.w]
        self.d = cfg.hidden // cfg.heads
        self.vocab_share = cfg.vocab // self.n
        self.seq_share = cfg.seq // self.n if self.sp else cfg.seq
        self.loss_dtype = np.promote_types(NP[cfg.dtype], np.float32)

    # ---- helpers ---------------------------------------------------------------------------
    def at(self, t: int, layer: str, phase: str) -> None:
        self.fl.where = (t, layer, phase)

    def positions(self, t: int) -> slice:
        first = t * self.seq_share if self.sp else 0
        return slice(first, first + self.seq_share)

    def join_out(self, parts: list[np.ndarray], tag: str) -> list[np.ndarray]:
        """A split layer's partial outputs, summed: whole (all_reduce) or split over the
        sequence (reduce_scatter)."""
        if self.sp:
            return self.comm.reduce_scatter(parts, tag)
        return self.comm.all_reduce(parts, tag)

    def whole_in(self, parts: list[np.ndarray], tag: str) -> list[np.ndarray]:
        """A split layer's input: all-gathered over the sequence (reduce_scatter), or as is."""
        return self.comm.all_gather(parts, tag) if self.sp else parts

    # ---- one micro-batch -------------------------------------------------------------------
    def micro_batch(self, m: int, ids: np.ndarray, targets: np.ndarray, scale: float) -> np.ndarray:
        cfg, n, w, g = self.cfg, self.n, self.w, self.g
        tag = lambda layer, ph, what: f"{layer} {ph} mb{m}: {what}"  # noqa: E731
        # forward ---------------------------------------------------------------------------
        parts = [R.embed(w[t]["embedding.tokens"], ids, t * self.vocab_share) for t in range(n)]
        x = self.join_out(parts, tag("embedding", "F", "output"))
        x = [x[t] + w[t]["embedding.positions"][self.positions(t)] for t in range(n)]
        caches = []
        for layer in range(cfg.layers):
            for part in ("attention", "ffn"):
                pre = f"decoder.{layer}.{part}."
                name = pre + part
                normed = [
                    R.layernorm(x[t], w[t][pre + "layernorm.gamma"], w[t][pre + "layernorm.beta"])
                    for t in range(n)
                ]
                h = self.whole_in([y for y, _ in normed], tag(name, "F", "input"))
                outs, cs = [], []
                for t in range(n):
                    self.at(t, name, "F")
                    if part == "attention":
                        o, c = R.attention(
                            self.fl,
                            h[t],
                            w[t][name + ".w_qkv"],
                            w[t][name + ".b_qkv"],
                            w[t][name + ".w_proj"],
                            self.d,
                        )
                    else:
                        o, c = R.ffn(
                            self.fl,
                            h[t],
                            w[t][name + ".w_up"],
                            w[t][name + ".b_up"],
                            w[t][name + ".w_down"],
                        )
                    outs.append(o)
                    cs.append(c)
                bias = ".b_proj" if part == "attention" else ".b_down"
                out = self.join_out(outs, tag(name, "F", "output"))
                x = [x[t] + out[t] + w[t][name + bias] for t in range(n)]
                caches.append((pre, name, part, [c for _, c in normed], cs))
        final = [
            R.layernorm(x[t], w[t]["layernorm.gamma"], w[t]["layernorm.beta"]) for t in range(n)
        ]
        h = self.whole_in([y for y, _ in final], tag("lm_head", "F", "input"))
        logits = []
        for t in range(n):
            self.at(t, "lm_head", "F")
            logits.append(R.head_logits(self.fl, h[t], w[t]["embedding.tokens"]))
        # vocabulary-parallel cross-entropy
        ld = self.loss_dtype
        mx = self.comm.all_reduce(
            [lg.max(-1).astype(ld) for lg in logits], tag("lm_head", "F", "loss max"), op="max"
        )
        exps, sums = [], []
        for t in range(n):
            e = np.exp(logits[t].astype(ld) - mx[t][..., None])
            local = targets - t * self.vocab_share
            inside = (local >= 0) & (local < self.vocab_share)
            picked = np.take_along_axis(
                logits[t].astype(ld), np.clip(local, 0, self.vocab_share - 1)[..., None], -1
            )[..., 0]
            exps.append(e)
            sums.append(np.stack([e.sum(-1), np.where(inside, picked, 0.0)]))
        total = self.comm.all_reduce(sums, tag("lm_head", "F", "loss sums"))
        losses = np.log(total[0][0]) + mx[0] - total[0][1]
        # backward --------------------------------------------------------------------------
        dh_parts = []
        for t in range(n):
            local = targets - t * self.vocab_share
            onehot = np.zeros_like(exps[t])
            inside = (local >= 0) & (local < self.vocab_share)
            bi, si = np.nonzero(inside)
            onehot[bi, si, local[inside]] = 1.0
            dlogits = ((exps[t] / total[t][0][..., None] - onehot) * scale).astype(h[t].dtype)
            self.at(t, "lm_head", "B")
            dh_parts.append(self.fl.mm(dlogits, w[t]["embedding.tokens"]))
            g[t]["embedding.tokens"] += self.fl.mm(
                dlogits.reshape(-1, dlogits.shape[-1]).T, h[t].reshape(-1, h[t].shape[-1])
            )
        dh = self.join_out(dh_parts, tag("lm_head", "B", "input gradient"))
        dx = []
        for t in range(n):
            d, dgam, dbet = R.layernorm_back(dh[t], final[t][1])
            g[t]["layernorm.gamma"] += dgam
            g[t]["layernorm.beta"] += dbet
            dx.append(d)
        for pre, name, part, ln_caches, cs in reversed(caches):
            bias = ".b_proj" if part == "attention" else ".b_down"
            for t in range(n):
                g[t][name + bias] += dx[t].sum(axis=(0, 1))
            dout = self.whole_in(dx, tag(name, "B", "output gradient"))
            parts = []
            for t in range(n):
                self.at(t, name, "B")
                if part == "attention":
                    dpart, dwq, dbq, dwp = R.attention_back(self.fl, dout[t], cs[t])
                    g[t][name + ".w_qkv"] += dwq
                    g[t][name + ".b_qkv"] += dbq
                    g[t][name + ".w_proj"] += dwp
                else:
                    dpart, dwu, dbu, dwd = R.ffn_back(self.fl, dout[t], cs[t])
                    g[t][name + ".w_up"] += dwu
                    g[t][name + ".b_up"] += dbu
                    g[t][name + ".w_down"] += dwd
                parts.append(dpart)
            dnorm = self.join_out(parts, tag(name, "B", "input gradient"))
            for t in range(n):
                d, dgam, dbet = R.layernorm_back(dnorm[t], ln_caches[t])
                g[t][pre + "layernorm.gamma"] += dgam
                g[t][pre + "layernorm.beta"] += dbet
                dx[t] = dx[t] + d
        for t in range(n):
            g[t]["embedding.positions"][self.positions(t)] += dx[t].sum(axis=0)
        dfull = self.whole_in(dx, tag("embedding", "B", "output gradient"))
        for t in range(n):
            R.embed_back(g[t]["embedding.tokens"], dfull[t], ids, t * self.vocab_share)
        return np.asarray(losses)

    def step_end(self) -> None:
        """With the sequence split: all-reduce the gradients that differ per worker (one
        fused buffer, in parameter order)."""
        if not self.sp:
            return
        names = [k for k in self.g[0] if _sequence_split(k)]
        flat = [np.concatenate([self.g[t][k].ravel() for k in names]) for t in range(self.n)]
        summed = self.comm.all_reduce(flat, "step: sequence-split gradients")
        for t in range(self.n):
            pos = 0
            for k in names:
                size = self.g[t][k].size
                self.g[t][k] = summed[t][pos : pos + size].reshape(self.g[t][k].shape)
                pos += size


NP = {"fp16": np.float16, "fp32": np.float32, "fp64": np.float64}


def _sequence_split(name: str) -> bool:
    """Parameters whose gradient each worker sums over its share of the sequence only: layer
    norms, the attention and FFN output biases, the position table."""
    return (
        ".layernorm." in name
        or name.startswith("layernorm.")
        or name.endswith((".b_proj", ".b_down"))
        or name == "embedding.positions"
    )


def run(cfg: ReferenceConfig) -> TensorRun:
    """One step of ``cfg``: every micro-batch forward and backward, the gradients joined."""
    step = _Step(cfg)
    ids, targets = data(cfg)
    scale = 1.0 / (cfg.micro_batches * cfg.micro_batch * cfg.seq)
    losses = np.stack(
        [step.micro_batch(m, ids[m], targets[m], scale) for m in range(cfg.micro_batches)]
    )
    step.step_end()
    return TensorRun(
        losses=losses,
        grads=join(step.g, cfg),
        collectives=tuple(step.ledger.collectives),
        ring_sent=dict(step.ledger.ring_sent),
        matmul_flops=dict(step.fl.counts),
    )


__all__ = ["run"]

"""Communication scenarios (``strategy.type: comm``): one exchange pattern, timed.

Tile-level patterns reproduce the Jia19 microbenchmarks (p2p, random, broadcast, gather,
scatter, reduce); each is one exchange phase of single-tile messages
(:class:`~simulator.engine.tasks.TileMessages`), and ``broadcast`` one hardware multicast
(:class:`~simulator.engine.tasks.TileMulticast`): the engine decides what the messages cost.
Chip-level patterns are the collectives (all_reduce, reduce_scatter, all_gather, all_to_all).
Semantics are those of DESIGN.md § Contracts; the metric formulas are in docs/metrics.md.
"""

from __future__ import annotations

from typing import Literal, Self, cast

from pydantic import Field, model_validator

from simulator.analytic import (
    TransferSpec,
    exchange_estimate,
    path_model,
    steps_estimate,
    stream_flow,
    transfer_flows,
)
from simulator.config.base import NonNegativeInt, PositiveFloat, PositiveInt, StrictModel
from simulator.config.limits import LIMITS_DOC, MAX_TILE_TRANSFERS
from simulator.engine.collectives import (
    choose_algorithm,
    minimum_payload,
    ring_order,
    schedule,
)
from simulator.engine.collectives_run import ELEM_BYTES
from simulator.engine.graph import TaskGraph
from simulator.engine.messages import multicast, phase, step_flows
from simulator.engine.tasks import (
    ALGORITHMS,
    Collective,
    CollectiveKind,
    Compute,
    MemLoad,
    TileMessages,
    TileMulticast,
)
from simulator.engine.trace import Trace
from simulator.metrics import Analytic, CommResult, EngineStats
from simulator.strategy import Plan, PlanContext, register

TILE_PATTERNS = (
    "p2p",
    "pairs",
    "random",
    "broadcast",
    "gather",
    "scatter",
    "reduce",
    "host_write",
)
CHIP_PATTERNS = ("all_reduce", "reduce_scatter", "all_gather", "all_to_all")


class CommParams(StrictModel):
    """Keys of ``strategy:`` for ``type: comm``."""

    pattern: Literal[
        "p2p",
        "pairs",
        "random",
        "broadcast",
        "gather",
        "scatter",
        "reduce",
        "host_write",
        "all_reduce",
        "reduce_scatter",
        "all_gather",
        "all_to_all",
    ] = Field(description="The exchange pattern (DESIGN.md § Contracts).")
    chips: Literal["all"] | list[NonNegativeInt] = Field(
        "all", description="`all` or chip ids; list order is ring order where order matters."
    )
    root: NonNegativeInt | None = Field(None, description="Root chip (default: the first chip).")
    tiles_per_chip: Literal["all"] | PositiveInt = Field(
        "all", description="How many tiles of each chip take part (tiles 0..n-1)."
    )
    bytes_per_tile: PositiveFloat | None = Field(None, description="Payload per tile, bytes.")
    bytes_per_chip: PositiveFloat | None = Field(
        None, description="Payload (buffer) per chip, bytes, spread over its tiles."
    )
    algorithm: Literal[ALGORITHMS] = Field(  # type: ignore[valid-type]
        "auto", description="Collective algorithm; `auto` picks as GCL would."
    )
    dtype: Literal["fp16", "fp32"] = Field("fp32", description="Element type of reductions.")

    @model_validator(mode="after")
    def _one_size(self) -> Self:
        if (self.bytes_per_tile is None) == (self.bytes_per_chip is None):
            raise ValueError("give exactly one of bytes_per_tile or bytes_per_chip")
        return self


class Comm:
    """The comm strategy."""

    name = "comm"
    params = CommParams

    # ---- planning ---------------------------------------------------------------------------
    def _chips(self, ctx: PlanContext, p: CommParams) -> list[int]:
        n = ctx.system.num_chips
        if p.chips == "all":
            chips = list(range(n))
            if p.pattern in CHIP_PATTERNS:
                chips = list(ring_order(ctx.system, chips))
        else:
            chips = list(p.chips)
            for i, c in enumerate(chips):
                if c >= n:
                    raise ctx.error(
                        ("strategy", "chips", i),
                        f"chip {c} does not exist (got {c}; "
                        f"{ctx.system.name} has chips 0..{n - 1})",
                    )
            if len(set(chips)) != len(chips):
                raise ctx.error(
                    ("strategy", "chips"), f"chips repeat (got {chips}; name each chip once)"
                )
        if p.pattern == "p2p" and len(chips) != 2:
            raise ctx.error(
                ("strategy", "chips"),
                f"p2p needs exactly two chips [source, destination] (got {p.chips})",
            )
        if p.pattern == "pairs" and len(chips) not in (1, 2):
            raise ctx.error(
                ("strategy", "chips"),
                f"pairs needs one chip (on-chip pairs) or two [source, destination] "
                f"(got {p.chips})",
            )
        if not chips:
            raise ctx.error(("strategy", "chips"), "no chips given (use `all` or a list)")
        if p.root is not None and p.root not in chips:
            raise ctx.error(
                ("strategy", "root"),
                f"root {p.root} is not among the chips (choose one of {chips})",
            )
        return chips

    def _tiles(self, ctx: PlanContext, p: CommParams, chips: list[int]) -> int:
        have = min(ctx.system.chips[c].type.tiles for c in chips)
        if p.tiles_per_chip == "all":
            return have
        if p.tiles_per_chip > have:
            raise ctx.error(
                ("strategy", "tiles_per_chip"),
                f"{p.tiles_per_chip} tiles requested, but the chips have {have} "
                f"(choose 1..{have} or `all`)",
            )
        return p.tiles_per_chip

    @staticmethod
    def _check_transfers(ctx: PlanContext, p: CommParams, chips: list[int], tiles: int) -> None:
        """Tile-level patterns make a transfer per tile: bounded before they are made."""
        if p.pattern in CHIP_PATTERNS:
            return
        count = tiles if p.pattern in ("p2p", "pairs") else len(chips) * tiles
        if count > MAX_TILE_TRANSFERS:
            raise ctx.error(
                ("strategy", "tiles_per_chip"),
                f"{p.pattern} over {len(chips):,} chips × {tiles:,} tiles makes {count:,} "
                f"tile transfers, over the limit of {MAX_TILE_TRANSFERS:,} ({LIMITS_DOC}); "
                "give fewer chips or tiles_per_chip",
            )

    def plan(self, ctx: PlanContext) -> Plan:
        p: CommParams = ctx.params  # type: ignore[assignment]
        chips = self._chips(ctx, p)
        tiles = self._tiles(ctx, p, chips)
        self._check_transfers(ctx, p, chips, tiles)
        if p.bytes_per_tile is not None:
            per_tile = p.bytes_per_tile
        else:
            assert p.bytes_per_chip is not None  # CommParams requires exactly one of the two
            per_tile = p.bytes_per_chip / tiles
        per_chip = per_tile * tiles
        root = p.root if p.root is not None else chips[0]
        g = TaskGraph()
        info: dict[str, object] = {
            "chips": chips,
            "tiles": tiles,
            "bytes_per_tile": per_tile,
            "bytes_per_chip": per_chip,
            "root": root,
        }
        if p.pattern in CHIP_PATTERNS:
            alg = p.algorithm
            if alg == "auto":
                alg = choose_algorithm(
                    ctx.system,
                    p.pattern,
                    chips,
                    per_chip,
                    tiles=tiles,
                    elem_bytes=ELEM_BYTES[p.dtype],
                )
            g.add(
                Collective(
                    cast(CollectiveKind, p.pattern),  # one of CHIP_PATTERNS
                    tuple(chips),
                    per_chip,
                    alg,
                    root=root,
                    dtype=p.dtype,
                    tiles=tiles,
                    label=p.pattern,
                )
            )
            info |= {
                "algorithm": alg,
                "transfers": None,
                "messages": None,
                "payload": minimum_payload(p.pattern, len(chips), per_chip),
            }
            return Plan(g, info)
        if p.pattern == "host_write":
            for c in chips:
                for t in range(tiles):
                    g.add(MemLoad(c, per_tile, source="host", tile=t, label="host write"))
            info |= {
                "algorithm": None,
                "transfers": len(chips) * tiles,
                "messages": 0,  # host streams are DMA transfers, not tile messages
                "payload": len(chips) * tiles * per_tile,
                "specs": [],
            }
            return Plan(g, info)
        specs = self._tile_transfers(ctx, p, chips, tiles, per_tile, root)
        if p.pattern == "broadcast":  # one message, received by every participating tile
            dsts = tuple(chips)
            ids = [g.add(TileMulticast(root, 0, dsts, tiles, per_tile, label="broadcast"))]
        else:
            sends = tuple((s.src, s.src_tile or 0, s.dst, s.dst_tile or 0) for s in specs)
            ids = [g.add(TileMessages(sends, per_tile, label=p.pattern))] if sends else []
        if p.pattern == "reduce":
            elems = len(specs) * per_tile / ELEM_BYTES[p.dtype]
            g.add(
                Compute(
                    root,
                    flops=elems,
                    dtype=p.dtype,
                    unit="vector",
                    tiles=1,
                    label="reduce on tile 0",
                ),
                deps=ids,
            )
        info |= {
            "algorithm": None,
            "transfers": len(specs),
            "messages": 1 if p.pattern == "broadcast" else len(specs),
            "payload": sum(s.nbytes for s in specs),
            "specs": specs,
        }
        return Plan(g, info)

    def _tile_transfers(
        self, ctx: PlanContext, p: CommParams, chips: list[int], tiles: int, b: float, root: int
    ) -> list[TransferSpec]:
        everyone = [(c, t) for c in chips for t in range(tiles)]
        if p.pattern == "p2p":
            a, d = chips
            return [TransferSpec(a, d, b, t, t) for t in range(tiles)]
        if p.pattern == "pairs":
            return self._pairs(ctx, chips, tiles, b)
        if p.pattern == "random":
            rng = ctx.rng
            out = []
            for c, t in everyone:
                others = [x for x in chips if x != c] or [c]
                dst = others[int(rng.integers(len(others)))]
                out.append(TransferSpec(c, dst, b, t, int(rng.integers(tiles))))
            return out
        if p.pattern in ("broadcast", "scatter"):
            return [TransferSpec(root, c, b, 0, t) for c, t in everyone if (c, t) != (root, 0)]
        # gather, reduce
        return [TransferSpec(c, root, b, t, 0) for c, t in everyone if (c, t) != (root, 0)]

    @staticmethod
    def _pairs(ctx: PlanContext, chips: list[int], tiles: int, b: float) -> list[TransferSpec]:
        """Tiles 0..T-1 of the first chip each send to a distinct tile of the last chip, drawn
        by a random permutation (Jia19's "random distinct pairs"); on one chip no tile sends
        to itself."""
        a, d = chips[0], chips[-1]
        have = ctx.system.chips[d].type.tiles
        dest = [int(x) for x in ctx.rng.permutation(have)[:tiles]]
        if a == d:
            fixed = [i for i in range(tiles) if dest[i] == i]
            if len(fixed) == 1:  # swap with any other position (its tile differs from both)
                j = (fixed[0] + 1) % tiles if tiles > 1 else fixed[0]
                fixed.append(j)
            for k in range(len(fixed)):
                i, j = fixed[k], fixed[(k + 1) % len(fixed)]
                if k < len(fixed) - 1:
                    dest[i], dest[j] = dest[j], dest[i]
        return [TransferSpec(a, d, b, t, dest[t]) for t in range(tiles)]

    # ---- results ----------------------------------------------------------------------------
    def summarise(self, ctx: PlanContext, plan: Plan, trace: Trace | None) -> CommResult:
        p: CommParams = ctx.params  # type: ignore[assignment]
        info = plan.info
        system = ctx.system
        chips: list[int] = info["chips"]  # type: ignore[assignment]
        if trace is None:  # not run: failed links cut its chips apart (docs/variability.md)
            nan = float("nan")  # null in the JSON
            return CommResult(
                name=ctx.scenario.name,
                feasible=False,
                reason=plan.reason,
                pattern=p.pattern,
                system=system.name,
                chips=len(chips),
                tiles_per_chip=info["tiles"],  # type: ignore[arg-type]
                transfers=0,
                messages=0,
                algorithm=info.get("algorithm"),  # type: ignore[arg-type]
                bytes_per_tile=info["bytes_per_tile"],  # type: ignore[arg-type]
                bytes_per_chip=info["bytes_per_chip"],  # type: ignore[arg-type]
                payload_bytes=float(info["payload"]),  # type: ignore[arg-type]
                time_s=nan,
                bandwidth_GBps=nan,
                algbw_GBps=None,
                analytic=Analytic(nan, nan, nan, nan, "not run"),
            )
        t = trace.makespan
        chip_level = p.pattern in CHIP_PATTERNS
        if chip_level:
            ct = system.chips[chips[0]].type
            steps = schedule(
                system,
                p.pattern,
                chips,
                info["bytes_per_chip"],  # type: ignore[arg-type]
                info["algorithm"],
                elem_bytes=ELEM_BYTES[p.dtype],
                root=info["root"],
            )  # type: ignore[arg-type]
            rate = ct.tiles * ct.clock_hz * ct.vector_flop_per_cycle[p.dtype]
            est = steps_estimate(system, steps, info["tiles"], rate)  # type: ignore[arg-type]
            formula = (
                f"{info['algorithm']}: sum over {len(steps)} steps of "
                "(alpha + (bytes + messages x per-message cost)/beta)"
            )
            transfers = sum(len(s.pairs) for s in steps)
            step_paths = path_model(system)
            per_key: dict[int, float] = {}  # steps with one key have the same flows
            for s in steps:
                if s.key not in per_key:
                    flows = step_flows(step_paths, s, info["tiles"])  # type: ignore[arg-type]
                    per_key[s.key] = sum(f.messages for f in flows)
            messages = int(sum(per_key[s.key] for s in steps))
        else:
            specs: list[TransferSpec] = info["specs"]  # type: ignore[assignment]
            red = 0.0
            if p.pattern == "reduce":
                ct = system.chips[info["root"]].type  # type: ignore[index]
                red = (
                    len(specs)
                    * info["bytes_per_tile"]
                    / ELEM_BYTES[p.dtype]
                    / (  # type: ignore[operator]
                        ct.clock_hz * ct.vector_flop_per_cycle[p.dtype]
                    )
                )
            paths = path_model(system)
            if p.pattern == "host_write":
                flows = [
                    stream_flow(
                        paths.stream_path(system.host_node(c) or "", c, inbound=True, tile=t),
                        float(info["bytes_per_tile"]),  # type: ignore[arg-type]
                    )
                    for c in chips
                    for t in range(info["tiles"])  # type: ignore[call-overload]
                ]
            elif p.pattern == "broadcast":
                one = multicast(
                    paths,
                    info["root"],  # type: ignore[arg-type]
                    chips,
                    float(info["bytes_per_tile"]),  # type: ignore[arg-type]
                    src_tile=0,
                    tiles=info["tiles"],  # type: ignore[arg-type]
                )
                flows = phase(paths, [one])
            else:
                flows = transfer_flows(paths, specs)
            est = exchange_estimate(paths, flows, red)
            formula = (
                "max(slowest message alone, latency + busiest resource's "
                "(bytes + messages x per-message cost)/capacity)"
            )
            transfers = int(info["transfers"])  # type: ignore[call-overload]
            messages = int(info["messages"])  # type: ignore[call-overload]
        payload = float(info["payload"])  # type: ignore[arg-type]
        util = {}
        if t > 0:
            for ch, nbytes in zip(system.channels, trace.channel_bytes.tolist(), strict=True):
                if nbytes > 0:
                    util[f"{ch.src}->{ch.dst}"] = nbytes / (ch.capacity_Bps * t)
        util = dict(sorted(util.items(), key=lambda kv: (-kv[1], kv[0]))[:16])
        return CommResult(
            name=ctx.scenario.name,
            feasible=True,
            reason=None,
            pattern=p.pattern,
            system=system.name,
            chips=len(chips),
            tiles_per_chip=info["tiles"],  # type: ignore[arg-type]
            transfers=transfers,
            messages=messages,
            algorithm=info["algorithm"],  # type: ignore[arg-type]
            bytes_per_tile=info["bytes_per_tile"],  # type: ignore[arg-type]
            bytes_per_chip=info["bytes_per_chip"],  # type: ignore[arg-type]
            payload_bytes=payload,
            time_s=t,
            bandwidth_GBps=payload / t / 1e9 if t > 0 else 0.0,
            algbw_GBps=(info["bytes_per_chip"] / t / 1e9) if chip_level and t > 0 else None,  # type: ignore[operator]
            analytic=Analytic(
                est.estimate_s,
                est.lower_bound_s,
                t,
                t / est.estimate_s - 1 if est.estimate_s > 0 else 0.0,
                formula,
            ),
            link_utilisation=util,
            engine=EngineStats.of(trace, len(plan.graph)),
        )


register(Comm())

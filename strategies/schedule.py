"""Pipeline schedules: the order in which each device runs forward and backward passes.

An op is ``(kind, micro_batch, virtual_stage)`` with kind ``"F"`` or ``"B"``. Device ``d``
holds virtual stages ``d, d + K, d + 2K, ...`` (``chunks`` of them; 1 unless interleaved).

* GPipe (Huang et al. 2019): all forwards, then all backwards (last micro-batch first).
* 1F1B (PipeDream-Flush): ``K - d - 1`` warm-up forwards, then one forward and one backward
  alternately, then the remaining backwards; at most ``K - d`` micro-batches in flight.
* Interleaved 1F1B (Narayanan et al. 2021): ``chunks`` virtual stages per device, micro-batches
  in groups of K, warm-up ``(K - d - 1) * 2 + (chunks - 1) * K`` forwards.
"""

from __future__ import annotations

from typing import Literal

Op = tuple[str, int, int]
Schedule = Literal["gpipe", "1f1b", "interleaved"]


def device_orders(
    schedule: Schedule, stages: int, micro_batches: int, chunks: int = 1
) -> list[list[Op]]:
    """The op order of every device (index = device = physical stage)."""
    k, m = stages, micro_batches
    if schedule == "gpipe":
        return [
            [("F", i, d) for i in range(m)] + [("B", i, d) for i in reversed(range(m))]
            for d in range(k)
        ]
    if schedule == "1f1b":
        out = []
        for d in range(k):
            warm = min(k - d - 1, m)
            order: list[Op] = [("F", i, d) for i in range(warm)]
            f, b = warm, 0
            while f < m:
                order.append(("F", f, d))
                f += 1
                order.append(("B", b, d))
                b += 1
            order += [("B", i, d) for i in range(b, m)]
            out.append(order)
        return out
    if schedule == "interleaved":
        return [_interleaved(d, k, m, chunks) for d in range(k)]
    raise ValueError(f"unknown schedule {schedule!r}")


def _interleaved(d: int, k: int, m: int, v: int) -> list[Op]:
    """Megatron-LM's interleaved order for device ``d`` (requires m % k == 0)."""
    total = m * v

    def chunk_of(i: int, forward: bool) -> int:
        c = (i // k) % v
        return c if forward else v - 1 - c

    def micro_of(i: int) -> int:
        return (i // (k * v)) * k + i % k

    warm = min((k - d - 1) * 2 + (v - 1) * k, total)
    order: list[Op] = [("F", micro_of(i), chunk_of(i, True) * k + d) for i in range(warm)]
    f, b = warm, 0
    while f < total:
        order.append(("F", micro_of(f), chunk_of(f, True) * k + d))
        f += 1
        order.append(("B", micro_of(b), chunk_of(b, False) * k + d))
        b += 1
    order += [("B", micro_of(i), chunk_of(i, False) * k + d) for i in range(b, total)]
    return order


def in_flight(
    schedule: Schedule, stages: int, micro_batches: int, device: int, chunks: int = 1
) -> int:
    """Most micro-batches whose activations device ``device`` holds at once."""
    held = peak = 0
    for kind, _, _ in device_orders(schedule, stages, micro_batches, chunks)[device]:
        held += 1 if kind == "F" else -1
        peak = max(peak, held)
    return max(1, peak // max(1, chunks) if schedule == "interleaved" else peak)

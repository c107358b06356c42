"""The one place where units in key names become internal units.

Internal units: seconds, bytes, bytes per second, hertz, FLOP, FLOP per second, watts.
Key-name suffixes: ``_GBps`` (1e9 B/s, decimal as the vendors and Jia19 use), ``_Gbps``
(1e9 bit/s), ``_ns``, ``_us``, ``_s``, ``_bytes``, ``_KiB``, ``_MiB``, ``_GiB``, ``_GB``,
``_hz``, ``_W``.
"""

from __future__ import annotations

GB = 1e9
KIB = 1024
MIB = 1024**2
GIB = 1024**3

_TO_INTERNAL: dict[str, float] = {
    "GBps": 1e9,
    "Gbps": 1e9 / 8,
    "ns": 1e-9,
    "us": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "bytes": 1.0,
    "KiB": float(KIB),
    "MiB": float(MIB),
    "GiB": float(GIB),
    "GB": 1e9,
    "hz": 1.0,
    "W": 1.0,
}


def unit_of(key: str) -> str | None:
    """The unit suffix of a key name (``link_GBps`` -> ``GBps``), or None."""
    suffix = key.rsplit("_", 1)[-1] if "_" in key else ""
    return suffix if suffix in _TO_INTERNAL else None


def to_internal(value: float, unit: str) -> float:
    """Convert ``value`` given in ``unit`` (a key-name suffix) to internal units."""
    return value * _TO_INTERNAL[unit]


def GBps(value: float) -> float:
    """GB/s (1e9 B/s) -> bytes per second."""
    return value * 1e9


def Gbps(value: float) -> float:
    """Gbit/s -> bytes per second."""
    return value * 1e9 / 8


def ns(value: float) -> float:
    """Nanoseconds -> seconds."""
    return value * 1e-9


def us(value: float) -> float:
    """Microseconds -> seconds."""
    return value * 1e-6

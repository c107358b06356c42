"""Build a :class:`System` from a system file and the chip file it names.

Finding and reading the files is here: a built-in name, a path or an inline mapping (a
scenario's ``topology:``) is resolved, read through the config layer (positions kept, strict
schemas, assumption blocks checked) and kept as a :class:`SystemSource`, from which
:func:`build_source` builds the System — again with other system or chip data when
:mod:`simulator.sensitivity` varies one value. The chip file becomes a :class:`ChipType` here
(unit-suffixed keys become SI only through :mod:`simulator.units`); generating the chips and
links of the system file is :mod:`simulator.hardware.generate`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from simulator.config import paths
from simulator.config.assumptions import check_blocks, records
from simulator.config.load import check_kind, render_path, validate
from simulator.config.topology import PATTERNS, ChipFile, SystemFile
from simulator.config.yamlio import Document, KeyPath, load_document
from simulator.errors import InputError, did_you_mean, one_of
from simulator.hardware.generate import INLINE_LABEL, Where, build_system, si
from simulator.hardware.model import (
    ChipType,
    MessageCosts,
    SparseCostModel,
    TileCostModel,
)
from simulator.hardware.system import System

# ---- chip files ---------------------------------------------------------------------------------


def chip_type_from(cf: ChipFile, name: str) -> ChipType:
    """A validated chip file as a :class:`ChipType` in internal units."""
    return ChipType(
        name=cf.name or name,
        tiles=cf.tiles,
        sram_per_tile_bytes=int(si(cf, "sram_per_tile_bytes")),
        clock_hz=si(cf, "clock_hz"),
        threads_per_tile=cf.threads_per_tile,
        amp_flop_per_cycle=MappingProxyType(cf.amp_flop_per_cycle.model_dump()),
        vector_flop_per_cycle=MappingProxyType(cf.vector_flop_per_cycle.model_dump()),
        local_read_bytes_per_cycle=cf.local_read_bytes_per_cycle,
        local_write_bytes_per_cycle=cf.local_write_bytes_per_cycle,
        exchange_bytes_per_cycle=cf.exchange_bytes_per_cycle,
        exchange_efficiency=cf.exchange_efficiency,
        offchip_tile_efficiency=cf.offchip_tile_efficiency,
        exchange_latency_s=si(cf, "exchange_latency_ns"),
        sync_latency_s=si(cf, "sync_latency_ns"),
        external_sync_latency_s=si(cf, "external_sync_latency_ns"),
        link_egress_latency_s=si(cf, "link_egress_latency_ns"),
        prng_bits_per_cycle=cf.prng_bits_per_cycle,
        prng_efficiency=cf.prng_efficiency,
        gaussian_uniform_draws=cf.gaussian_uniform_draws,
        ipu_links=cf.ipu_links,
        power_W=si(cf, "power_W"),
        cost=TileCostModel(
            amp_pipeline_efficiency=MappingProxyType(cf.amp_pipeline_efficiency.model_dump()),
            amp_input_channels_per_group=MappingProxyType(
                cf.amp_input_channels_per_group.model_dump()
            ),
            amp_output_channels_per_group=MappingProxyType(
                cf.amp_output_channels_per_group.model_dump()
            ),
            amp_coeff_load_bytes_per_cycle=cf.amp_coeff_load_bytes_per_cycle,
            vertex_overhead_cycles=cf.vertex_overhead_cycles,
            code_base_per_tile_bytes=int(si(cf, "code_base_per_tile_bytes")),
            vertex_state_per_layer_per_tile_bytes=int(
                si(cf, "vertex_state_per_layer_per_tile_bytes")
            ),
            exchange_buffer_fraction=cf.exchange_buffer_fraction,
        ),
        messages=MessageCosts(**cf.messages.model_dump()),
        sparse=None
        if cf.sparse is None
        else SparseCostModel(
            amp_efficiency=cf.sparse.amp_efficiency,
            vector_efficiency=cf.sparse.vector_efficiency,
            dynamic_mac_cycles=cf.sparse.dynamic_mac_cycles,
            bucket_headroom=cf.sparse.bucket_headroom,
            metadata_bytes_per_block=cf.sparse.metadata_bytes_per_block,
        ),
    )


def load_chip_type(spec: str | Path, *, relative_to: str | Path | None = None) -> ChipType:
    """Read a chip file (a built-in name such as ``gc200`` or a path) as a :class:`ChipType`."""
    path = paths.resolve(spec, "chip", relative_to)
    doc = load_document(path)
    check_kind(doc, "chip", required=True)
    cf = validate(doc, ChipFile)
    check_blocks(doc, ChipFile)
    return chip_type_from(cf, path.stem)


# ---- system files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemSource:
    """The files a system is built from, kept so that variants of it can be built.

    ``data``: the system file's data (an inline mapping completed with ``schema_version`` and
    ``kind``); ``where``: its document and key path, for errors; ``chip_doc``: the chip file;
    ``host``: a scenario's overrides of the ``host:`` section. :func:`build_source` builds the
    System, optionally with other system or chip data (:mod:`simulator.sensitivity` replaces
    one assumed value at a time).
    """

    data: Mapping[str, Any]
    where: Where
    name: str
    chip_doc: Document
    chip_name: str
    host: Mapping[str, Any] | None = None
    host_at: tuple[Document, KeyPath] | None = None


def system_source(
    spec: str | Path | Mapping[str, Any],
    *,
    origin: Document | None = None,
    at: KeyPath = (),
    relative_to: str | Path | None = None,
    host: Mapping[str, Any] | None = None,
    host_at: tuple[Document, KeyPath] | None = None,
) -> SystemSource:
    """Find and read the files of the system named by ``spec`` (see :func:`load_system`)."""
    if isinstance(spec, Mapping):
        data = {"schema_version": 1, "kind": "system", **spec}
        doc = origin if origin is not None else Document(data, INLINE_LABEL)
        where = Where(doc, at if origin is not None else ())
        default_name = "inline"
        base = Path(doc.file) if origin is not None and Path(doc.file).is_file() else None
    else:
        path = paths.resolve(spec, "system", relative_to)
        doc = load_document(path)
        data, where, default_name, base = doc.data, Where(doc), path.stem, path
        check_kind(doc, "system", required=True)
    _check_pattern(data, where)
    sf = validate(where.doc, SystemFile, at=where.at, data=data)
    check_blocks(where.doc, SystemFile, at=where.at, data=data)
    try:
        chip_path = paths.resolve(sf.chip, "chip", base)
        chip_doc = load_document(chip_path)
        check_kind(chip_doc, "chip", required=True)
        validate(chip_doc, ChipFile)
        check_blocks(chip_doc, ChipFile)
    except InputError as exc:
        raise _relocate(exc, where, "chip") from None
    name = sf.name or default_name
    return SystemSource(data, where, name, chip_doc, chip_path.stem, host, host_at)


def build_source(
    src: SystemSource,
    *,
    system_data: Mapping[str, Any] | None = None,
    chip_data: Mapping[str, Any] | None = None,
    chip: ChipType | None = None,
) -> System:
    """The System of ``src`` (or of ``src`` with its system or chip data replaced).

    ``chip``: the chip type when the caller already built it from the same chip data.
    """
    data = system_data if system_data is not None else src.data
    sf = validate(src.where.doc, SystemFile, at=src.where.at, data=data)
    if src.host:
        if sf.host is None:
            doc, key = src.host_at if src.host_at is not None else (src.where.doc, src.where.at)
            raise Where(doc, key).error(
                f"system '{src.name}' has no hosts to override (its file has no host: section)"
            )
        sf = sf.model_copy(update={"host": sf.host.model_copy(update=dict(src.host))})
    cf = validate(src.chip_doc, ChipFile, data=chip_data)
    if chip is None:
        chip = chip_type_from(cf, src.chip_name)
    chip_data = chip_data if chip_data is not None else src.chip_doc.data
    chip_blocks = records("chip", chip_data, cf.assumptions, cf.calibrated)
    system_blocks = records("system", data, sf.assumptions, sf.calibrated)
    blocks = (chip_blocks[0] + system_blocks[0], chip_blocks[1] + system_blocks[1])
    return build_system(sf, chip, name=src.name, where=src.where, blocks=blocks)


def load_system(
    spec: str | Path | Mapping[str, Any],
    *,
    origin: Document | None = None,
    at: KeyPath = (),
    relative_to: str | Path | None = None,
    host: Mapping[str, Any] | None = None,
    host_at: tuple[Document, KeyPath] | None = None,
) -> System:
    """The system named by ``spec``: a built-in name (``pod64``), a path, or an inline mapping.

    ``host``: keys that replace those of the system's ``host:`` section (a scenario's
    ``hosts:``), reported at ``host_at`` (document, key path) when the system has no hosts.

    ``origin``/``at``: for an inline mapping taken from another file (a scenario's
    ``topology:``), the document and key path it sits at, so errors name that file's lines;
    inline mappings may omit ``schema_version`` and ``kind``. ``relative_to``: the file a
    relative path was written in. Raises :class:`InputError` for any invalid input.
    """
    src = system_source(
        spec, origin=origin, at=at, relative_to=relative_to, host=host, host_at=host_at
    )
    return build_source(src)


def _relocate(exc: InputError, where: Where, *keys: str) -> InputError:
    """An error from the chip lookup, placed at the ``chip:`` key when it names no file."""
    if exc.location.file is not None:
        return exc
    path = (*where.at, *keys)
    file, line = where.doc.location(path)
    return exc.at(file=file, line=line, key_path=render_path(path))


def _check_pattern(data: Any, where: Where) -> None:
    """An unknown ``fabric.pattern`` is reported with a did-you-mean before schema checks."""
    fabric = data.get("fabric") if isinstance(data, Mapping) else None
    pattern = fabric.get("pattern") if isinstance(fabric, Mapping) else None
    if isinstance(pattern, str) and pattern not in PATTERNS:
        raise where.error(
            f"unknown pattern '{pattern}'{did_you_mean(pattern, PATTERNS)}; {one_of(PATTERNS)}",
            "fabric",
            "pattern",
        )


__all__ = [
    "SystemSource",
    "build_source",
    "chip_type_from",
    "load_chip_type",
    "load_system",
    "system_source",
]

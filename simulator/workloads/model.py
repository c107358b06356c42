"""A Model is an ordered tuple of layers with shapes propagated from the input.

:func:`build_model` expands a validated model file: it resolves ``params`` (defaults,
scenario overrides, ``${...}`` expressions), walks ``layers`` in order, expands ``repeat``,
``residual`` and user ``blocks`` into a flat list, and computes each layer's algebra
(:mod:`simulator.workloads.layers`). Anything wrong with the file — an unknown layer type, a
bad hyper-parameter, shapes that do not compose — is an :class:`~simulator.errors.InputError`
naming the file, line and key path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from simulator.config import limits
from simulator.config import workload as spec
from simulator.config.load import check_kind, render_path, validate
from simulator.config.yamlio import Document, render_value
from simulator.errors import InputError, did_you_mean, one_of
from simulator.workloads import layers as L
from simulator.workloads.expr import ExprError, Number, substitute

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Model:
    """A workload: ordered layers (per-sample figures) and its resolved parameters."""

    name: str
    dtype: str
    input_shape: tuple[int, ...]
    layers: tuple[L.Layer, ...]
    params_used: Mapping[str, Number] = field(default_factory=dict)
    file: str | None = None
    host_input_bytes: int = 0  # bytes the host sends per sample (0: the input in ``dtype``)

    @property
    def input_bytes_per_sample(self) -> int:
        """Bytes of input the host sends per sample."""
        return self.host_input_bytes or math.prod(self.input_shape) * L.DTYPE_BYTES[self.dtype]

    @property
    def params(self) -> int:
        """Trainable parameters (tied weights counted once)."""
        return sum(layer.params for layer in self.layers)

    @property
    def forward_flops(self) -> int:
        """Forward FLOPs per sample."""
        return sum(layer.forward_flops for layer in self.layers)

    @property
    def needs_input_grad(self) -> tuple[bool, ...]:
        """Per layer: does any earlier layer hold weights (so its input gradient is needed)?"""
        flags, seen = [], False
        for layer in self.layers:
            flags.append(seen)
            seen = seen or layer.params > 0
        return tuple(flags)

    @property
    def backward_input_flops(self) -> int:
        """Input-gradient FLOPs per sample, skipping layers with no weights before them."""
        return sum(
            layer.backward_input_flops
            for layer, need in zip(self.layers, self.needs_input_grad, strict=True)
            if need
        )

    @property
    def backward_weight_flops(self) -> int:
        """Weight-gradient FLOPs per sample."""
        return sum(layer.backward_weight_flops for layer in self.layers)

    @property
    def training_flops(self) -> int:
        """Forward plus backward FLOPs per sample."""
        return self.forward_flops + self.backward_input_flops + self.backward_weight_flops

    @property
    def activation_elems(self) -> int:
        """Elements stored for backward per sample without recomputation (input included)."""
        return math.prod(self.input_shape) + sum(x.activation_elems for x in self.layers)

    def groups(self) -> tuple[str, ...]:
        """Named groups (residual blocks, repeat copies) in order of first appearance."""
        return tuple(dict.fromkeys(layer.group for layer in self.layers))

    def layer(self, name: str) -> L.Layer:
        """The layer called ``name``."""
        for x in self.layers:
            if x.name == name:
                return x
        raise KeyError(name)


@dataclass
class _Walker:
    """Expands layer specs into Layers; keeps the file context for error messages."""

    doc: Document
    at: KeyPath  # where the model sits in the document (() for a model file)
    blocks: Mapping[str, spec.BlockSpec]
    model_env: Mapping[str, Number] = field(default_factory=dict)  # what block bodies see
    out: list[L.Layer] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)
    via: str = ""
    active: list[str] = field(default_factory=list)  # blocks being expanded, outermost first
    least: dict[str, int] = field(default_factory=dict)  # block -> least_layers of its body

    def error(self, message: str, path: KeyPath) -> InputError:
        file, line = self.doc.location(self.at + path)
        return InputError(
            message + self.via, file=file, line=line, key_path=render_path(self.at + path)
        )

    def validate(self, cls: type[BaseModel], args: Any, path: KeyPath, env: Mapping[str, Number]):
        """Substitute parameters into ``args`` and validate them with ``cls``."""
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise self.error(f"expected a mapping of hyper-parameters, got {args!r}", path)
        resolved = {}
        for key, value in args.items():
            if isinstance(value, list):  # nested layer lists are substituted when walked
                resolved[key] = value
                continue
            try:
                resolved[key] = substitute(value, env)
            except ExprError as exc:
                raise self.error(str(exc), (*path, key)) from None
        try:
            return validate(self.doc, cls, at=self.at + path, data=resolved)
        except InputError as exc:
            raise InputError(
                exc.detail + self.via,
                file=exc.location.file,
                line=exc.location.line,
                key_path=exc.location.key_path,
            ) from None

    def unique(self, name: str) -> str:
        n = self.names.get(name, 0)
        self.names[name] = n + 1
        return name if n == 0 else f"{name}_{n}"

    def walk(
        self,
        entries: list[Any],
        path: KeyPath,
        shape: tuple[int, ...],
        env: Mapping[str, Number],
        prefix: str,
        group: str,
    ) -> tuple[int, ...]:
        """Append the layers of ``entries`` to ``self.out``; return the output shape."""
        for i, entry in enumerate(entries):
            shape = self.entry(entry, (*path, i), shape, env, prefix, group)
        return shape

    def entry(
        self,
        entry: Any,
        path: KeyPath,
        shape: tuple[int, ...],
        env: Mapping[str, Number],
        prefix: str,
        group: str,
    ) -> tuple[int, ...]:
        args: Any
        if len(self.out) >= limits.MAX_LAYERS:
            raise self.error(
                f"the model expands to more than {limits.MAX_LAYERS:,} layers, over the limit "
                f"({limits.LIMITS_DOC})",
                path,
            )
        if isinstance(entry, str):
            kind, args = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            kind, args = next(iter(entry.items()))
        else:
            raise self.error(
                "a layer is a type name or a mapping with exactly one key (the type), "
                f"got {entry!r}",
                path,
            )
        here = (*path, kind)
        if kind in spec.LAYER_SPECS:
            s = self.validate(spec.LAYER_SPECS[kind], args, here, env)
            try:
                cost = L.BUILDERS[kind](s, shape)
            except L.ShapeError as exc:
                where = (*here, exc.key) if exc.key else here
                raise self.error(f"{exc} (input shape {list(shape)})", where) from None
            return self.add(kind, prefix, group, shape, cost, s)
        if kind == "residual":
            return self.residual(args, here, shape, env, prefix, group)
        if kind == "repeat":
            return self.repeat(args, here, shape, env, prefix)
        if kind == "choose":
            s = self.validate(spec.ChooseSpec, args, here, env)
            branch = "then" if s.when else "otherwise"
            return self.walk(getattr(s, branch), (*here, branch), shape, env, prefix, group)
        if kind in self.blocks:
            return self.block(kind, args, here, shape, env, prefix)
        known = [*spec.LAYER_SPECS, *spec.CONTAINER_SPECS, *self.blocks]
        raise self.error(
            f"unknown layer type '{kind}'{did_you_mean(str(kind), known)}; {one_of(known)}",
            path,
        )

    def add(
        self,
        kind: str,
        prefix: str,
        group: str,
        shape: tuple[int, ...],
        cost: L.Cost,
        layer_spec: BaseModel | None = None,
    ) -> tuple[int, ...]:
        self.out.append(
            L.Layer.from_cost(self.unique(prefix + kind), kind, group, shape, cost, layer_spec)
        )
        return cost.output_shape

    def residual(self, args, here, shape, env, prefix, group) -> tuple[int, ...]:
        s = self.validate(spec.ResidualSpec, args, here, env)
        if s.name:
            group = self.unique(prefix + s.name)
            prefix = group + "."
        body = self.walk(s.body, (*here, "body"), shape, env, prefix, group)
        short = self.walk(s.shortcut, (*here, "shortcut"), shape, env, prefix, group)
        if body != short:
            raise self.error(
                f"body output {list(body)} does not match shortcut output {list(short)} "
                f"(block input {list(shape)}); add a projection shortcut or fix the body",
                (*here, "shortcut" if s.shortcut else "body"),
            )
        self.add("add", prefix, group, body, L.add(body))
        return self.walk(s.post, (*here, "post"), body, env, prefix, group)

    def repeat(self, args, here, shape, env, prefix) -> tuple[int, ...]:
        s = self.validate(spec.RepeatSpec, args, here, env)
        per_copy = self.least_layers(s.body, {**env, "i": 0}, set(self.active))
        if len(self.out) + s.times * per_copy > limits.MAX_LAYERS:
            raise self.error(
                f"{s.times:,} copies of at least {per_copy:,} layer(s) would expand the model "
                f"past {limits.MAX_LAYERS:,} layers, the limit ({limits.LIMITS_DOC})",
                (*here, "times"),
            )
        base = self.unique(prefix + (s.name or "repeat"))
        for i in range(s.times):
            copy = f"{base}.{i}"
            shape = self.walk(s.body, (*here, "body"), shape, {**env, "i": i}, copy + ".", copy)
        return shape

    def least_layers(self, entries: Any, env: Mapping[str, Number], seen: set[str]) -> int:
        """A lower bound of the layers ``entries`` expand to, counted without expanding them
        (so a repeat that would pass the limit is refused before its first copy)."""
        if not isinstance(entries, list):
            return 1
        total = 0
        for entry in entries:
            kind: Any
            args: Any
            kind, args = (entry, {}) if isinstance(entry, str) else (None, None)
            if isinstance(entry, dict) and len(entry) == 1:
                kind, args = next(iter(entry.items()))
            args = args if isinstance(args, dict) else {}
            if kind == "residual":
                parts = [args.get(k) for k in ("body", "shortcut", "post")]
                total += 1 + sum(self.least_layers(p, env, seen) for p in parts if p)
            elif kind == "repeat":
                try:
                    times = substitute(args.get("times", 1), env)
                except ExprError:
                    times = 1
                times = times if isinstance(times, int) and times > 0 else 1
                total += times * self.least_layers(args.get("body"), env, seen)
            elif isinstance(kind, str) and kind in self.blocks and kind not in seen:
                total += self.block_layers(kind, seen)
            else:
                total += 1
            if total > limits.MAX_LAYERS:
                break  # enough to know
        return max(total, 1)

    def block_layers(self, kind: str, seen: set[str]) -> int:
        """:meth:`least_layers` of block ``kind``'s body, once per block (blocks using blocks
        four times over, twenty deep, would otherwise be counted 4**20 times)."""
        if kind not in self.least:
            self.least[kind] = self.least_layers(self.blocks[kind].layers, {}, seen | {kind})
        return self.least[kind]

    def block(self, kind, args, here, shape, env, prefix) -> tuple[int, ...]:
        block = self.blocks[kind]
        if kind in self.active:
            cycle = " -> ".join([*self.active[self.active.index(kind) :], kind])
            raise self.error(
                f"block '{kind}' contains itself ({cycle}); a block may use other blocks, "
                "but not itself, directly or through others",
                here,
            )
        least = self.block_layers(kind, set(self.active))
        if len(self.out) + least > limits.MAX_LAYERS:
            raise self.error(
                f"block '{kind}' expands to at least {least:,} layers, past the limit of "
                f"{limits.MAX_LAYERS:,} ({limits.LIMITS_DOC})",
                here,
            )
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise self.error(f"expected a mapping of block parameters, got {args!r}", here)
        for key in args:
            if key not in block.params:
                raise self.error(
                    f"unknown parameter '{key}' of block '{kind}'"
                    f"{did_you_mean(str(key), block.params)}; valid: {', '.join(block.params)}",
                    (*here, key),
                )
        local = {**self.model_env}  # lexical scope: model params and the block's own
        for key, default in block.params.items():
            raw = args.get(key, default)
            try:
                local[key] = substitute(raw, env if key in args else local)
            except ExprError as exc:
                raise self.error(str(exc), (*here, key) if key in args else here) from None
        group = self.unique(prefix + kind)
        file, line = self.doc.location(self.at + here)
        saved, self.via = self.via, f" (in block '{kind}' used at {file}:{line})"
        self.active.append(kind)
        try:
            return self.walk(
                block.layers, ("blocks", kind, "layers"), shape, local, group + ".", group
            )
        finally:
            self.active.pop()
            self.via = saved


#: Where each overridden parameter was written: name -> (file, line, key path), so an error
#: about an override names the scenario line or ``--set`` that made it, not the model file.
Origins = Mapping[str, tuple[str, int | None, str]]


def override_origins(doc: Document, at: KeyPath, params: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`Origins` of the overrides ``params`` found at key path ``at`` of ``doc`` (a
    scenario's ``model.params``; ``--set`` when that is where they came from)."""
    return {str(k): (*doc.location((*at, k)), render_path((*at, k))) for k in params}


def resolve_params(
    declared: Mapping[str, Any],
    overrides: Mapping[str, Number] | None,
    error: Callable[[str, KeyPath], InputError],
    origins: Origins | None = None,
) -> dict[str, Number]:
    """Parameters in declaration order: override or default, ``${...}`` over earlier ones."""
    overrides = dict(overrides or {})

    def fail(message: str, key: str) -> InputError:
        if origins and key in overrides and key in origins:
            file, line, key_path = origins[key]
            return InputError(message, file=file, line=line, key_path=key_path)
        return error(message, ("params", key))

    for key in overrides:
        if key not in declared:
            raise fail(
                f"model has no parameter '{key}'{did_you_mean(key, declared)}; "
                + (one_of(declared) if declared else "it declares none"),
                key,
            )
    env: dict[str, Number] = {}
    for key, default in declared.items():
        raw = overrides.get(key, default)
        try:
            value = substitute(raw, env)
        except ExprError as exc:
            raise fail(str(exc), key) from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(f"parameter must be a number, got {render_value(value)}", key)
        env[key] = value
    return env


def build_model(
    doc: Document,
    *,
    at: KeyPath = (),
    overrides: Mapping[str, Number] | None = None,
    origins: Origins | None = None,
) -> Model:
    """The :class:`Model` at key path ``at`` of ``doc``; ``overrides`` replace its ``params``.

    ``at`` is ``()`` for a model file and e.g. ``("model",)`` for a model written inline in a
    scenario; errors then name the scenario's file and lines. ``origins`` says where the
    overrides were written: an error about one names that place, and an error the model file
    reports while overrides are in force says which (``... (with depth=10 from --set)``).
    """
    try:
        return _build(doc, at, overrides, origins)
    except InputError as exc:
        if not overrides or exc.location.file in {o[0] for o in (origins or {}).values()}:
            raise
        shown = ", ".join(
            f"{k}={render_value(v)}"
            + (f" from {origins[k][0]}" if origins and k in origins else "")
            for k, v in overrides.items()
        )
        raise InputError(
            f"{exc.detail} (with the parameter override(s) {shown})",
            file=exc.location.file,
            line=exc.location.line,
            key_path=exc.location.key_path,
        ) from None


def _build(
    doc: Document, at: KeyPath, overrides: Mapping[str, Number] | None, origins: Origins | None
) -> Model:
    if not at:
        check_kind(doc, "model", required=True)
    header = validate(doc, spec.ModelFile, at=at)
    walker = _Walker(doc=doc, at=at, blocks=header.blocks)
    for name in header.blocks:
        if name in spec.LAYER_SPECS or name in spec.CONTAINER_SPECS:
            raise walker.error(
                f"block name '{name}' is a built-in layer type; rename it", ("blocks", name)
            )
    env = resolve_params(header.params, overrides, walker.error, origins)
    walker.model_env = env
    shape: list[int] = []
    for i, dim in enumerate(header.input):
        try:
            value = substitute(dim, env)
        except ExprError as exc:
            raise walker.error(str(exc), ("input", i)) from None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise walker.error(
                f"input sizes must be positive integers, got {value!r}", ("input", i)
            )
        shape.append(value)
    walker.walk(header.layers, ("layers",), tuple(shape), env, "", "")
    host_bytes = 0
    if header.host_input_bytes is not None:
        try:
            value = substitute(header.host_input_bytes, env)
        except ExprError as exc:
            raise walker.error(str(exc), ("host_input_bytes",)) from None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise walker.error(
                f"host_input_bytes must be a positive integer, got {value!r}",
                ("host_input_bytes",),
            )
        host_bytes = value
    file, _ = doc.location(at)
    return Model(
        name=header.name,
        dtype=header.dtype,
        input_shape=tuple(shape),
        layers=tuple(walker.out),
        params_used=env,
        file=file,
        host_input_bytes=host_bytes,
    )

"""Per-layer latency lookup tables: a subnet's latency is the sum of its layers' entries.

A `LookupTable` holds, per input resolution, one latency (ms) per layer key in OFA's grammar
(`predictors.latency.keys`). It is measured on a target with `LookupTable.build`, stored as
JSON, or imported from / exported to OFA's YAML files (``{R}_lookup_table.yaml``, one per
resolution, ``{key: {count, mean, std}}``; only ``mean`` is used)::

    lut = LookupTable.from_ofa_yaml(["224_lookup_table.yaml"])   # OFA's note10 table, w1.2 space
    lut.predict([space.min_arch(224)])                            # array([17.769056])

Entries are kept per resolution because OFA's files give the same key (e.g. the classifier)
a separately measured value at each resolution.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import yaml

from nas.space import IntMatrix, SearchSpace
from predictors.jsonfile import write_json
from predictors.latency.keys import arch_layers, block_layer, fixed_layers, table_layers
from predictors.latency.measure import Measurement, MeasureSettings, validate_latency
from predictors.latency.spaces import space_from_dict, space_to_dict
from predictors.latency.targets import Target

if TYPE_CHECKING:
    from collections.abc import Iterable

    from predictors.latency.devices import LatencyDevice

FloatArray = npt.NDArray[np.float64]
TABLE_FORMAT = 1
OFA_TABLE_SPACE = "ofa_mbv3_d234_e346_k357_w1.2"
"""OFA's published note10 tables are for the w1.2 supernet (spec §10)."""
_YAML_NAME = re.compile(r"(\d+)_lookup_table\.ya?ml")

ProgressFn = Callable[[int, int, str], None]
"""Called after each measured batch of layers with (done, total, key of the batch's last layer)."""
TABLE_CHUNK = 32
"""Layers measured per device batch while a table is built (their ONNX files are held in memory)."""


class LookupTable:
    """Latencies of the layers of a supernet preset's subnets on one target.

    Args:
        space: the space whose subnets the table prices.
        entries: {resolution: {layer key: ms}}.
        target: name of the target it was measured on (None: unknown, e.g. imported).
        stats: optional {resolution: {key: statistics}} kept with the entries (count, std, cv, ...).
        environment: where it was measured.

    Raises:
        ValueError: a latency that is not finite and positive, or a resolution outside the space.
    """

    def __init__(
        self,
        space: SearchSpace,
        entries: Mapping[int, Mapping[str, float]],
        *,
        target: str | None = None,
        stats: Mapping[int, Mapping[str, dict[str, Any]]] | None = None,
        environment: Mapping[str, Any] | None = None,
    ) -> None:
        self.space = space
        self.target = target
        self.environment = dict(environment or {})
        self.entries: dict[int, dict[str, float]] = {}
        for r, table in sorted(entries.items()):
            if int(r) not in space.resolutions:
                raise ValueError(f"resolution {r} is not in space {space.name}; allowed: {list(space.resolutions)}")
            self.entries[int(r)] = {k: validate_latency(v, f"entry {k!r} at resolution {r}") for k, v in table.items()}
        self.stats = {int(r): {k: dict(s) for k, s in table.items()} for r, table in (stats or {}).items()}
        self._arrays: dict[SearchSpace, tuple[FloatArray, FloatArray]] = {}

    @property
    def resolutions(self) -> list[int]:
        """The resolutions with entries, ascending."""
        return sorted(self.entries)

    def __len__(self) -> int:
        return sum(len(t) for t in self.entries.values())

    def __repr__(self) -> str:
        return (
            f"LookupTable(space={self.space.name!r}, target={self.target!r}, "
            f"resolutions={self.resolutions}, entries={len(self)})"
        )

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        space: SearchSpace,
        target: LatencyDevice | Target | str,
        resolutions: Sequence[int] | None = None,
        progress: ProgressFn | None = None,
        settings: MeasureSettings | None = None,
        *,
        label: str = "table",
    ) -> LookupTable:
        """Measure every distinct layer reachable in `space` at the resolutions, each in isolation.

        Each layer is built from the supernet's own ops, exported to ONNX and measured on the
        device, `TABLE_CHUNK` layers per batch; a layer shared by several resolutions is measured once.

        Args:
            space: the space (its kernel sizes and expand ratios decide which blocks are measured).
            target: the device to measure on (a target, or its registered name, is measured here).
            resolutions: subset of the space's resolutions (default: all).
            progress: called as layers are measured with (done, total, key of the last batch's layer).
            settings: measurement settings.
            label: names the batches on the device (``<label>/<first layer's index>``).

        Raises:
            ValueError: a resolution outside the space.
            DeviceMeasurementError: the device could not run some layers (the message names them).
        """
        from predictors.latency.devices import DeviceMeasurementError, as_device, model_name
        from predictors.latency.models import layer_onnx

        device = as_device(target)
        settings = settings or MeasureSettings()
        res = list(space.resolutions) if resolutions is None else sorted({int(r) for r in resolutions})
        bad = [r for r in res if r not in space.resolutions]
        if bad:
            raise ValueError(f"resolutions {bad} are not in space {space.name}; allowed: {list(space.resolutions)}")
        layers = table_layers(space.backbone, res, space.kernel_sizes, space.expand_ratios)
        order = list(layers)
        measured: dict[str, Measurement] = {}
        for start in range(0, len(order), TABLE_CHUNK):
            chunk = order[start : start + TABLE_CHUNK]
            try:
                values = device.measure([layer_onnx(layers[k]) for k in chunk], settings, label=f"{label}/{start}")
            except DeviceMeasurementError as error:  # name the layers, not their places in the batch
                failures = {f"layer {key}": error.failures[model_name(i)] for i, key in enumerate(chunk)
                            if model_name(i) in error.failures}  # fmt: skip
                raise DeviceMeasurementError(device.target.name, failures) from None
            measured.update(zip(chunk, values, strict=True))
            if progress is not None:
                progress(len(measured), len(order), chunk[-1])
        entries: dict[int, dict[str, float]] = {}
        stats: dict[int, dict[str, dict[str, Any]]] = {}
        for r in res:
            keys = table_layers(space.backbone, [r], space.kernel_sizes, space.expand_ratios)
            entries[r] = {k: measured[k].median_ms for k in keys}
            stats[r] = {k: _entry_stats(measured[k]) for k in keys}
        env = next(iter(measured.values())).environment if measured else {}
        return cls(space, entries, target=device.target.name, stats=stats, environment=env)

    # ------------------------------------------------------------------ prediction

    def additive_terms(self, space: SearchSpace) -> tuple[FloatArray, FloatArray]:
        """(fixed[r], block[r, slot, kernel, expand]) in ms for a space's choice indices; NaN where missing.

        A subnet's latency is its fixed term plus its active slots' terms
        (`nas.search.feasibility.AdditiveObjective`).
        """
        if space not in self._arrays:
            b = space.backbone
            nr, nk, ne = len(space.resolutions), len(space.kernel_sizes), len(space.expand_ratios)
            fixed = np.full(nr, np.nan)
            block = np.full((nr, space.n_blocks, nk, ne), np.nan)
            for ri, r in enumerate(space.resolutions):
                table = self.entries.get(r, {})
                fixed[ri] = sum(table.get(layer.key, np.nan) for layer in fixed_layers(b, r))
                for spec, sizes in zip(b.blocks, b.block_sizes(r), strict=True):
                    for ki, k in enumerate(space.kernel_sizes):
                        for ei, e in enumerate(space.expand_ratios):
                            block[ri, spec.index, ki, ei] = table.get(block_layer(spec, sizes, k, e).key, np.nan)
            self._arrays[space] = (fixed, block)
        return self._arrays[space]

    def predict_matrix(self, matrix: IntMatrix, space: SearchSpace | None = None) -> FloatArray:
        """Latency (ms) of every row of a choice-index matrix, vectorised.

        Args:
            matrix: rows from `space.to_matrix` / `sample_matrix` / ...
            space: the space the indices refer to (default: the table's); a restriction of the
                table's space works too.

        Raises:
            KeyError: a row needs an entry the table lacks; the message names the key.
        """
        space = self.space if space is None else space
        fixed, block = self.additive_terms(space)
        nb = space.n_blocks
        r = matrix[:, -1]
        per_block = block[r[:, None], np.arange(nb)[None, :], matrix[:, :nb], matrix[:, nb : 2 * nb]]
        total = fixed[r] + np.where(space.active_mask(matrix), per_block, 0.0).sum(axis=1)
        missing = np.flatnonzero(np.isnan(total))
        if missing.size:
            raise KeyError(self._missing_message(space.from_matrix(matrix[missing[:1]])[0], space))
        return total

    def predict(self, archs: Sequence[Mapping[str, Any]]) -> FloatArray:
        """Latency (ms) of each arch: the sum of its layers' entries.

        Raises:
            ValueError: an invalid arch (naming the field).
            KeyError: an arch needs an entry the table lacks; the message names the key.
        """
        return self.predict_matrix(self.space.to_matrix(archs))

    def _missing_message(self, arch: Mapping[str, Any], space: SearchSpace) -> str:
        r = int(arch["r"])
        table = self.entries.get(r, {})
        missing = [layer.key for layer in arch_layers(space, arch) if layer.key not in table]
        where = "" if table else f" (the table has no entries at {r}; it has {self.resolutions})"
        return f"lookup table has no entry {missing[0]!r} at resolution {r}{where}"

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see `from_dict`)."""
        return {
            "format": TABLE_FORMAT,
            "space": space_to_dict(self.space),
            "target": self.target,
            "environment": self.environment,
            "entries": {
                str(r): {k: {"ms": ms, **self.stats.get(r, {}).get(k, {})} for k, ms in table.items()}
                for r, table in self.entries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LookupTable:
        """Inverse of `to_dict`.

        Raises:
            ValueError: an unknown format or an invalid entry.
        """
        if data.get("format") != TABLE_FORMAT:
            raise ValueError(f"not a lookup table of format {TABLE_FORMAT}: format={data.get('format')!r}")
        entries = {int(r): {k: e["ms"] for k, e in t.items()} for r, t in data["entries"].items()}
        stats = {
            int(r): {k: {f: v for f, v in e.items() if f != "ms"} for k, e in t.items()}
            for r, t in data["entries"].items()
        }
        return cls(
            space_from_dict(data["space"]),
            entries,
            target=data.get("target"),
            stats=stats,
            environment=data.get("environment"),
        )

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON (its folder is created)."""
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: str | Path) -> LookupTable:
        """Read a table written by `save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ OFA's YAML

    @classmethod
    def from_ofa_yaml(cls, paths: Iterable[str | Path], space: SearchSpace | None = None) -> LookupTable:
        """Import OFA's per-resolution tables, ``{R}_lookup_table.yaml`` (only ``mean`` is used).

        Args:
            paths: one file per resolution; the resolution comes from the file name.
            space: the space the tables price (default: OFA's w1.2 preset, which note10's are for).

        Raises:
            ValueError: a file name without the resolution, or as `from_ofa_texts` (naming the file).
        """
        texts: dict[int, tuple[str, str]] = {}
        for raw in paths:
            path = Path(raw)
            found = _YAML_NAME.fullmatch(path.name)
            if found is None:
                raise ValueError(
                    f"{path}: OFA table files are named '{{R}}_lookup_table.yaml', e.g. 224_lookup_table.yaml"
                )
            texts[int(found.group(1))] = (str(path), path.read_text())
        return cls.from_ofa_texts(texts, space)

    @classmethod
    def from_ofa_texts(cls, texts: Mapping[int, tuple[str, str]], space: SearchSpace | None = None) -> LookupTable:
        """Import OFA's per-resolution tables from their YAML texts, parsed safely (`parse_ofa_yaml`).

        Args:
            texts: {resolution: (where the text comes from, for messages; the YAML text)}.
            space: the space the tables price (default: OFA's w1.2 preset, which note10's are for).

        Raises:
            ValueError: ``"<source>, line L, column C: <reason>"`` for text that is not a table
                within the limits (see `parse_ofa_yaml`), a key that is not a layer of the space at
                that resolution (e.g. a w1.2 table read for w1.0), a mean that is not finite and
                positive, a count or std that is not a count or a finite std; or a resolution
                outside the space.
        """
        from nas.spaces import get_space

        space = get_space(OFA_TABLE_SPACE) if space is None else space
        entries: dict[int, dict[str, float]] = {}
        stats: dict[int, dict[str, dict[str, Any]]] = {}
        for r, (source, text) in texts.items():
            if r not in space.resolutions:
                raise ValueError(
                    f"{source}: resolution {r} is not in space {space.name}; allowed: {list(space.resolutions)}"
                )
            allowed = table_layers(space.backbone, [r])
            entries[r], stats[r] = {}, {}
            for line, key, value in parse_ofa_yaml(text, source):
                where = f"{source}, line {line}"
                if not isinstance(key, str) or key not in allowed:
                    raise ValueError(f"{where}: key {key!r} is not a layer of space {space.name} at resolution {r}")
                if not isinstance(value, dict) or "mean" not in value:
                    raise ValueError(f"{where}: entry {key!r} must be a mapping with a 'mean' (ms)")
                entries[r][key] = validate_latency(value["mean"], f"{where}: mean of {key!r}")
                stats[r][key] = _ofa_stats(value, f"{where}: entry {key!r}")
        return cls(space, entries, stats=stats)

    def to_ofa_yaml(self, directory: str | Path) -> list[Path]:
        """Write one ``{R}_lookup_table.yaml`` per resolution in OFA's format; returns the paths."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for r, table in self.entries.items():
            data = {}
            for key, ms in table.items():
                s = self.stats.get(r, {}).get(key, {})
                data[key] = {"count": int(s.get("count", 1)), "mean": float(ms), "std": float(s.get("std", 0.0))}
            path = out / f"{r}_lookup_table.yaml"
            path.write_text(yaml.safe_dump(data, sort_keys=False))
            paths.append(path)
        return paths


def _entry_stats(m: Measurement) -> dict[str, Any]:
    return {"count": m.runs, "std": m.cv * m.mean_ms, "p90_ms": m.p90_ms, "cv": m.cv, "noisy": m.noisy}


MAX_YAML_CHARS = 1 << 20
"""The longest OFA table text accepted (a whole note10 table at one resolution is about 20 kB)."""
MAX_YAML_DEPTH = 8
"""The deepest nesting accepted (OFA's tables nest 2 deep: layer key -> {count, mean, std})."""
MAX_YAML_NODES = 100_000
"""The most nodes a table may expand to through its aliases (an alias bomb is refused while it is parsed)."""


class _BoundedLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader, refusing nesting deeper than `MAX_YAML_DEPTH` and expansion beyond `MAX_YAML_NODES`.

    Each node's size with its aliases expanded is known once it is composed; an alias adds the size
    of the node it names, so the limit holds before anything is constructed.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose the next node, within the limits (``yaml.MarkedYAMLError`` at the node otherwise)."""
        mark = self.peek_event().start_mark
        alias = self.check_event(yaml.AliasEvent)
        if self._depth >= MAX_YAML_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_YAML_DEPTH} levels", problem_mark=mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if alias:
            if id(node) not in self._sizes:
                raise yaml.MarkedYAMLError(problem="an alias inside the node it names (recursive)", problem_mark=mark)
            return node
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
        size = 1 + sum(self._sizes[id(n)] for n in children) if isinstance(children, list) else 1
        if size > MAX_YAML_NODES:
            raise yaml.MarkedYAMLError(
                problem=f"expands to more than {MAX_YAML_NODES} nodes through its aliases", problem_mark=mark
            )
        self._sizes[id(node)] = size
        return node


def parse_ofa_yaml(text: str, source: str) -> list[tuple[int, object, object]]:
    """The entries of an OFA table's YAML text, parsed safely within limits: (line, key, value) in order.

    Only YAML's standard tags are constructed (``!!python/...`` is refused); the text is at most
    `MAX_YAML_CHARS`, nests at most `MAX_YAML_DEPTH` deep and expands to at most `MAX_YAML_NODES`
    nodes through its aliases.

    Args:
        text: the YAML text of one table.
        source: where it comes from (a file, or the request field), to begin each message.

    Raises:
        ValueError: ``"<source>, line L, column C: <reason>"`` (only ``"<source>: <reason>"`` for
            the size) for text that is too long, not YAML, beyond a limit, or not one mapping.
    """
    if len(text) > MAX_YAML_CHARS:
        raise ValueError(f"{source}: {len(text)} characters, more than the {MAX_YAML_CHARS} a table may have")
    try:
        loader = _BoundedLoader(text)  # a str is checked for unprintable characters here
        root = loader.get_single_node()
        if not isinstance(root, yaml.MappingNode) or root.tag != "tag:yaml.org,2002:map":
            mark = root.start_mark if root is not None else loader.get_mark()
            raise yaml.MarkedYAMLError(
                problem="expected a mapping of layer keys to {count, mean, std}", problem_mark=mark
            )
        loader.flatten_mapping(root)
        return [
            (
                key.start_mark.line + 1,
                loader.construct_object(key, deep=True),
                loader.construct_object(value, deep=True),
            )
            for key, value in root.value
        ]
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else source
        reason = f"{error.context}: {error.problem}" if error.context else str(error.problem)
        raise ValueError(f"{where}: {reason}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        column = error.position - text.rfind("\n", 0, error.position)
        raise ValueError(
            f"{source}, line {line}, column {column}: character #x{error.character:04x} is not allowed in YAML"
        ) from None


def _ofa_stats(value: dict[Any, Any], what: str) -> dict[str, Any]:
    """The ``count`` and ``std`` of an OFA entry, checked to be a count and a finite std (`what` names it)."""
    count, std = value.get("count", 1), value.get("std", 0.0)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 2**31:
        raise ValueError(f"{what}: count must be a whole number of runs, got {count!r}"[:500])
    if isinstance(std, bool) or not isinstance(std, int | float) or not 0 <= std < float("inf"):
        raise ValueError(f"{what}: std must be a finite number of ms >= 0, got {std!r}"[:500])
    return {f: value[f] for f in ("count", "std") if f in value}

"""The collectives of a compiled (SPMD-partitioned) XLA program, read from its HLO text, with byte counts.

Why parse text: `Compiled.as_text()` is the one view of the per-device program that every backend gives,
and it is what XLA will run: which all-gathers / all-reduces / reduce-scatters / all-to-alls /
collective-permutes exist, on which device groups, moving how many bytes. A collective inside a
`while` body (a scanned layer stack, a microbatch loop) runs once per iteration; the multiplier comes
from the loop's `known_trip_count` (XLA annotates every counted loop), propagated down the call graph.
A loop without a known trip count (e.g. generation's early-stopping `while_loop`) counts once and is
marked `trip_count_known=False`.

Only the structure is parsed (computations, instruction result shapes, called computations, replica
groups); the grammar is XLA's HLO text format as printed by jaxlib 0.10.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

import numpy as np

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
DTYPE_BYTES = {"pred": 1, "s4": 1, "u4": 1, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3": 1,
               "f8e4m3fnuz": 1, "f8e5m2fnuz": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4,
               "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16}

_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_ARRAY = re.compile(r"\b([a-z][a-z0-9]*)\[([\d,]*)\]")
_CALLED = re.compile(r"\b(calls|body|condition|to_apply)=%?([\w.\-]+)")
_CALLED_LIST = re.compile(r"\b(branch_computations|called_computations)=\{([^}]*)\}")
_TRIP = re.compile(r'"known_trip_count":\{"n":"(\d+)"\}')


@dataclasses.dataclass
class Array:
    dtype: str
    dims: tuple[int, ...]

    @property
    def elements(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64)) if self.dims else 1

    @property
    def bytes(self) -> int:
        return self.elements * DTYPE_BYTES.get(self.dtype, 0)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(map(str, self.dims))}]"


@dataclasses.dataclass
class Collective:
    """One collective instruction of the per-device program."""

    kind: str  # one of COLLECTIVES
    name: str
    computation: str
    arrays: list[Array]  # the result (a tuple for combined collectives)
    groups: list[list[int]]  # device positions (in the mesh's device order) per replica group
    multiplier: int  # times it runs per program execution (loop trip counts)
    trip_count_known: bool

    @property
    def group_size(self) -> int:
        return max((len(g) for g in self.groups), default=1)

    @property
    def result_bytes(self) -> int:
        return sum(a.bytes for a in self.arrays)


def _split_shape(rest: str) -> tuple[str, str]:
    """'(f32[2]{0}, s32[]) all-reduce(...)' -> (shape text, 'all-reduce(...)')."""
    rest = rest.lstrip()
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[: i + 1], rest[i + 1:].lstrip()
    head, _, tail = rest.partition(" ")
    return head, tail


def parse_arrays(shape_text: str) -> list[Array]:
    return [Array(m.group(1), tuple(int(d) for d in m.group(2).split(",") if d))
            for m in _ARRAY.finditer(shape_text) if m.group(1) in DTYPE_BYTES]


def _iota(dims: list[int], reshape: list[int], perm: list[int] | None) -> np.ndarray:
    ids = np.arange(int(np.prod(reshape))).reshape(reshape)
    if perm:
        ids = ids.transpose(perm)
    return ids.reshape(dims)


def parse_replica_groups(attrs: str, num_devices: int) -> list[list[int]]:
    """Replica groups in any of the three printed forms; no attribute (or `{}`) = all devices."""
    m = re.search(r"replica_groups=\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", attrs)
    if m:
        dims = [int(x) for x in m.group(1).split(",")]
        perm = [int(x) for x in m.group(3).split(",")] if m.group(3) else None
        ids = _iota(dims, [int(x) for x in m.group(2).split(",")], perm)
        return ids.reshape(-1, dims[-1]).tolist() if len(dims) > 1 else [ids.tolist()]
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*(?:,\s*device_ids=\(\[([\d,]+)\](?:T\(([\d,]+)\))?\))?\s*"
                  r"\{([^}]*)\}", attrs)
    if m:
        axes = re.findall(r"'([^']+)'=(\d+)", m.group(1))
        names, sizes = [a for a, _ in axes], [int(s) for _, s in axes]
        total = int(np.prod(sizes))
        if m.group(2):
            perm = [int(x) for x in m.group(3).split(",")] if m.group(3) else None
            ids = _iota([total], [int(x) for x in m.group(2).split(",")], perm).reshape(sizes)
        else:
            ids = np.arange(total).reshape(sizes)
        grouped = [names.index(a) for a in re.findall(r"'([^']+)'", m.group(4))]
        rest = [i for i in range(len(names)) if i not in grouped]
        ids = ids.transpose(rest + grouped)
        return ids.reshape(-1, int(np.prod([sizes[i] for i in grouped])) if grouped else 1).tolist()
    m = re.search(r"replica_groups=\{((?:\{[\d,]*\},?)*)\}", attrs)
    if m and m.group(1):
        return [[int(x) for x in g.split(",") if x] for g in re.findall(r"\{([\d,]*)\}", m.group(1))]
    m = re.search(r"source_target_pairs=\{((?:\{\d+,\d+\},?)*)\}", attrs)
    if m:
        return [[int(a), int(b)] for a, b in re.findall(r"\{(\d+),(\d+)\}", m.group(1))]
    return [list(range(num_devices))]


@dataclasses.dataclass
class HloSummary:
    collectives: list[Collective]
    arrays: list[tuple[Array, int]]  # largest distinct materialised array shapes (not inside fusions), with counts
    unknown_trip_loops: int
    custom_calls: dict[str, int] = dataclasses.field(default_factory=dict)  # target -> count (e.g. tpu_custom_call)


def _counted_loop_bound(condition: list[tuple[str, str, str]]) -> int | None:
    """N for a loop condition `compare(counter, constant(N)), direction=LT` (a scan as the TPU compiler prints
    it, without `known_trip_count`); None for anything else (e.g. a data-dependent stop)."""
    constants = {}
    for name, shape, rest in condition:
        m = re.match(r"constant\((-?\d+)\)", rest)
        if m and re.match(r"[su](32|64)\[\]", shape):
            constants[name] = int(m.group(1))
    for name, shape, rest in condition:
        if rest.startswith("compare(") and "direction=LT" in rest:
            operands = re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0])
            bounds = [constants[o] for o in operands[1:] if o in constants]
            if bounds:
                return bounds[0]
    return None


def analyse_hlo(text: str, num_devices: int, top_arrays: int = 10) -> HloSummary:
    """Collectives (with loop multipliers) and the largest materialised arrays of a compiled module."""
    computations, order, entry = _parse_computations(text)
    edges, fused, unknown = _call_edges(computations)
    mult, known_trip = _multipliers(order, entry, edges)
    collectives, sizes, counts, custom = [], {}, defaultdict(int), defaultdict(int)
    for comp, instrs in computations.items():
        for name, shape, rest in instrs:
            opcode = rest.split("(", 1)[0]
            base = opcode[: -len("-start")] if opcode.endswith("-start") else opcode
            arrays = parse_arrays(shape)
            if opcode == "custom-call":
                target = re.search(r'custom_call_target="([^"]+)"', rest)
                custom[target.group(1) if target else "?"] += 1
            if base in COLLECTIVES and not opcode.endswith("-done"):
                if opcode.endswith("-start") and len(arrays) > 1:  # async: (operands..., results..., [u32 context])
                    data = [a for a in arrays if a.dims] or arrays
                    half = max(len(data) // 2, 1)
                    arrays = data[-half:] if base == "all-gather" else data[:half]  # permute: operand = result
                collectives.append(Collective(base, name, comp, arrays, parse_replica_groups(rest, num_devices),
                                              max(mult[comp], 1), known_trip[comp]))
            if comp not in fused and opcode not in ("parameter", "get-tuple-element", "tuple", "bitcast") and arrays:
                for a in arrays:
                    key = str(a)
                    sizes[key] = a
                    counts[key] += 1
    biggest = sorted(sizes.values(), key=lambda a: -a.bytes)[:top_arrays]
    return HloSummary(collectives, [(a, counts[str(a)]) for a in biggest], unknown, dict(custom))


def _parse_computations(text: str) -> tuple[dict[str, list[tuple[str, str, str]]], list[str], str | None]:
    """{computation: [(instruction, shape, op + attributes)]}, the computations in print order, the ENTRY one."""
    computations: dict[str, list[tuple[str, str, str]]] = {}
    order, entry, current = [], None, None
    for line in text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current = m.group(2)
            computations[current], entry = [], (current if m.group(1) else entry)
            order.append(current)
            continue
        if current is None or line.strip() in ("", "}"):
            continue
        m = _INSTRUCTION.match(line)
        if m:
            shape, rest = _split_shape(m.group(2))
            computations[current].append((m.group(1), shape, rest))
    return computations, order, entry


def _call_edges(computations) -> tuple[dict[str, list[tuple[str, int, bool]]], set[str], int]:
    """Caller -> [(callee, times per call, trip count known)], the fused computations (not materialised), and
    how many while loops have no known trip count."""
    edges: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    fused, unknown = set(), 0
    for comp, instrs in computations.items():
        for _, _, rest in instrs:
            opcode = rest.split("(", 1)[0]
            trip = _TRIP.search(rest)
            count = int(trip.group(1)) if trip else None
            if opcode == "while" and count is None:
                cond = re.search(r"\bcondition=%?([\w.\-]+)", rest)
                count = _counted_loop_bound(computations.get(cond.group(1), [])) if cond else None
            for kind, callee in _CALLED.findall(rest):
                if opcode == "fusion" or kind == "to_apply":
                    fused.add(callee)
                factor, known = 1, True
                if opcode == "while" and kind in ("body", "condition"):
                    factor, known = (count, True) if count is not None else (1, False)
                edges[comp].append((callee, factor, known))
            for _, names in _CALLED_LIST.findall(rest):
                for callee in re.findall(r"%?([\w.\-]+)", names):
                    edges[comp].append((callee, 1, True))
            if opcode == "while" and count is None:
                unknown += 1
    return edges, fused, unknown


def _multipliers(order: list[str], entry: str | None, edges) -> tuple[dict[str, int], dict[str, bool]]:
    """How many times each computation runs per execution of the entry, and whether every loop on the way has a
    known trip count."""
    mult: dict[str, int] = defaultdict(int)
    known_trip: dict[str, bool] = defaultdict(lambda: True)
    mult[entry or (order[-1] if order else "")] = 1
    for comp in reversed(order):  # callers are printed after their callees
        for callee, factor, known in edges.get(comp, ()):
            mult[callee] += mult[comp] * factor
            known_trip[callee] = known_trip[callee] and known_trip[comp] and known
    return mult, known_trip

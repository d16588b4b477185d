"""DARTS-space genotypes: the record, its JSON/text forms, validation, and the published library.

A genotype is the *result* of a search and the *input* of evaluation, so it
crosses process and tool boundaries (search logs, JSON files, the reference
code's printed text).  Everything that reads one validates it here, once, and
reports problems as a one-line :class:`ConfigError` rather than as a shape
error deep inside network construction.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from nas_cli.errors import ConfigError
from nas_cli.spaces.darts_ops import OPS

_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
_LIBRARY_FILE = Path(__file__).with_name("published_genotypes.json")

#: Op names a genotype may use: every buildable op except ``none`` (derivation never selects it,
#: so its presence signals a hand-edited or foreign genotype).
GENOTYPE_OPS: frozenset[str] = frozenset(name for name in OPS if name != "none")

Pairs = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Genotype:
    """Discrete DARTS cell pair.  Pairs ``2i`` and ``2i+1`` feed intermediate node ``i``.

    Fields are coerced to tuples so genotypes built from lists/ranges compare
    equal and are hashable (used as dictionary keys when de-duplicating runs).
    Construction does not validate; call :meth:`validate` (done by every loader).
    """

    normal: Pairs
    normal_concat: tuple[int, ...]
    reduce: Pairs
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("normal", "reduce"):
            object.__setattr__(self, name, tuple((str(op), int(j)) for op, j in getattr(self, name)))
        for name in ("normal_concat", "reduce_concat"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    # ------------------------------------------------------------------ forms
    def to_json(self) -> dict[str, Any]:
        """JSON form used in ``genotypes.json``: pairs as 2-element lists, concat as explicit lists."""
        return {
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], nodes: int | None = 4) -> "Genotype":
        """Inverse of :meth:`to_json`; validates (``nodes=None`` infers the node count)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"genotype must be a JSON object with keys {', '.join(_FIELDS)}")
        missing = [k for k in _FIELDS if k not in data]
        if missing:
            raise ConfigError(f"genotype is missing key(s): {', '.join(missing)}")
        try:
            geno = cls(
                normal=_pairs(data["normal"], "normal"),
                normal_concat=_ints(data["normal_concat"], "normal_concat"),
                reduce=_pairs(data["reduce"], "reduce"),
                reduce_concat=_ints(data["reduce_concat"], "reduce_concat"),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"malformed genotype: {exc}") from None
        geno.validate(nodes)
        return geno

    def to_text(self) -> str:
        """The reference code's printed form (parseable by :func:`parse_genotype_text`)."""
        return (
            f"Genotype(normal={list(self.normal)!r}, normal_concat={list(self.normal_concat)!r}, "
            f"reduce={list(self.reduce)!r}, reduce_concat={list(self.reduce_concat)!r})"
        )

    # ------------------------------------------------------------- validation
    def validate(self, nodes: int | None = 4) -> "Genotype":
        """Raise ConfigError unless the genotype describes a buildable cell pair.

        ``nodes`` = number of intermediate nodes (4 in the DARTS space); ``None``
        infers it from the pair count, for foreign genotypes such as NASNet's 5-node cells.
        """
        for cell, pairs, concat in (
            ("normal", self.normal, self.normal_concat),
            ("reduce", self.reduce, self.reduce_concat),
        ):
            n = nodes if nodes is not None else len(pairs) // 2
            if n < 1 or len(pairs) != 2 * n:
                raise ConfigError(f"genotype {cell} cell needs {2 * max(n, 1)} (op, input) pairs, got {len(pairs)}")
            for k, (op, j) in enumerate(pairs):
                if op not in GENOTYPE_OPS:
                    raise ConfigError(
                        f"genotype {cell} pair {k}: unknown op '{op}'; choose one of: {', '.join(sorted(GENOTYPE_OPS))}"
                    )
                node = k // 2
                if not 0 <= j < node + 2:
                    raise ConfigError(
                        f"genotype {cell} pair {k} (node {node}): input index {j} out of range 0..{node + 1}"
                    )
            if not concat:
                raise ConfigError(f"genotype {cell}_concat is empty")
            bad = [i for i in concat if not 0 <= i < n + 2]
            if bad:
                raise ConfigError(f"genotype {cell}_concat has state index {bad[0]} out of range 0..{n + 1}")
        return self


def _pairs(value: Any, field: str) -> list[tuple[str, int]]:
    """Coerce a JSON/AST list of pairs, rejecting anything that is not [str, int]."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{field} must be a list of [op, input] pairs")
    out = []
    for item in value:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or not isinstance(item[0], str)
            or isinstance(item[1], bool)
            or not isinstance(item[1], int)
        ):
            raise ValueError(f"{field} entry {item!r} is not an [op_name, input_index] pair")
        out.append((item[0], item[1]))
    return out


def _ints(value: Any, field: str) -> list[int]:
    if isinstance(value, range):
        return list(value)
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{field} must be a list of integers")
    return list(value)


# ----------------------------------------------------------------- text form
def _literal(node: ast.expr, field: str) -> Any:
    """Literal value of an AST node; ``range(a[, b[, c]])`` with int literals is also allowed."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        if node.keywords or not 1 <= len(node.args) <= 3:
            raise ConfigError(f"genotype text: {field} has an unsupported range(...) call")
        args = [_literal(a, field) for a in node.args]
        if not all(isinstance(a, int) for a in args):
            raise ConfigError(f"genotype text: {field} range(...) arguments must be integers")
        return range(*args)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ConfigError(f"genotype text: {field} is not a literal value") from None


def parse_genotype_text(text: str, nodes: int | None = 4) -> Genotype:
    """Parse the reference code's ``Genotype(normal=[...], normal_concat=range(2, 6), ...)`` text.

    Uses :mod:`ast` (never ``eval``) so a pasted log line cannot execute code.
    Accepts keyword or positional fields, ``range(...)`` or list concats, and an
    optional qualifier on the call name (``genotypes.Genotype(...)``).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ConfigError("genotype text is not of the form Genotype(normal=[...], ...)") from None
    call = tree.body
    func = call.func if isinstance(call, ast.Call) else None
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if not isinstance(call, ast.Call) or name != "Genotype":
        raise ConfigError("genotype text is not of the form Genotype(normal=[...], ...)")
    if len(call.args) > len(_FIELDS):
        raise ConfigError(f"genotype text has {len(call.args)} positional fields, expected at most 4")
    values: dict[str, Any] = {}
    for field, node in zip(_FIELDS, call.args):
        values[field] = _literal(node, field)
    for kw in call.keywords:
        if kw.arg not in _FIELDS:
            raise ConfigError(f"genotype text: unknown field '{kw.arg}'")
        if kw.arg in values:
            raise ConfigError(f"genotype text: field '{kw.arg}' given twice")
        values[kw.arg] = _literal(kw.value, kw.arg)
    return Genotype.from_json(values, nodes=nodes)


# ------------------------------------------------------------------ library
def _norm(name: str) -> str:
    """Lookup key: case-insensitive and blind to '-', '_' and spaces (``pc-darts`` == ``PCDARTS``)."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


@lru_cache(maxsize=1)
def _library() -> dict[str, Any]:
    with _LIBRARY_FILE.open(encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=1)
def _lookup() -> dict[str, str]:
    """Normalised name/alias -> canonical name; fails loudly if two names collide after normalising."""
    lib = _library()
    table: dict[str, str] = {}
    entries = [(n, n) for n in lib["genotypes"]] + list(lib.get("aliases", {}).items())
    for name, target in entries:
        key = _norm(name)
        if key in table and table[key] != target:
            raise RuntimeError(f"published genotype names '{name}' and '{table[key]}' collide")
        table[key] = target
    return table


def list_genotypes() -> list[str]:
    """Canonical names of the published genotypes, in library order."""
    return list(_library()["genotypes"])


def genotype_aliases() -> dict[str, str]:
    """Alias -> canonical name."""
    return dict(_library().get("aliases", {}))


def published_param_counts(setting: str) -> dict[str, int]:
    """Reference eval-net parameter counts, e.g. ``setting="cifar10_C36_L20"`` or ``"imagenet_C48_L14"``."""
    return dict(_library()["param_counts"][setting])


def _load_file(path: Path, nodes: int | None) -> Genotype:
    """A JSON genotype (optionally wrapped as ``{"genotype": {...}}``) or a file holding the text form."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read genotype file {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        if text.lstrip().startswith(("Genotype(", "genotypes.Genotype(")):
            return parse_genotype_text(text, nodes=nodes)
        raise ConfigError(f"genotype file {path} is neither JSON nor Genotype(...) text") from None
    if isinstance(data, Mapping) and "genotype" in data and "normal" not in data:
        data = data["genotype"]
    return Genotype.from_json(data, nodes=nodes)


def get_genotype(name_or_path: str | Path, nodes: int | None = 4) -> Genotype:
    """Published genotype by name/alias (case-insensitive), or a genotype file path.

    A string naming an existing file, or ending in ``.json``/``.txt``, is treated
    as a path; anything else must be a published name.
    """
    text = str(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or path.is_file() or path.suffix.lower() in (".json", ".txt"):
        if not path.is_file():
            raise ConfigError(f"genotype file not found: {path}")
        return _load_file(path, nodes)
    canonical = _lookup().get(_norm(text))
    if canonical is None:
        names = list_genotypes() + sorted(genotype_aliases())
        raise ConfigError(f"unknown genotype '{text}'; choose a file path or one of: {', '.join(names)}")
    return Genotype.from_json(_library()["genotypes"][canonical], nodes=nodes)


def iter_published() -> Iterable[tuple[str, Genotype]]:
    """(name, genotype) for every published genotype."""
    for name in list_genotypes():
        yield name, get_genotype(name)

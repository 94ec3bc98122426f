"""The generator's documents (``generator.documents``) and the page's reading of them
(``web/src/lib/types.ts``) have the same fields, nullable alike and of the same kind: a field
added on one side only fails here, not in a browser."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest

from generator import documents

TYPES_TS = Path(__file__).resolve().parents[2] / "web" / "src" / "lib" / "types.ts"

#: TypeScript interface -> the document the generator sends for it.
PAIRS = {
    "TestConfig": documents.TestConfigDocument,
    "Verdict": documents.VerdictDocument,
    "Latency": documents.LatencyDocument,
    "RedisProblem": documents.RedisProblemDocument,
    "DeadLetter": documents.DeadLetterDocument,
    "RateSample": documents.RateSampleDocument,
    "HistorySample": documents.HistorySampleDocument,
    "Status": documents.StatusDocument,
}


def interfaces(source: str) -> dict[str, dict[str, tuple[str, bool]]]:
    """Each ``export interface`` of ``source``: field -> (type, optional), inherited fields
    included."""
    found: dict[str, dict[str, tuple[str, bool]]] = {}
    pattern = r"export interface (\w+)(?: extends (\w+))? \{(.*?)\n\}"
    for name, base, body in re.findall(pattern, source, re.S):
        fields = dict(found[base]) if base else {}
        for line in body.splitlines():
            line = re.sub(r"/\*\*.*?\*/", "", line).strip()
            if match := re.fullmatch(r"(\w+)(\??): (.+)", line):
                fields[match[1]] = (match[3], match[2] == "?")
        found[name] = fields
    return found


def ts_kind(ts_type: str) -> tuple[str, bool]:
    """The kind of a TypeScript type (as ``py_kind`` names it) and whether it admits null."""
    parts = [part.strip() for part in ts_type.split("|")]
    nullable = "null" in parts
    parts = [part for part in parts if part != "null"]
    assert len(parts) == 1, ts_type
    (part,) = parts
    if part.endswith("[]"):
        return "list", nullable
    if part.startswith("Record<"):
        return "dict", nullable
    simple = {"number": "number", "string": "string", "boolean": "boolean", "TestState": "string"}
    return simple.get(part, part), nullable


def py_kind(annotation: Any) -> tuple[str, bool]:
    """The kind of a document field's annotation, in TypeScript's terms, and whether it is
    nullable; a nested document is named by its interface."""
    nullable = False
    if isinstance(annotation, types.UnionType):
        args = [a for a in annotation.__args__ if a is not type(None)]
        nullable = len(args) < len(annotation.__args__)
        (annotation,) = args
    origin = typing.get_origin(annotation)
    if origin is list:
        return "list", nullable
    if origin is dict:
        return "dict", nullable
    simple = {int: "number", float: "number", str: "string", bool: "boolean"}
    if annotation in simple:
        return simple[annotation], nullable
    interface = {document: name for name, document in PAIRS.items()}[annotation]
    return interface, nullable


@pytest.mark.parametrize("interface", PAIRS)
def test_the_page_reads_each_field_the_generator_sends(interface: str) -> None:
    ts_fields = interfaces(TYPES_TS.read_text())[interface]
    hints = typing.get_type_hints(PAIRS[interface])
    assert set(ts_fields) == set(hints), (
        f"{interface}: only in types.ts {sorted(set(ts_fields) - set(hints))}, "
        f"only in the generator's document {sorted(set(hints) - set(ts_fields))}"
    )
    for field, (ts_type, _optional) in ts_fields.items():
        kind, nullable = py_kind(hints[field])
        ts = ts_kind(ts_type)
        # A document the generator sends may be read as its base (a history sample as the
        # rate sample it extends).
        if ts[0] == "RateSample" and kind == "HistorySample":
            kind = "RateSample"
        assert (kind, nullable) == ts, f"{interface}.{field}: {hints[field]} vs {ts_type}"


def test_the_reader_of_types_ts_reads_fields_and_inheritance() -> None:
    source = (
        "export interface A {\n  x: number\n  /** doc */\n  y?: string | null\n}\n"
        "export interface B extends A {\n  z: A[]\n}\n"
    )
    assert interfaces(source) == {
        "A": {"x": ("number", False), "y": ("string | null", True)},
        "B": {"x": ("number", False), "y": ("string | null", True), "z": ("A[]", False)},
    }

"""How a config value type reads, torch-free: the docs' words for it (``int >= 1``, ``none | light``) and
the phrase an error uses ("expected an integer >= 1"), derived from the pydantic annotations and bounds; and
pydantic's first error as one line naming the key path and the ``--set`` that wrote it."""
from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from ..core.errors import KagglePlanetError


@dataclass(frozen=True)
class Doc:
    """How a value type reads in the docs (``values``) and in errors ("expected <expected>").

    ``values`` may be a callable for choices that come from a table imported on use. ``expected``
    None: the type's errors already say what is valid (nested keys), pass them on unchanged.
    """

    values: str | Callable[[], str]
    expected: str | None


def _bound(metadata: Sequence[Any], kind: type) -> float | None:
    """The value of the first ``annotated_types`` bound of ``kind`` (Ge, Gt, Le, Lt) in ``metadata``."""
    for item in metadata:
        if isinstance(item, kind):
            return getattr(item, kind.__name__.lower())
    return None


def _span(metadata: Sequence[Any]) -> str:
    """``in (0.0, 1.0]``-style interval of a number's bounds."""
    ge, gt, le, lt = (_bound(metadata, k) for k in (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt))
    left = f"({float(gt)}" if gt is not None else f"[{float(ge)}" if ge is not None else "(-inf"
    right = f"{float(lt)})" if lt is not None else f"{float(le)}]" if le is not None else "inf)"  # inf itself is refused
    return f"in {left}, {right}"


def _alternatives(annotation: Any, metadata: Sequence[Any]) -> list[tuple[str, str | None, bool]] | None:
    """(docs word, error phrase, is a literal choice) per alternative of a type; None: not a plain value.

    An error phrase None: the type's own errors say what is valid (nested keys).
    """
    docs = [m for m in metadata if isinstance(m, Doc)]
    if docs:  # the outermost Doc wins (Annotated flattens: Optimizer's comes after Text's)
        values = docs[-1].values() if callable(docs[-1].values) else docs[-1].values
        return [(values, docs[-1].expected, False)]
    if get_origin(annotation) in (Union, types.UnionType):
        out: list[tuple[str, str | None, bool]] = []
        for member in get_args(annotation):
            alts = _alternatives(member, metadata)
            if alts is None:
                return None
            out += alts
        return out
    if get_origin(annotation) is Annotated:
        inner, *extra = get_args(annotation)
        return _alternatives(inner, [*metadata, *extra])
    if get_origin(annotation) is Literal:
        return [(str(v), str(v), True) for v in get_args(annotation)]
    if annotation is type(None):
        return [("none", "none", False)]
    if annotation is bool:
        return [("true", "true", False), ("false", "false", False)]
    if annotation is int:
        lo, hi = _bound(metadata, annotated_types.Ge), _bound(metadata, annotated_types.Le)
        if lo is not None and hi is not None:
            return [(f"int in [{lo}, {hi}]", f"an integer in [{lo}, {hi}]", False)]
        return [(f"int >= {lo}", f"an integer >= {lo}", False)] if lo is not None else [("int", "an integer", False)]
    if annotation is float:
        span = _span(metadata)
        return [(f"number {span}", f"a number {span}", False)]
    return None


def expected_phrase(field: FieldInfo) -> str | None:
    """What a field allows, for errors: "an integer >= 1", "one of none, light, heavy, d4", ...; None: nested keys."""
    alts = _alternatives(field.annotation, field.metadata)
    if not alts or any(phrase is None for _, phrase, _ in alts):
        return None
    phrases = [phrase for _, phrase, _ in alts]
    if all(choice for _, _, choice in alts):
        return f"one of {', '.join(phrases)}"
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} or {phrases[-1]}"


def readme_values(field: FieldInfo) -> str:
    """What a field allows, for the docs' key table: "int >= 1", "none | light | heavy | d4", ..."""
    return " | ".join(word for word, _, _ in _alternatives(field.annotation, field.metadata) or [])


def _keypath(loc: tuple[str | int, ...]) -> str:
    """Pydantic's location -> the key path in the file (training keys sit flat in it)."""
    parts = list(loc)
    if parts[:1] == ["train"] and len(parts) > 1:
        del parts[0]
    if parts[:1] == ["models"] and parts[2:3] == ["overrides"] and len(parts) > 3:
        del parts[2]
    return ".".join(str(p) for p in parts)


def problem_text(error: dict[str, Any]) -> str:
    if error["type"] == "missing":
        return "missing required key"
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    if error["type"] == "config":
        return error["msg"]
    return f"{error['msg']}, got {error['input']!r}"


def config_error(exc: ValidationError, source: str, overridden: dict[str, str]) -> KagglePlanetError:
    """The first of pydantic's errors as one line: ``<source>: <key path>: <problem>[ (from --set ...)]``."""
    error = exc.errors(include_url=False)[0]
    keypath = _keypath(error["loc"])
    # the --set that wrote this key, or a mapping above it
    origins = [text for path, text in overridden.items() if keypath == path or keypath.startswith(path + ".")]
    origin = f" (from --set {origins[-1]})" if origins else ""
    where = f"{keypath}: " if keypath else ""
    return KagglePlanetError(f"{source}: {where}{problem_text(error)}{origin}".replace("\n", " "))

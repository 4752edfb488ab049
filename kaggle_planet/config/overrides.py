"""Reading a config file's text and ``--set`` overrides: UTF-8 only (other encodings named), YAML with every
key once per mapping and aliases that expand to at most ``MAX_ALIAS_NODES`` nodes, ``KEY.SUB=VALUE`` parsed
as YAML and written into the raw mapping."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..core.errors import KagglePlanetError


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"models.0.epochs=2"`` -> (["models", "0", "epochs"], 2); the value is parsed as YAML."""
    name, sep, raw = text.partition("=")
    parts = name.strip().split(".")
    if not sep or not all(parts):
        raise KagglePlanetError(f"--set {text!r}: expected KEY=VALUE, e.g. models.0.epochs=2 or folds.k=5")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else None  # a SafeLoader subclass
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str], value: Any, text: str, source: str = "config") -> None:
    node: Any = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KagglePlanetError(f"{source}: --set {text}: {where}: no list entry {part!r} (the list has {len(node)} entries, 0..{len(node) - 1})")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
        else:
            raise KagglePlanetError(f"{source}: --set {text}: {'.'.join(parts[:depth])} is not a mapping or list")
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and index not in node:
                node[index] = {}
            node = node[index]


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class AliasExpansionError(DuplicateKeyError):
    """Aliases expand the document past ``MAX_ALIAS_NODES`` nodes, or an alias refers to a value that holds it.

    A :class:`DuplicateKeyError` so that the config reader prints its problem as worded (not as invalid YAML).
    """


#: The most nodes a value may hold once its aliases are expanded (a config has a few hundred). PyYAML shares
#: an aliased value instead of copying it, so a 400-byte file of nested anchors ("billion laughs") loads
#: fast and then costs 9^9 steps to every walk over it: validating, copying, printing it in an error.
MAX_ALIAS_NODES = 100_000


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently),
    aliases that expand a value past ``MAX_ALIAS_NODES`` nodes and aliases to a value that contains them.

    Keys brought in by a merge (``<<: *defaults``) may be overridden: that is what merges are for.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._expanded: dict[int, int] = {}  # id(node) -> nodes it holds with its aliases expanded, once composed
        self._aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        is_alias = self.check_event(yaml.AliasEvent)
        if is_alias:
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._expanded:  # anchored, not yet complete: an ancestor
                raise AliasExpansionError(None, None, f"alias *{event.anchor} refers to a value that contains it (a structure "
                                          "holding itself); a config cannot be one", event.start_mark)
            self._aliases += 1
        node = super().compose_node(parent, index)
        if not is_alias:
            self._expanded[id(node)] = size = self._size(node)
            if size > MAX_ALIAS_NODES and self._aliases:
                raise AliasExpansionError(
                    None, None, f"aliases expand this value to {size} nodes, more than the {MAX_ALIAS_NODES} a config may "
                    f"hold ({self._aliases} aliases so far; a YAML alias bomb?); write the values out instead", node.start_mark)
        return node

    def _size(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.SequenceNode):
            return 1 + sum(self._expanded[id(child)] for child in node.value)
        if isinstance(node, yaml.MappingNode):
            return 1 + sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
        return 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML's own check reports it
                continue
            if first is not None:
                raise DuplicateKeyError(None, None, f"duplicate key {key!r} (first on line {first + 1}); keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# byte-order marks of the encodings a Windows editor or a PowerShell redirect (``>``) writes instead of UTF-8
_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16", b"\xfe\xff": "UTF-16"}


def read_config_text(path: Path) -> str:
    """The file as UTF-8 text (a UTF-8 byte-order mark is dropped); any other encoding is one line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KagglePlanetError(f"{path}: cannot read the config ({exc.strerror})") from None
    for bom, name in _BOMS.items():
        if raw.startswith(bom):
            raise KagglePlanetError(f"{path}: the file is {name} text (a PowerShell '>' redirect writes that); expected UTF-8: re-save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise KagglePlanetError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); expected a UTF-8 YAML file") from None

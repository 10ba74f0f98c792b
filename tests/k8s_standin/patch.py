"""The three patch formats kube-apiserver accepts on JSON objects.

* JSON merge patch (RFC 7386, ``application/merge-patch+json``);
* strategic merge patch (``application/strategic-merge-patch+json``): like a merge patch, but lists that
  carry a ``patchMergeKey`` in the Go types are merged element by element (``conditions`` by ``type``,
  ``ports`` by ``port``, ...), primitive lists with ``patchStrategy: merge`` are unioned, and the
  ``$patch`` (``replace``/``delete``/``merge``), ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and
  ``$setElementOrder/<f>`` directives are honoured. The merge keys come from a per-type table
  (:data:`MergeKeys`) instead of Go struct tags;
* JSON patch (RFC 6902, ``application/json-patch+json``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# Dotted field path (list elements add no component) -> merge key; "" marks a primitive list merged as a set.
MergeKeys = Mapping[str, str]


class PatchError(ValueError):
    """The patch cannot be applied; the API reports this as 422."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


_DELETE = object()


def strategic_merge_patch(target: Any, patch: Any, merge_keys: MergeKeys) -> Any:
    """Apply a strategic merge patch to ``target`` (not modified) and return the result."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch must be a JSON object")
    result = _merge_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch, merge_keys, "")
    return {} if result is _DELETE else result


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _merge_map(original: dict[str, Any], patch: dict[str, Any], keys: MergeKeys, path: str) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if directive not in (None, "merge"):
        raise PatchError(f"Unknown patch type: {directive}")
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(original.get(field), list) and isinstance(value, list):
                original[field] = [item for item in original[field] if item not in value]
            continue
        if value is None:
            original.pop(key, None)
            continue
        child_path = _child(path, key)
        current = original.get(key)
        if isinstance(value, dict):
            merged = _merge_map(current if isinstance(current, dict) else {}, value, keys, child_path)
            if merged is _DELETE:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            original[key] = _merge_list(current if isinstance(current, list) else [], value, keys, child_path)
        else:
            original[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        for key in list(original):
            if key not in retain:
                del original[key]
    return original


def _merge_list(original: list[Any], patch: list[Any], keys: MergeKeys, path: str) -> list[Any]:
    if path not in keys:
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    merge_key = keys[path]
    if merge_key == "":
        result = list(original)
        for item in patch:
            if item not in result:
                result.append(copy.deepcopy(item))
        return result
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    result = [copy.deepcopy(item) for item in original]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{path}: list items must be objects with the merge key {merge_key!r}")
        if merge_key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {merge_key}")
        index = next(
            (i for i, el in enumerate(result) if isinstance(el, dict) and el.get(merge_key) == item[merge_key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
            continue
        if index is None:
            cleaned = _merge_map({}, item, keys, path)
            result.append(cleaned)
        else:
            merged = _merge_map(result[index], item, keys, path)
            if merged is _DELETE:
                del result[index]
            else:
                result[index] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"doc is missing path: {path!r}: missing value")
    return node, parts[-1]


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"doc is missing path: {path!r}: missing value")
    return node


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"add operation does not apply: doc is missing path: {path!r}")
    else:
        raise PatchError(f"add operation does not apply: doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise PatchError("remove operation does not apply: cannot remove the whole document")
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"remove operation does not apply: doc is missing path: {path!r}: missing value")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``target``; raises :class:`PatchError` when an operation does not apply."""
    if not isinstance(operations, list):
        raise PatchError("json patch must be a JSON array of operations")
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{op} operation does not apply: missing value")
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(doc, path)
        elif op == "replace":
            if _pointer(path):
                _get(doc, path)
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(operation["value"]))
        elif op == "move":
            value = _remove(doc, operation["from"])
            doc = _add(doc, path, value)
        elif op == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, operation["from"])))
        elif op == "test":
            actual = _get(doc, path)
            if actual != operation["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}")
    return doc

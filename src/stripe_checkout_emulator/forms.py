"""Decoding of Stripe's form encoding (`a[b][0][c]=v`) into nested dicts and lists."""

import re
from typing import Any
from urllib.parse import parse_qsl

from .errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
_APPEND = object()  # marks an empty "[]" segment: append to a list


def decode_form(text: str) -> dict[str, Any]:
    """Decode an urlencoded body or query string the way Stripe's API reads it.

    Indexed segments (`[0]`, `[1]`) and empty ones (`[]`) become lists; other
    segments become dicts. Values stay strings: each endpoint coerces them,
    as Stripe does, so that it can name the bad parameter in its error.
    """
    root: dict[str, Any] = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True):
        match = _KEY.match(raw_key)
        if match is None:
            raise invalid(f"Invalid parameter name: {raw_key}", raw_key)
        parts: list[Any] = [match.group(1)]
        parts += [p if p else _APPEND for p in _PART.findall(match.group(2))]
        _assign(root, parts, value, raw_key)
    # The top level is always a hash of parameter names, even if numeric.
    return {k: _listify(v) for k, v in root.items()}


def _assign(node: dict[str, Any], parts: list[Any], value: str, raw_key: str) -> None:
    *parents, last = parts
    for part in parents:
        if part is _APPEND:
            # "a[][b]" has no index to group fields by; Stripe rejects it too.
            raise invalid(f"Invalid array: {raw_key}", raw_key)
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise invalid(f"Invalid hash: {raw_key}", raw_key)
        node = child
    if last is _APPEND:
        # Collected under integer keys so _listify turns them into a list.
        node[str(len(node))] = value
        return
    if isinstance(node.get(last), dict):
        raise invalid(f"Invalid hash: {raw_key}", raw_key)
    node[last] = value


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted

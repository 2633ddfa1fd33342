"""Validate Kubernetes custom resources offline against their CRD's `openAPIV3Schema`.

A CRD's schema is OpenAPI v3.0 with Kubernetes extensions; `json_schema_of` translates it into
plain JSON Schema (draft 2020-12) and `validator_for` adds the two checks JSON Schema cannot
express (keyed list uniqueness, CEL rules). The translation follows the API server's structural
schema semantics (k8s.io/apiextensions-apiserver):

- `x-kubernetes-int-or-string`: an integer or a string (quantities, ports); a `pattern` applies
  to the string form only, as in OpenAPI.
- `x-kubernetes-preserve-unknown-fields`: fields the node does not name are kept, with anything
  below them; the fields it names are still checked.
- `x-kubernetes-embedded-resource`: the node is a whole object, so `apiVersion` and `kind` are
  required and its `metadata` is an ObjectMeta.
- the root's `metadata` is the API server's ObjectMeta (the CRD leaves it a bare object).
- `x-kubernetes-list-type: set`: unique items; `map`: unique by `x-kubernetes-list-map-keys`,
  a missing key counting as its default.
- `nullable`: null is allowed; `format: int32/int64`: the integer's range.
- `x-kubernetes-validations` (CEL): not evaluated here. Transition rules (`oldSelf`) never apply
  to a new object; any other rule makes the field it guards an error ("cannot be checked
  offline"), so a manifest never passes a rule nobody evaluated.

Unknown fields are errors. The API server does not reject them on its own: it prunes them, so
a misspelt field silently does nothing (`kubectl apply`'s default strict field validation
rejects them, other clients only warn). Only a preserve-unknown-fields node accepts them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

__all__ = [
    "CrdSchemaError",
    "OBJECT_META",
    "json_schema_of",
    "load_crd_schemas",
    "manifest_problems",
    "validator_for",
]

# The user-settable part of ObjectMeta (k8s.io/apimachinery, meta/v1); the rest is written by
# the API server. Names: DNS-1123 subdomains.
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": DNS_1123_SUBDOMAIN, "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}

INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# OpenAPI keywords that mean the same in JSON Schema 2020-12.
PLAIN_KEYWORDS = {
    "type", "required", "enum", "pattern", "maxLength", "minLength", "maximum", "minimum",
    "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties", "multipleOf",
    "format", "default", "title",
}  # fmt: skip
# Keywords that only document or only steer server-side merging.
IGNORED_KEYWORDS = {"description", "example", "x-kubernetes-map-type"}
HANDLED_KEYWORDS = {
    "properties", "additionalProperties", "items", "anyOf", "allOf", "oneOf", "not", "nullable",
    "exclusiveMaximum", "exclusiveMinimum", "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
}  # fmt: skip
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]
CEL_KEYWORD = "x-anchor-unchecked-cel"


class CrdSchemaError(ValueError):
    """A CRD file or schema this module cannot read or translate."""


def json_schema_of(node: dict[str, Any], where: str = "", *, root: bool = True) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) equivalent of a structural `openAPIV3Schema` node."""
    unknown = set(node) - PLAIN_KEYWORDS - IGNORED_KEYWORDS - HANDLED_KEYWORDS
    if unknown:
        raise CrdSchemaError(
            f"schema at {where.lstrip('.') or '<root>'}: unsupported keywords {sorted(unknown)}"
        )
    out = {k: copy.deepcopy(v) for k, v in node.items() if k in PLAIN_KEYWORDS}
    _translate_children(node, out, where)
    _translate_numbers(node, out)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
        if node.get("anyOf") == INT_OR_STRING:
            del out["anyOf"]
    if node.get("x-kubernetes-embedded-resource"):
        _embed_resource(out)
    if root and "metadata" in out.get("properties", {}):
        out["properties"]["metadata"] = copy.deepcopy(OBJECT_META)
    _close_object(node, out)
    _translate_lists(node, out, where)
    rules = [
        r["rule"] for r in node.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]
    ]
    if rules:
        out[CEL_KEYWORD] = rules
    if node.get("nullable"):
        _allow_null(out)
    return out


def _translate_children(node: dict[str, Any], out: dict[str, Any], where: str) -> None:
    if "properties" in node:
        out["properties"] = {
            name: json_schema_of(sub, f"{where}.{name}", root=False)
            for name, sub in node["properties"].items()
        }
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = json_schema_of(extra, f"{where}.*", root=False)
    elif extra is not None:
        out["additionalProperties"] = extra
    if "items" in node:
        out["items"] = json_schema_of(node["items"], f"{where}[]", root=False)
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [
                json_schema_of(sub, f"{where}({key}[{i}])", root=False)
                for i, sub in enumerate(node[key])
            ]
    if "not" in node:
        out["not"] = json_schema_of(node["not"], f"{where}(not)", root=False)


def _translate_numbers(node: dict[str, Any], out: dict[str, Any]) -> None:
    # OpenAPI 3.0's exclusive bounds are flags on minimum/maximum; 2020-12's are the bounds.
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if node.get(flag) is True and bound in out:
            out[flag] = out.pop(bound)
    span = INT_RANGES.get(node.get("format", ""))
    if span and node.get("type") == "integer":
        out.setdefault("minimum", span[0])
        out.setdefault("maximum", span[1])


def _embed_resource(out: dict[str, Any]) -> None:
    props = out.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string", "minLength": 1})
    props.setdefault("kind", {"type": "string", "minLength": 1})
    props["metadata"] = copy.deepcopy(OBJECT_META)
    out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})


def _close_object(node: dict[str, Any], out: dict[str, Any]) -> None:
    """Unknown fields are errors unless the node preserves them (see the module docstring)."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and "additionalProperties" not in out:
        out["additionalProperties"] = False


def _translate_lists(node: dict[str, Any], out: dict[str, Any], where: str) -> None:
    kind = node.get("x-kubernetes-list-type")
    if kind == "set":
        out["uniqueItems"] = True
    elif kind == "map":
        keys = node.get("x-kubernetes-list-map-keys")
        if not keys:
            raise CrdSchemaError(
                f"schema at {where.lstrip('.')}: list-type map without list-map-keys"
            )
        out["x-kubernetes-list-map-keys"] = list(keys)
    elif kind not in (None, "atomic"):
        raise CrdSchemaError(
            f"schema at {where.lstrip('.')}: unknown x-kubernetes-list-type {kind!r}"
        )


def _allow_null(out: dict[str, Any]) -> None:
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def _list_map_keys(validator: Any, keys: list[str], instance: Any, schema: dict) -> Iterator:
    if not validator.is_type(instance, "array"):
        return
    fields = (schema.get("items") or {}).get("properties") or {}
    seen: dict[tuple, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, (fields.get(k) or {}).get("default")) for k in keys)
        if key in seen:
            named = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True))
            yield ValidationError(f"items {seen[key]} and {i} have the same key ({named})")
        else:
            seen[key] = i


def _unchecked_cel(validator: Any, rules: list[str], instance: Any, schema: dict) -> Iterator:
    yield ValidationError(
        "this field carries CEL rules that cannot be checked offline "
        f"({'; '.join(rules)}): check them by hand and extend tests/crd_schema.py"
    )


K8sValidator = validators.extend(
    Draft202012Validator,
    {"x-kubernetes-list-map-keys": _list_map_keys, CEL_KEYWORD: _unchecked_cel},
)


def validator_for(structural: dict[str, Any]) -> Any:
    """A validator of custom resources against a CRD version's `openAPIV3Schema`."""
    return K8sValidator(json_schema_of(structural))


def load_crd_schemas(folder: Path) -> dict[tuple[str, str], Any]:
    """Validators of every served version in the CRD files of `folder`, by (apiVersion, kind)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    found: dict[tuple[str, str], Any] = {}
    for path in sorted(folder.glob("*.yaml")):
        for crd in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            try:
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        schema = version["schema"]["openAPIV3Schema"]
                        found[(f"{group}/{version['name']}", kind)] = validator_for(schema)
            except (KeyError, TypeError) as exc:
                raise CrdSchemaError(f"{path}: not a CRD with schemas ({exc!r})") from exc
            except CrdSchemaError as exc:
                raise CrdSchemaError(f"{path}: {exc}") from exc
    if not found:
        raise CrdSchemaError(f"{folder}: no CustomResourceDefinition with a schema")
    return found


def dotted(path: Any) -> str:
    """`spec.workerGroupSpecs[0].template` from a jsonschema error path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "<root>"


def _path_order(error: ValidationError) -> list[tuple[int, int, str]]:
    # List indices in numeric order, so items[10] comes after items[2].
    return [(0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in error.absolute_path]


def manifest_problems(doc: Any, schemas: dict[tuple[str, str], Any]) -> list[str]:
    """Every way `doc` breaks its CRD's schema, each as `path: what`, sorted by path."""
    if not isinstance(doc, dict):
        return [f"<root>: a manifest is a mapping, not {type(doc).__name__}"]
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in schemas:
        known = ", ".join(f"{a} {k}" for a, k in sorted(schemas))
        return [f"<root>: no CRD here serves {key[0]} {key[1]} (known: {known})"]
    problems = []
    for error in sorted(schemas[key].iter_errors(doc), key=_path_order):
        where = dotted(error.absolute_path)
        if error.validator == "additionalProperties" and error.validator_value is False:
            named = set(error.schema.get("properties", {}))
            for field in sorted(set(error.instance) - named):
                at = f"{where}.{field}" if where != "<root>" else field
                problems.append(f"{at}: unknown field (the API server would prune it)")
        else:
            problems.append(f"{where}: {error.message}")
    return problems

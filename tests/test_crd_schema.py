"""The translation of CRD schemas (OpenAPI v3 + Kubernetes extensions) into JSON Schema, on small
hand-written schemas; tests/test_clusters.py applies it to the real KubeRay CRDs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from crd_schema import (
    OBJECT_META,
    CrdSchemaError,
    json_schema_of,
    load_crd_schemas,
    manifest_problems,
    validator_for,
)


def errors(structural: dict, instance: object) -> list[str]:
    """`path: message` of every error of `instance` against a structural schema."""
    validator = validator_for(structural)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def obj(**properties: dict) -> dict:
    return {"type": "object", "properties": properties}


QUANTITY = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^[0-9]+(\.[0-9]+)?(m|Gi|Mi)?$",
    "x-kubernetes-int-or-string": True,
}


def test_int_or_string_takes_integers_and_strings_and_patterns_only_strings():
    schema = obj(cpu=QUANTITY)
    assert json_schema_of(schema)["properties"]["cpu"]["type"] == ["integer", "string"]
    assert "anyOf" not in json_schema_of(schema)["properties"]["cpu"]
    for good in (4, "4", "500m", "16Gi"):
        assert errors(schema, {"cpu": good}) == [], good
    # A YAML float is a JSON number, which the API server rejects for int-or-string.
    for bad in (0.5, True, "16 GB", None):
        assert errors(schema, {"cpu": bad}), bad


def test_object_with_properties_rejects_unknown_fields():
    schema = obj(name={"type": "string"})
    assert errors(schema, {"name": "a"}) == []
    assert any("'nam' was unexpected" in e for e in errors(schema, {"nam": "a"}))


def test_object_without_properties_or_preserve_keeps_nothing():
    assert errors({"type": "object"}, {}) == []
    assert errors({"type": "object"}, {"anything": 1})


def test_string_map_takes_any_key_with_string_values():
    schema = {"type": "object", "additionalProperties": {"type": "string"}}
    assert errors(schema, {"num-cpus": "0", "x": ""}) == []
    assert errors(schema, {"num-cpus": 0}) == ["['num-cpus']: 0 is not of type 'string'"]


def test_preserve_unknown_fields_keeps_anything_below_but_checks_named_fields():
    schema = obj(
        config={
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"replicas": {"type": "integer"}},
        }
    )
    assert errors(schema, {"config": {"deep": {"er": [1, {"x": None}]}, "replicas": 2}}) == []
    assert errors(schema, {"config": {"replicas": "2"}}) == [
        "['config', 'replicas']: '2' is not of type 'integer'"
    ]
    bare = {"x-kubernetes-preserve-unknown-fields": True}
    assert errors(obj(raw=bare), {"raw": [1, "two", {"three": 3}]}) == []


def test_embedded_resource_needs_kind_and_api_version_and_object_meta():
    schema = obj(
        job={
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
        }
    )
    good = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "a"}, "spec": {"x": 1}}
    assert errors(schema, {"job": good}) == []
    assert any("'kind' is a required property" in e for e in errors(schema, {"job": {"spec": {}}}))
    bad_meta = {**good, "metadata": {"name": "Not_DNS", "labelz": {}}}
    found = errors(schema, {"job": bad_meta})
    assert any("['job', 'metadata', 'name']" in e for e in found), found
    assert any("'labelz' was unexpected" in e for e in found), found


def test_root_metadata_is_object_meta_and_nested_metadata_is_what_the_crd_says():
    schema = obj(
        metadata={"type": "object"},
        spec=obj(template=obj(metadata=obj(labels={"type": "object"}))),
    )
    assert json_schema_of(schema)["properties"]["metadata"] == OBJECT_META
    ok = {"metadata": {"name": "anchor-job", "labels": {"a": "b"}}}
    assert errors(schema, ok) == []
    assert errors(schema, {"metadata": {"labels": {"a": 1}}})
    assert errors(schema, {"metadata": {"name": "UPPER"}})
    nested = {"spec": {"template": {"metadata": {"name": "x"}}}}
    assert any("'name' was unexpected" in e for e in errors(schema, nested))


def test_list_map_keys_are_unique_counting_defaults():
    port = obj(containerPort={"type": "integer"}, protocol={"type": "string", "default": "TCP"}) | {
        "required": ["containerPort"]
    }
    schema = obj(
        ports={
            "type": "array",
            "items": port,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
        }
    )
    distinct = [{"containerPort": 80}, {"containerPort": 80, "protocol": "UDP"}]
    assert errors(schema, {"ports": distinct}) == []
    same = [{"containerPort": 80}, {"containerPort": 80, "protocol": "TCP"}]
    assert errors(schema, {"ports": same}) == [
        "['ports']: items 0 and 1 have the same key (containerPort=80, protocol='TCP')"
    ]


def test_list_set_has_unique_items_and_atomic_list_need_not():
    items = {"type": "array", "items": {"type": "string"}}
    schema = obj(
        s=items | {"x-kubernetes-list-type": "set"}, a=items | {"x-kubernetes-list-type": "atomic"}
    )
    assert errors(schema, {"a": ["x", "x"]}) == []
    assert errors(schema, {"s": ["x", "x"]})


def test_nullable_allows_null_and_int32_has_its_range():
    schema = obj(
        t={"type": "string", "nullable": True},
        e={"type": "string", "enum": ["A"], "nullable": True},
        n={"type": "integer", "format": "int32"},
    )
    assert errors(schema, {"t": None, "e": None, "n": 2**31 - 1}) == []
    assert errors(schema, {"n": 2**31})
    assert errors(schema, {"n": None})


def test_openapi_exclusive_bounds_become_json_schema_bounds():
    schema = obj(p={"type": "integer", "minimum": 0, "exclusiveMinimum": True})
    assert errors(schema, {"p": 1}) == []
    assert errors(schema, {"p": 0})


def test_cel_rules_fail_the_field_they_guard_except_transition_rules():
    schema = obj(
        managedBy={
            "type": "string",
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "immutable"},
                {"rule": "self in ['ray.io/kuberay-operator']", "message": "one of"},
            ],
        },
        backend={"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]},
    )
    assert errors(schema, {"backend": "redis"}) == []
    found = errors(schema, {"managedBy": "ray.io/kuberay-operator"})
    assert len(found) == 1 and "cannot be checked offline" in found[0], found
    assert "oldSelf" not in found[0]


def test_unknown_keywords_and_list_types_are_refused_with_the_schema_path():
    with pytest.raises(
        CrdSchemaError, match=r"at spec\.x: unsupported keywords \['x-kubernetes-new'\]"
    ):
        json_schema_of(obj(spec=obj(x={"type": "string", "x-kubernetes-new": True})))
    with pytest.raises(CrdSchemaError, match="at spec: unknown x-kubernetes-list-type 'bag'"):
        json_schema_of(obj(spec={"type": "array", "x-kubernetes-list-type": "bag"}))


def write_crd(folder: Path, version: dict) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "spec": {"group": "ray.io", "names": {"kind": "RayJob"}, "versions": [version]},
    }
    (folder / "crd.yaml").write_text(yaml.safe_dump(crd), encoding="utf-8")


def test_manifest_problems_name_the_path_of_each_unknown_field(tmp_path: Path):
    spec = obj(
        entrypoint={"type": "string"}, groups={"type": "array", "items": obj(n={"type": "integer"})}
    )
    root = obj(
        apiVersion={"type": "string"},
        kind={"type": "string"},
        metadata={"type": "object"},
        spec=spec,
    )
    write_crd(tmp_path, {"name": "v1", "served": True, "schema": {"openAPIV3Schema": root}})
    schemas = load_crd_schemas(tmp_path)
    doc = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "a"}}
    assert manifest_problems(doc | {"spec": {"entrypoint": "x"}}, schemas) == []
    broken = doc | {"spec": {"entrypont": "x", "groups": [{"n": 1}, {"n": "2", "m": 0}]}}
    assert manifest_problems(broken, schemas) == [
        "spec.entrypont: unknown field (the API server would prune it)",
        "spec.groups[1].m: unknown field (the API server would prune it)",
        "spec.groups[1].n: '2' is not of type 'integer'",
    ]
    other = manifest_problems(doc | {"apiVersion": "ray.io/v2"}, schemas)
    assert other == ["<root>: no CRD here serves ray.io/v2 RayJob (known: ray.io/v1 RayJob)"]


def test_unserved_versions_are_not_loaded_and_a_folder_without_crds_is_an_error(tmp_path: Path):
    write_crd(tmp_path, {"name": "v1", "served": False, "schema": {"openAPIV3Schema": obj()}})
    with pytest.raises(CrdSchemaError, match="no CustomResourceDefinition with a schema"):
        load_crd_schemas(tmp_path)
    write_crd(tmp_path, {"name": "v1", "served": True})
    with pytest.raises(CrdSchemaError, match=r"crd\.yaml: not a CRD with schemas"):
        load_crd_schemas(tmp_path)

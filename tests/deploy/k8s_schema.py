"""Strict, offline validation of rendered Kubernetes manifests.

Built-in kinds are checked against the Kubernetes JSON schemas that ship inside the
``kubernetes-validate`` package, in their strict variant (an unknown or misspelt field is an
error), so no network is needed. Kinds defined by CRDs have no schema there: the ones this
project deploys get a small strict schema of their own in ``schemas/``. A kind with neither
is reported as an error, never passed silently.

Usage: ``python tests/deploy/k8s_schema.py [--kubernetes-version 1.32] FILE...`` (``-`` reads
standard input, e.g. piped from ``kubectl kustomize k8s/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as k8s_validate

#: The Kubernetes release the manifests target (Docker Desktop's current one).
KUBERNETES_VERSION = "1.32"

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"

#: (apiVersion, kind) of CRD-defined objects -> our strict schema for them.
CUSTOM_SCHEMAS: Mapping[tuple[str, str], str] = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
}


def describe(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of a manifest object, for messages."""
    name = obj.get("metadata", {}).get("name", "<no name>")
    return f"{obj.get('kind', '<no kind>')}/{name}"


def _path(parts: Iterable[object]) -> str:
    return ".".join(str(p) for p in parts) or "<root>"


def _validate_custom(obj: Mapping[str, Any], schema_file: str) -> list[str]:
    schema = json.loads((SCHEMA_DIR / schema_file).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{describe(obj)}: {_path(err.absolute_path)}: {err.message}"
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
    ]


def validate_object(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Every schema violation of one object, as ``Kind/name: path: message`` lines."""
    if not isinstance(obj, Mapping) or "kind" not in obj or "apiVersion" not in obj:
        return [f"{describe(obj) if isinstance(obj, Mapping) else obj!r}: not a Kubernetes object"]
    custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if custom is not None:
        return _validate_custom(obj, custom)
    try:
        k8s_validate.validate(dict(obj), version, strict=True)
    except k8s_validate.ValidationError as err:
        return [f"{describe(obj)}: {_path(err.path)}: {err.message}"]
    except k8s_validate.SchemaNotFoundError as err:
        return [
            f"{describe(obj)}: no schema for {obj['apiVersion']} {obj['kind']} in Kubernetes "
            f"{version}: {err.message}; a CRD kind needs an entry in CUSTOM_SCHEMAS"
        ]
    except k8s_validate.VersionNotSupportedError as err:
        return [f"kubernetes-validate has no schemas for Kubernetes {err.version}"]
    return []


def validate_documents(
    documents: Iterable[Mapping[str, Any] | None], version: str = KUBERNETES_VERSION
) -> tuple[int, list[str]]:
    """Validate every non-empty document; returns (objects checked, errors)."""
    count, errors = 0, []
    for doc in documents:
        if doc is None:
            continue
        count += 1
        errors.extend(validate_object(doc, version))
    return count, errors


def load_documents(text: str) -> list[Any]:
    """The YAML documents of a (possibly multi-document) manifest."""
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: validate files, print each error, exit 1 if any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", "--kubernetes-version", default=KUBERNETES_VERSION)
    parser.add_argument("files", nargs="+", help="manifest files; - for standard input")
    args = parser.parse_args(argv)
    total, failures = 0, []
    for name in args.files:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        count, errors = validate_documents(load_documents(text), args.kubernetes_version)
        total += count
        failures.extend(f"{name}: {e}" for e in errors)
    for line in failures:
        print(f"ERROR {line}")
    print(
        f"{total} objects checked against Kubernetes {args.kubernetes_version} schemas "
        f"(strict): {len(failures)} error(s)"
    )
    return 1 if failures or total == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

"""Every rendered object validates against the Kubernetes JSON schemas in strict mode, offline,
and the validator really rejects broken manifests."""

from __future__ import annotations

import copy
import socket
from typing import Any

import pytest

from .k8s_schema import validate_documents, validate_object
from .manifests import Manifest, find


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.mark.usefixtures("no_network")
def test_base_validates_strictly_offline(base: list[Manifest]) -> None:
    count, errors = validate_documents(base)
    assert errors == []
    assert count == len(base) > 0


@pytest.mark.usefixtures("no_network")
def test_autoscale_overlay_validates_strictly_offline(autoscale: list[Manifest]) -> None:
    count, errors = validate_documents(autoscale)
    assert errors == []
    assert count == len(autoscale) > 0


def _broken_deployments(base: list[Manifest]) -> dict[str, Manifest]:
    good = find(base, "Deployment", "consumer")
    cases: dict[str, Manifest] = {}

    misspelt = copy.deepcopy(good)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    cases["misspelt field"] = misspelt

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "six"
    cases["wrong type"] = wrong_type

    no_name = copy.deepcopy(good)
    del no_name["spec"]["template"]["spec"]["containers"][0]["name"]
    cases["missing required field"] = no_name

    bad_port = copy.deepcopy(good)
    bad_port["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = [8081]
    cases["port of the wrong shape"] = bad_port

    unknown_kind = copy.deepcopy(good)
    unknown_kind["kind"] = "Deploymnet"
    cases["unknown kind"] = unknown_kind
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "misspelt field",
        "wrong type",
        "missing required field",
        "port of the wrong shape",
        "unknown kind",
    ],
)
def test_validator_rejects_broken_manifests(base: list[Manifest], case: str) -> None:
    broken = _broken_deployments(base)[case]
    assert validate_object(broken), f"{case} was accepted"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "minReplicas"), 2),
        (("spec", "triggers", 0, "metadata", "acount"), "$G"),
        (("spec", "triggers", 0, "metadata", "lagThreshold"), 100),
        (("spec", "scaleTargetRef", "nmae"), "consumer"),
    ],
)
def test_scaled_object_schema_rejects_mistakes(
    autoscale: list[Manifest], path: tuple[str | int, ...], value: object
) -> None:
    broken = copy.deepcopy(find(autoscale, "ScaledObject", "consumer"))
    node: Any = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert validate_object(broken)


def test_scaled_object_schema_requires_the_jetstream_fields(autoscale: list[Manifest]) -> None:
    broken = copy.deepcopy(find(autoscale, "ScaledObject", "consumer"))
    del broken["spec"]["triggers"][0]["metadata"]["stream"]
    assert any("'stream' is a required property" in e for e in validate_object(broken))

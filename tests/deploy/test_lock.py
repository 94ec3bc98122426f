"""requirements.lock pins every runtime dependency to the version these tests run with, and
the venv (Makefile) and both images (docker/) install through it."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .manifests import REPO
from .test_dockerfiles import DOCKERFILES, parse_dockerfile

LOCK = REPO / "requirements.lock"


def runtime_requirements() -> list[Requirement]:
    """``[project] dependencies`` of pyproject.toml."""
    project: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in project["dependencies"]]


def locked() -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line of the lock."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def runtime_closure() -> set[str]:
    """The runtime dependencies and, as installed here, everything they need in turn (with
    the extras asked for, on this Python): what an image installs."""
    found: set[str] = set()
    todo = [(req, set(req.extras)) for req in runtime_requirements()]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        found.add(name)
        for line in metadata.requires(req.name) or []:
            inner = Requirement(line)
            if inner.marker is None or any(
                inner.marker.evaluate({"extra": extra}) for extra in extras | {""}
            ):
                todo.append((inner, set(inner.extras)))
    return found


def test_every_runtime_dependency_has_an_upper_bound() -> None:
    for req in runtime_requirements():
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in req.specifier), (
            f"{req} has no upper bound: a new release could change what the tests checked"
        )


def test_every_runtime_dependency_is_pinned_within_its_bounds() -> None:
    pins = locked()
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in requirements.lock: run 'make lock'"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject's {req}: "
            "run 'make lock'"
        )


def test_the_lock_lists_no_editable_or_unpinned_packages() -> None:
    for line in LOCK.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+", stripped), line
    assert canonicalize_name("expiry-pipeline") not in locked()


@pytest.mark.parametrize("name", sorted(runtime_closure()))
def test_this_environment_runs_the_locked_version(name: str) -> None:
    pins = locked()
    assert name in pins, f"{name} (a runtime dependency) is not pinned in requirements.lock"
    installed = metadata.version(name)
    assert installed == pins[name], (
        f"{name} {installed} is installed, requirements.lock pins {pins[name]}: "
        "reinstall with 'make setup' (or run 'make lock' if the new version is wanted)"
    )


@pytest.mark.parametrize("service", DOCKERFILES)
def test_images_install_through_the_lock(service: str) -> None:
    stages = parse_dockerfile(REPO / DOCKERFILES[service])
    (build,) = [s for s in stages if s.name == "python-build"]
    copies = " ".join(rest for keyword, rest in build.instructions if keyword == "COPY")
    assert "requirements.lock" in copies.split()
    installs = [
        rest for keyword, rest in build.instructions if keyword == "RUN" and " install " in rest
    ]
    assert installs, "the build stage installs the package"
    for rest in installs:
        assert "-c requirements.lock" in rest or "--constraint requirements.lock" in rest, rest


def test_the_venv_installs_through_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+) :?= *(.*)$", makefile, flags=re.MULTILINE))
    installs = [
        line for line in makefile.splitlines() if "pip install" in line and "-e '.[dev]'" in line
    ]
    assert installs
    for line in installs:
        expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        assert "-c requirements.lock" in expanded, line
    assert re.search(r"^lock:", makefile, flags=re.MULTILINE), "make lock regenerates it"

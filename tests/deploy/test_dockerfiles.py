"""The Dockerfiles build from files that exist, run the real entrypoints, and keep the
runtime stage slim and unprivileged. No Docker engine is needed: the files are read."""

from __future__ import annotations

import fnmatch
import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .manifests import REPO, Manifest, container, find

DOCKERFILES = {"generator": "docker/Dockerfile.generator", "consumer": "docker/Dockerfile.consumer"}


@dataclass
class Stage:
    """One FROM ... block of a Dockerfile."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with ARG defaults substituted into FROM lines."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return stages


def copy_sources(rest: str) -> tuple[dict[str, str], list[str]]:
    """(flags, sources) of a COPY/ADD instruction, shell or JSON form."""
    words = shlex.split(rest)
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    if words and words[0].startswith("["):
        words = json.loads(" ".join(words))
    return flags, words[:-1]


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative, POSIX) out of the build context,
    following Docker's rules: the last matching pattern wins, and a pattern that matches
    a parent folder matches everything in it."""
    patterns = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        patterns.append((negate, pattern))
    parts = posixpath.normpath(path).split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in patterns:
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def _stages(service: str) -> list[Stage]:
    return parse_dockerfile(REPO / DOCKERFILES[service])


def _entrypoint(service: str) -> list[str]:
    runtime = _stages(service)[-1]
    (entrypoint,) = [json.loads(rest) for key, rest in runtime.instructions if key == "ENTRYPOINT"]
    return list(entrypoint)


def _context_paths(pattern: str) -> list[str]:
    """Repository paths a COPY source names (globs expanded), relative and POSIX."""
    clean = pattern.rstrip("/") or "."
    if any(ch in clean for ch in "*?["):
        return sorted(
            p.relative_to(REPO).as_posix()
            for p in REPO.glob(clean)
            if fnmatch.fnmatch(p.relative_to(REPO).as_posix(), clean)
        )
    return [clean] if (REPO / clean).exists() else []


@pytest.mark.parametrize("service", DOCKERFILES)
def test_every_copy_source_exists_and_reaches_the_build_context(service: str) -> None:
    for stage in _stages(service):
        for keyword, rest in stage.instructions:
            if keyword not in ("COPY", "ADD"):
                continue
            flags, sources = copy_sources(rest)
            if "from" in flags:
                continue
            literal = [s for s in sources if not any(ch in s for ch in "*?[")]
            assert literal, f"{keyword} {rest}: needs at least one source that must exist"
            for source in sources:
                paths = _context_paths(source)
                if source in literal:
                    assert paths, f"{DOCKERFILES[service]}: {keyword} source {source} is missing"
                for path in paths:
                    assert not dockerignore_excludes(path), f".dockerignore drops {path}"


@pytest.mark.parametrize("service", DOCKERFILES)
def test_entrypoint_runs_the_services_module(service: str) -> None:
    entrypoint = _entrypoint(service)
    assert entrypoint == ["python", "-m", service]
    main = REPO / "src" / service / "__main__.py"
    assert main.is_file(), f"{main.relative_to(REPO)} is missing"


@pytest.mark.parametrize("service", DOCKERFILES)
def test_kubernetes_runs_the_same_command_as_the_image(base: list[Manifest], service: str) -> None:
    entrypoint = _entrypoint(service)
    c = container(find(base, "Deployment", service))
    assert c["command"] + c.get("args", []) == entrypoint


@pytest.mark.parametrize("service", DOCKERFILES)
def test_runtime_stage_is_slim_and_unprivileged(service: str) -> None:
    stages = _stages(service)
    runtime = stages[-1]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", runtime.image), runtime.image
    users = [rest for keyword, rest in runtime.instructions if keyword == "USER"]
    assert users, "the runtime stage must switch to an unprivileged user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root uid lets runAsNonRoot verify it"
    runs = " ".join(rest for keyword, rest in runtime.instructions if keyword == "RUN")
    for tool in ("apt-get", "pip ", "npm ", "gcc", "build-essential"):
        assert tool not in runs, f"runtime stage runs {tool.strip()}"
    # The runtime stage takes the installed venv from a build stage, not the sources.
    copies = [copy_sources(rest) for keyword, rest in runtime.instructions if keyword == "COPY"]
    assert all("from" in flags for flags, _ in copies)
    assert ("from", "python-build") in [(k, v) for flags, _ in copies for k, v in flags.items()]
    for stage in stages:
        assert ":" in stage.image and not stage.image.endswith(":latest"), stage.image


def test_generator_image_builds_and_serves_the_webui() -> None:
    stages = _stages("generator")
    (web,) = [s for s in stages if s.name == "web"]
    assert web.image.startswith("node:")
    runs = [rest for keyword, rest in web.instructions if keyword == "RUN"]
    assert "npm ci --no-audit --no-fund" in runs
    assert "npm run build" in runs
    runtime = stages[-1]
    env = " ".join(rest for keyword, rest in runtime.instructions if keyword == "ENV")
    assert "WEB_DIST=/app/web/dist" in env
    copies = [(*copy_sources(rest), rest) for key, rest in runtime.instructions if key == "COPY"]
    assert any(
        flags.get("from") == "web" and rest.endswith(" /app/web/dist") for flags, _, rest in copies
    )


@pytest.mark.parametrize("service", DOCKERFILES)
def test_no_syntax_directive_pulls_a_frontend_from_docker_hub(service: str) -> None:
    # BuildKit pulls the named frontend image (docker/dockerfile) before building: offline, or
    # without Docker Hub, the build fails before it starts. The built-in frontend suffices.
    for line in (REPO / DOCKERFILES[service]).read_text().splitlines():
        assert not re.match(r"#\s*syntax\s*=", line.strip(), flags=re.IGNORECASE), line


def test_consumer_image_has_no_webui() -> None:
    stages = _stages("consumer")
    assert not any(s.image.startswith("node:") for s in stages)


def test_dockerignore_keeps_local_state_out() -> None:
    for path in (
        ".venv/bin/python",
        "web/node_modules/react/index.js",
        "web/dist/index.html",
        "tests/deploy/test_dockerfiles.py",
        ".git/HEAD",
        "src/shared/__pycache__/x.pyc",
    ):
        assert dockerignore_excludes(path), path
    for path in (
        "pyproject.toml",
        "src/shared/config.py",
        "web/package-lock.json",
        "web/src/main.tsx",
    ):
        assert not dockerignore_excludes(path), path

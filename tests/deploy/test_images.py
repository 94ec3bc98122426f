"""``make images`` builds both images where a Docker engine answers, and where none does says
so in one line and succeeds (so it never fails a machine without Docker)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from .manifests import REPO
from .test_dockerfiles import DOCKERFILES

SCRIPT = REPO / "scripts" / "build_images.sh"


def test_make_images_runs_the_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^images:\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert target, "the Makefile has no images target"
    assert "scripts/build_images.sh" in target.group(1)


def test_without_an_engine_it_is_skipped_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make images: skipped: "), result.stdout


@pytest.mark.parametrize("variable", ["PYTHON_IMAGE", "NODE_IMAGE"])
def test_the_script_builds_from_the_dockerfiles_base_images(variable: str) -> None:
    script = re.search(
        rf'^{variable}="\$\{{{variable}:-(.+)\}}"$', SCRIPT.read_text(), flags=re.MULTILINE
    )
    assert script, f"{SCRIPT.name} does not default {variable}"
    for path in DOCKERFILES.values():
        dockerfile = (REPO / path).read_text()
        default = re.search(rf"^ARG {variable}=(\S+)$", dockerfile, flags=re.MULTILINE)
        if default:
            assert default.group(1) == script.group(1), path

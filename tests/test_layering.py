"""iot_lake's stages import one way only, and the package root holds no stray modules.

The contracts live in pyproject.toml ([tool.importlinter]); `make lint` runs them too, this
test keeps them in the suite.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "iot_lake"
ROOT_MODULES = {"__init__.py", "settings.py", "errors.py", "definitions.py"}
# Top to bottom, as in the layers contract; alerts, commands and rollouts are planned.
STAGES = {
    *("app", "rollouts", "commands", "alerts"),
    *("quality", "state", "gold", "silver", "ingest", "lake"),
}


def test_imports_keep_the_contracts():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-logo", "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_package_root_holds_settings_errors_and_definitions_only():
    modules = {p.name for p in PACKAGE.glob("*.py")}
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert modules == ROOT_MODULES, f"give these a stage: {sorted(modules - ROOT_MODULES)}"
    assert packages <= STAGES, f"not a stage: {sorted(packages - STAGES)}"


def test_every_stage_is_in_the_explicit_setuptools_package_list():
    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {".".join(init.parent.relative_to(REPO).parts) for init in PACKAGE.rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"

"""The image carries only the runtime dependencies: no module of the services imports a development-only
package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Installed here (the dev extra) but not in the image (requirements.lock; tests/deploy/test_dockerfile.py).
DEVELOPMENT_ONLY = ("pytest", "testcontainers", "selenium", "schemathesis", "psutil", "mypy")

_BLOCK = textwrap.dedent(
    f"""
    import importlib.abc, sys

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {DEVELOPMENT_ONLY!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    """
)


def _python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK + textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "ENVIRONMENT": "test", "HOME": str(tmp_path)},
    )


def test_every_module_imports_without_the_development_packages(tmp_path):
    result = _python(
        """
        import importlib, pkgutil
        import services, shared
        failed = []
        for package in (shared, services):
            for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                try:
                    importlib.import_module(module.name)
                except Exception as exc:
                    failed.append(f"{module.name}: {exc!r}")
        print("\\n".join(failed) or "ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok", result.stdout


def test_the_blocker_would_see_an_import_of_a_development_package(tmp_path):
    # The check above is only worth something if a blocked import really fails.
    result = _python("import testcontainers.core\n", tmp_path)
    assert result.returncode == 1 and "No module named 'testcontainers" in result.stderr

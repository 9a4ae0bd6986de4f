"""The image's rules, checked on the Dockerfile, the lock files and .dockerignore (no Docker engine here).

Each check reads the real files; the parser and the rules are also run against small broken
Dockerfiles, so that a rule that could never fail is noticed."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
EXACT_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
# An exact release: a tag with major.minor.patch, optionally a variant, optionally a digest.
EXACT_TAG = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")


# --- a small Dockerfile reader -----------------------------------------------------------------------


@dataclass
class Stage:
    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """The ARG defaults before the first FROM, and the stages with their instructions (continuation
    lines joined, comments dropped, ARG references in FROM resolved)."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(image, name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def problems(text: str) -> list[str]:
    """Every rule of issue 22 the Dockerfile breaks."""
    found = []
    _, stages = parse(text)
    if len(stages) < 2:
        found.append("not multi-stage")
    names = {stage.name for stage in stages if stage.name}
    for stage in stages:
        if stage.image in names:
            continue
        if not EXACT_TAG.match(stage.image) or ":latest" in stage.image:
            found.append(f"base not pinned to an exact version: {stage.image}")
    if not stages:
        return found + ["no FROM"]
    final = stages[-1]
    if final.image not in names and not EXACT_PYTHON.match(final.image):
        found.append(f"final base is not an exact python:3.11.x-slim-bookworm: {final.image}")
    users = final.all("USER")
    if not users:
        found.append("the final stage runs as root (no USER)")
    else:
        user, _, group = users[-1].partition(":")
        if not user.isdigit() or int(user) == 0 or (group and (not group.isdigit() or int(group) == 0)):
            found.append(f"the final USER is not a numeric non-root user: {users[-1]}")
        elif not any(f"--uid {user}" in run for run in final.all("RUN")):
            found.append(f"user {user} is not created in the final stage")
    healthchecks = final.all("HEALTHCHECK")
    if not healthchecks or healthchecks[-1].upper().startswith("NONE"):
        found.append("no HEALTHCHECK in the final stage")
    elif "/healthz" not in healthchecks[-1]:
        found.append("the HEALTHCHECK does not ask /healthz")
    runs = [run for stage in stages for run in stage.all("RUN")]
    copies = [copy for stage in stages for copy in stage.all("COPY")]
    installs = [part for run in runs for part in run.split("&&") if re.search(r"\bpip install\b", part)]
    if not any("requirements.lock" in copy for copy in copies):
        found.append("the lock file is not copied into the build")
    locked = [i for i in installs if "-r " in i and "requirements.lock" in i]
    if not locked or not all("--require-hashes" in i for i in locked):
        found.append("dependencies are not installed from requirements.lock with --require-hashes")
    for install in installs:
        if "-r " not in install and "--no-deps" not in install:
            found.append(f"an install outside the lock may pull dependencies: {install.strip()}")
    if any(re.search(r"\b(curl|wget)\b", run) for run in final.all("RUN")):
        found.append("the final stage downloads something")
    if any(re.search(r"\bapt-get install\b", run) for run in final.all("RUN")):
        found.append("the final stage installs system packages")
    if not any(kw == "CMD" and "mitwirkung" in args for kw, args in final.instructions):
        found.append("the image's command is not `mitwirkung …`")
    return found


# --- the real files ----------------------------------------------------------------------------------


def test_the_dockerfile_keeps_every_rule():
    assert problems((ROOT / "Dockerfile").read_text()) == []


def test_the_final_stage_uses_the_pinned_python_base_and_copies_only_the_environment():
    args, stages = parse((ROOT / "Dockerfile").read_text())
    assert EXACT_PYTHON.match(args["PYTHON_IMAGE"]), args
    final = stages[-1]
    assert final.image == args["PYTHON_IMAGE"]
    # Sources and build tools stay in the build stage: the final one gets the finished environment.
    assert all(copy.startswith("--from=") for copy in final.all("COPY")), final.all("COPY")


BROKEN = {
    "single stage": "FROM python:3.11.13-slim-bookworm\nUSER 10001\nHEALTHCHECK CMD x /healthz\n",
    "floating tag": "FROM python:3.11-slim AS b\nRUN true\nFROM python:3.11-slim\nUSER 10001\n",
    "latest": "FROM python:latest AS b\nFROM python:3.11.13-slim-bookworm\n",
    "root": "FROM python:3.11.13-slim-bookworm AS b\nFROM python:3.11.13-slim-bookworm\nUSER root\n",
    "named user": "FROM python:3.11.13-slim-bookworm AS b\nFROM python:3.11.13-slim-bookworm\nUSER app\n",
    "uid 0": "FROM python:3.11.13-slim-bookworm AS b\nFROM python:3.11.13-slim-bookworm\nUSER 0:0\n",
    "no healthcheck": (
        "FROM python:3.11.13-slim-bookworm AS b\nFROM python:3.11.13-slim-bookworm\n"
        "RUN useradd --uid 10001 x\nUSER 10001\n"
    ),
    "unlocked install": (
        "FROM python:3.11.13-slim-bookworm AS b\nCOPY requirements.lock /b/\n"
        "RUN pip install --require-hashes -r /b/requirements.lock && pip install .\n"
        "FROM python:3.11.13-slim-bookworm\n"
    ),
    "lock without hashes": (
        "FROM python:3.11.13-slim-bookworm AS b\nCOPY requirements.lock /b/\n"
        "RUN pip install -r /b/requirements.lock\nFROM python:3.11.13-slim-bookworm\n"
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_dockerfile_is_refused(case):
    found = problems(BROKEN[case])
    expected = {
        "single stage": "not multi-stage",
        "floating tag": "not pinned",
        "latest": "not pinned",
        "root": "not a numeric non-root",
        "named user": "not a numeric non-root",
        "uid 0": "not a numeric non-root",
        "no healthcheck": "no HEALTHCHECK",
        "unlocked install": "outside the lock",
        "lock without hashes": "--require-hashes",
    }[case]
    assert any(expected in problem for problem in found), found


def test_the_real_dockerfile_with_one_rule_broken_is_refused():
    text = (ROOT / "Dockerfile").read_text()
    assert problems(text.replace("USER 10001:10001", "USER root"))
    assert problems(text.replace("3.11.13-slim-bookworm", "3.11-slim"))
    assert problems(re.sub(r"HEALTHCHECK[^\n]*\\\n[^\n]*\n", "", text))
    assert problems(
        text.replace("--require-hashes --no-deps --only-binary=:all: -r /build/requirements.lock", ".")
    )


# --- the lock --------------------------------------------------------------------------------------


def _lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile lock with hashes."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", line)
        if pinned:
            name = canonicalize_name(pinned.group(1))
            entries[name] = (pinned.group(2), [])
        for digest in re.findall(r"--hash=sha256:([0-9a-f]{64})", line):
            entries[name][1].append(digest)
    return entries


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _runtime_closure() -> set[str]:
    """The names of the runtime dependencies and theirs (with the extras asked for), from what is
    installed here, markers evaluated for the image (Linux, CPython 3.11)."""
    environment = {**default_environment(), "sys_platform": "linux", "platform_system": "Linux"}
    seen: set[str] = set()
    todo = [(Requirement(r), "") for r in _pyproject()["project"]["dependencies"]]
    while todo:
        requirement, extra = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        for raw in metadata.requires(name) or []:
            child = Requirement(raw)
            for wanted in requirement.extras or {""}:
                todo.append((child, wanted))
    return {key.partition("[")[0] for key in seen}


def test_every_locked_package_has_a_pin_and_hashes():
    lock = _lock(LOCK)
    assert len(lock) > 20
    assert all(hashes for _, hashes in lock.values()), [n for n, (_, h) in lock.items() if not h]
    build = _lock(BUILD_LOCK)
    assert set(build) == {"setuptools"} and all(hashes for _, hashes in build.values())


def test_the_lock_satisfies_every_runtime_dependency_of_pyproject():
    lock = _lock(LOCK)
    for raw in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(raw)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is a runtime dependency but not in requirements.lock"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (raw, lock[name][0])
    for raw in _pyproject()["build-system"]["requires"]:
        requirement = Requirement(raw)
        build = _lock(BUILD_LOCK)
        assert requirement.specifier.contains(build[canonicalize_name(requirement.name)][0])


def test_the_lock_holds_the_whole_runtime_closure_and_nothing_for_development_only():
    lock = set(_lock(LOCK))
    closure = _runtime_closure()
    missing = closure - lock
    assert not missing, f"in the runtime closure but not locked (re-run pip-compile): {sorted(missing)}"
    extras = _pyproject()["project"]["optional-dependencies"]
    development = {
        canonicalize_name(Requirement(raw).name)
        for group in extras.values()
        for raw in group
        if not raw.startswith("mitwirkung")
    }
    assert {"pytest", "testcontainers", "selenium"} <= development
    assert not (lock & development) - closure, sorted((lock & development) - closure)
    assert not {"pytest", "testcontainers", "selenium", "schemathesis", "mypy"} & lock


# --- .dockerignore ---------------------------------------------------------------------------------


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (.dockerignore: the last matching pattern wins,
    ``!`` lets in again, a pattern matching a directory covers what is below it)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = fnmatch.translate(pattern).replace(".*.*", ".*")
        if pattern.startswith("**/"):
            regex = "(.*/)?" + fnmatch.translate(pattern[3:])
        if any(re.match(regex, candidate) for candidate in candidates):
            result = not negate
    return result


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "var/mail/20261204-000001.eml",
        "shared/__pycache__/cli.cpython-311.pyc",
        "services/registration/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        "tests/conftest.py",
        "bench/system_burst.py",
        "docs/resident-page-status-ar.png",
        "infra/.env",
        "mitwirkung.egg-info/PKG-INFO",
    ],
)
def test_the_build_context_leaves_out(path):
    assert ignored(path, _dockerignore())


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "requirements.lock",
        "requirements-build.lock",
        "shared/cli.py",
        "shared/locale/de/LC_MESSAGES/messages.po",
        "services/registration/migrations/versions/0001_initial_schema.py",
        "services/notification/templates/_layout.html.j2",
    ],
)
def test_the_build_context_keeps_what_the_image_is_built_from(path):
    assert not ignored(path, _dockerignore())


def test_every_path_the_dockerfile_copies_is_in_the_build_context():
    _, stages = parse((ROOT / "Dockerfile").read_text())
    sources = [
        word
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.startswith("--from=")
        for word in copy.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source, _dockerignore()), source


def test_the_ignore_matcher_is_not_vacuous():
    assert ignored(".venv/x", [".venv/"]) and not ignored("shared/x.py", [".venv/"])
    assert not ignored("shared/x.py", ["*", "!shared/"]) and ignored("README.md", ["*", "!shared/"])
    assert ignored("shared/__pycache__/a.pyc", ["*", "!shared/", "**/__pycache__/"])

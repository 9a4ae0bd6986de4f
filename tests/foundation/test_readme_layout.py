"""The README's layout (section "Architecture": the table of files and the paragraph after it) against the
files: every file it names exists, and every module and folder of ``services/<service>/`` and ``shared/``
is named there, so that adding a module without documenting it fails here."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("registration", "notification", "proposals")
# The console (staff pages) has no column in the table (no events, no handlers): its modules are named in
# the paragraph after it, like every service's extra modules.
PARAGRAPH_SERVICES = (*SERVICES, "console")
TABLE_HEADER = "| file | holds | registration | notification | proposals |"
NOT_DOCUMENTED = {"__init__.py", "__pycache__"}
NAME = re.compile(r"`([^`]+)`")


def _section() -> list[str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index("## Architecture")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    return lines[start + 1 : end]


def _is_path(name: str) -> bool:
    return name.endswith("/") or bool(re.fullmatch(r"[\w.<>/-]+\.\w+", name)) or name == "Dockerfile"


def _table(lines: list[str]) -> tuple[dict[str, set[str]], dict[str, set[str]], int]:
    """(named per service, marked absent with "—" per service, index of the line after the table)."""
    named: dict[str, set[str]] = {s: set() for s in SERVICES}
    absent: dict[str, set[str]] = {s: set() for s in SERVICES}
    i = lines.index(TABLE_HEADER) + 2
    while i < len(lines) and lines[i].startswith("|"):
        cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        files = [n for n in NAME.findall(cells[0]) if _is_path(n)]
        for service, cell in zip(SERVICES, cells[2:5], strict=True):
            (absent if cell == "—" else named)[service].update(files)
        i += 1
    return named, absent, i


def _paragraph(lines: list[str], start: int) -> str:
    while not lines[start].strip():
        start += 1
    end = start
    while end < len(lines) and lines[end].strip():
        end += 1
    return " ".join(lines[start:end])


def documented() -> tuple[dict[str, set[str]], dict[str, set[str]], set[str]]:
    """(names per owner: each service and "shared", names the table marks absent, paths from the repository's
    root), as the README's layout section says."""
    lines = _section()
    named, absent, after = _table(lines)
    named["shared"] = set()
    named["console"] = set()
    text = _paragraph(lines, after)
    assert text.startswith("Besides:") and "`shared/` holds" in text and "Deployment:" in text, (
        "README, section Architecture: the paragraph after the layout table should start with 'Besides:', "
        "name shared/'s modules after '`shared/` holds' and end with 'Deployment:'"
    )
    services_part, rest = text.split("`shared/` holds", 1)
    shared_part, deployment_part = rest.split("Deployment:", 1)

    # "registration and proposals `pages.py` …; notification `dispatcher.py` …": a name belongs to the
    # services named last before it.
    owners: list[str] = []
    last_was_name = False
    for token in re.finditer(r"`([^`]+)`|\b(registration|notification|proposals|console)\b", services_part):
        name, service = token.groups()
        if service:
            owners = [*owners, service] if not last_was_name else [service]
            last_was_name = False
        elif _is_path(name):
            if "<service>" in name:
                root_paths = {name.replace("<service>", s) for s in PARAGRAPH_SERVICES}
                named.setdefault("root", set()).update(root_paths)
            else:
                for owner in owners:
                    named[owner].add(name)
            last_was_name = True
    named["shared"].update(n for n in NAME.findall(shared_part) if _is_path(n))

    # Deployment paths are relative to the repository, or to the folder named just before them.
    root: set[str] = set(named.pop("root", set()))
    folder = ""
    for name in NAME.findall(deployment_part):
        if not _is_path(name):
            continue
        if (ROOT / name).exists() or not folder:
            root.add(name)
            folder = name if name.endswith("/") else folder
        else:
            root.add(folder + name)
    return named, absent, root


def _exists(base: Path, name: str) -> bool:
    path = base / name.rstrip("/")
    return path.is_dir() if name.endswith("/") else path.is_file()


def _on_disk(base: Path) -> set[str]:
    return {
        p.name + ("/" if p.is_dir() else "")
        for p in base.iterdir()
        if p.name not in NOT_DOCUMENTED and (p.is_dir() or p.suffix == ".py")
    }


def test_every_file_the_readme_layout_names_exists_and_every_module_is_named() -> None:
    named, absent, root = documented()
    problems: list[str] = []
    for owner, names in sorted(named.items()):
        base = ROOT / ("shared" if owner == "shared" else f"services/{owner}")
        missing = sorted(n for n in names if not _exists(base, n))
        if missing:
            problems.append(f"named in the README but not in {base.relative_to(ROOT)}/: {', '.join(missing)}")
        undocumented = sorted(_on_disk(base) - names - absent.get(owner, set()))
        if undocumented:
            problems.append(
                f"in {base.relative_to(ROOT)}/ but not named in the README's layout: {', '.join(undocumented)}"
            )
    for owner, names in sorted(absent.items()):
        there = sorted(n for n in names if _exists(ROOT / f"services/{owner}", n))
        if there:
            problems.append(f"marked '—' for {owner} in the README's table but present: {', '.join(there)}")
    missing_root = sorted(n for n in root if not _exists(ROOT, n))
    if missing_root:
        problems.append(f"named in the README but not in the repository: {', '.join(missing_root)}")
    assert not problems, "README, section Architecture, layout:\n  " + "\n  ".join(problems)

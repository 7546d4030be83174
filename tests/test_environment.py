"""environment.yml (conda, Binder, JupyterHub) installs exactly the set that pyproject.toml pins.

``make lab`` installs ``pyproject.toml``'s dependencies and ``test`` extra into a venv; a conda
user must get the same versions, so every pin appears in both files with the same version.
"""

import pathlib
import re
import tomllib

import pytest
import yaml  # PyYAML: a dependency of jupyterlab's server (jupyter-events), so always installed

ROOT = pathlib.Path(__file__).resolve().parent.parent
PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+!-]*)")


def normalized(name: str) -> str:
    """The package name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str], source: str) -> dict[str, str]:
    """``{name: version}`` of ``name==version`` requirements; anything looser is an error."""
    found = {}
    for requirement in requirements:
        match = PIN.fullmatch(requirement.strip())
        assert match, f"{source}: {requirement!r} is not pinned as name==version"
        name = normalized(match[1])
        assert name not in found, f"{source}: {name} is listed twice"
        found[name] = match[2]
    return found


@pytest.fixture(scope="module")
def project():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def conda_dependencies():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert environment["name"] == "vaekit"
    return environment["dependencies"]


def pip_section(conda_dependencies) -> list[str]:
    sections = [d["pip"] for d in conda_dependencies if isinstance(d, dict)]
    assert len(sections) == 1, "environment.yml has one pip section"
    return sections[0]


def test_pyproject_pins_every_requirement_exactly(project):
    pins(project["dependencies"], "pyproject.toml dependencies")
    for extra, requirements in project["optional-dependencies"].items():
        pins(requirements, f"pyproject.toml extra {extra!r}")


def test_environment_pins_what_pyproject_pins_for_the_kit_and_its_tests(project, conda_dependencies):
    wanted = pins(project["dependencies"], "pyproject.toml") | pins(
        project["optional-dependencies"]["test"], "pyproject.toml extra 'test'"
    )
    local = [r for r in pip_section(conda_dependencies) if r.startswith("-e ")]
    listed = pins([r for r in pip_section(conda_dependencies) if r not in local], "environment.yml")
    differences = {
        name: (wanted.get(name, "absent"), listed.get(name, "absent"))
        for name in wanted.keys() | listed.keys()
        if wanted.get(name) != listed.get(name)
    }
    assert not differences, f"pyproject.toml vs environment.yml versions differ: {differences}"


def test_environment_installs_the_kit_itself_and_nothing_else_from_conda(conda_dependencies):
    assert "-e ." in pip_section(conda_dependencies), "the pip section installs the kit with `-e .`"
    conda_names = sorted(re.split(r"[=<>! ]", d)[0] for d in conda_dependencies if isinstance(d, str))
    assert conda_names == ["pip", "python"], "conda provides Python and pip only; pip installs the pinned set"


def test_environment_python_satisfies_requires_python(project, conda_dependencies):
    (python,) = [d for d in conda_dependencies if isinstance(d, str) and d.startswith("python")]
    version = re.fullmatch(r"python=(\d+)\.(\d+)", python)
    minimum = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert version and minimum, f"unexpected forms {python!r}, {project['requires-python']!r}"
    assert tuple(map(int, version.groups())) >= tuple(map(int, minimum.groups()))

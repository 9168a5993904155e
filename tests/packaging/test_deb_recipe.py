"""The .deb recipe without building it (that is `make deb` / packaging/ci/deb_check.sh): the locks pin what
pyproject asks for, with hashes; the conffile is the default with the service's paths; the nfpm recipe and
the maintainer scripts agree with the unit; the scripts are valid shell."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mediqa.agent.config import load_config

tomllib = pytest.importorskip("tomllib", reason="tomllib is stdlib from Python 3.11")

REPO = Path(__file__).resolve().parents[2]
PKG = REPO / "packaging"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def read_lock(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) from a `uv pip compile --generate-hashes` file."""
    pins: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if match := _PIN.match(line):
            current = canonicalize_name(match.group(1))
            pins[current] = (match.group(2), [])
        elif current and (h := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            pins[current][1].append(h.group(1))
    return pins


def requirement_names(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [canonicalize_name(Requirement(line).name) for line in lines if line]


def test_runtime_lock_pins_every_runtime_dependency_with_hashes() -> None:
    pins = read_lock(PKG / "requirements-runtime.lock")
    for spec in PYPROJECT["project"]["dependencies"]:
        req = Requirement(spec)
        name: str = canonicalize_name(req.name)
        assert name in pins, f"{name} (pyproject) is not in the runtime lock: run make lock"
        version = pins[name][0]
        assert req.specifier.contains(version, prereleases=True), \
            f"locked {name}=={version} does not satisfy pyproject's {spec!r}: run make lock"
    for extra in requirement_names(PKG / "requirements-runtime.in"):
        assert extra in pins, f"{extra} (requirements-runtime.in) is not in the runtime lock: run make lock"
    for pinned, (locked, hashes) in pins.items():
        assert hashes, f"{pinned}=={locked} has no sha256 hash"


def test_runtime_lock_carries_no_training_or_gpu_stack() -> None:
    pins = read_lock(PKG / "requirements-runtime.lock")
    extras = PYPROJECT["project"]["optional-dependencies"]
    heavy = {canonicalize_name(Requirement(s).name) for group in ("train", "gpu", "dev") for s in extras[group]}
    runtime = {canonicalize_name(Requirement(s).name) for s in PYPROJECT["project"]["dependencies"]}
    assert not (heavy - runtime) & set(pins), "a training/GPU/dev dependency reached the runtime lock"
    assert "torch" not in pins


def test_windows_lock_runs_the_same_versions() -> None:
    linux = read_lock(PKG / "requirements-runtime.lock")
    windows = read_lock(PKG / "requirements-runtime-windows.lock")
    assert set(linux) <= set(windows), "regenerate both locks together: make lock"
    for name, (version, _) in linux.items():
        assert windows[name][0] == version, f"{name}: Linux {version}, Windows {windows[name][0]}: make lock"
    assert all(hashes for _, hashes in windows.values())


def test_build_lock_pins_the_tools() -> None:
    pins = read_lock(PKG / "requirements-build.lock")
    for name in requirement_names(PKG / "requirements-build.in"):
        assert name in pins and pins[name][1], f"{name} is not pinned with hashes in requirements-build.lock"


def _make_conffile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_conffile", PKG / "deb" / "make_conffile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conffile_is_the_default_with_service_paths(tmp_path: Path) -> None:
    default = (REPO / "configs" / "agent.yaml").read_text(encoding="utf-8")
    text = _make_conffile().render(default)
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    assert config.state_dir == "/var/lib/mediqa"
    assert config.watch.folder == ""
    kept = set(text.splitlines())
    lost = [line for line in default.splitlines() if line not in kept and not line.startswith("state_dir:")]
    assert not lost, f"the conffile dropped lines of the default: {lost}"
    assert "/usr/share/doc/mediqa-edge/install.md" in text


def test_conffile_refuses_a_default_whose_layout_changed() -> None:
    render = _make_conffile().render
    with pytest.raises(ValueError):
        render("watch:\n  folder: \"\"\n")  # no state_dir line
    with pytest.raises(ValueError):
        render("watch:\n  folder: /data/export\nstate_dir: x\n")  # a default must not name a folder


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load((PKG / "deb" / "nfpm.yaml").read_text(encoding="utf-8"))


def test_recipe_contents_match_the_unit_and_the_layout(recipe: dict) -> None:
    by_dst = {entry["dst"]: entry for entry in recipe["contents"]}
    assert by_dst["/etc/mediqa/agent.yaml"]["type"] == "config|noreplace"
    assert by_dst["/usr/bin/mediqa"] == {"src": "/opt/mediqa/bin/mediqa", "dst": "/usr/bin/mediqa", "type": "symlink"}
    assert by_dst["/opt/mediqa"]["type"] == "tree"
    unit = by_dst["/usr/lib/systemd/system/mediqa-agent.service"]
    assert (REPO / unit["src"]).is_file()
    assert "ExecStart=/opt/mediqa/bin/mediqa watch --config /etc/mediqa/agent.yaml" in (REPO / unit["src"]).read_text()
    for entry in recipe["contents"]:
        if "${" in entry["src"]:
            assert entry.get("expand") is True, f"{entry['dst']}: nfpm expands variables in contents only with expand"
    assert recipe["license"] == "Apache-2.0"
    assert any(dep.startswith("${MEDIQA_DEB_PYTHON}") for dep in recipe["depends"])


def test_maintainer_scripts_keep_state_until_purge(recipe: dict) -> None:
    scripts = {name: (REPO / path).read_text(encoding="utf-8") for name, path in recipe["scripts"].items()}
    assert set(scripts) == {"postinstall", "preremove", "postremove"}
    for name, text in scripts.items():
        assert text.startswith("#!/bin/sh\n") and "\nset -e\n" in text, name
    assert "/var/lib/mediqa" not in scripts["preremove"]
    assert "rm -rf /var/lib/mediqa" not in scripts["postinstall"]
    purge = scripts["postremove"].split("purge)", 1)[1]
    assert "rm -rf /var/lib/mediqa" in purge  # only on purge
    assert "rm -rf /var/lib/mediqa" not in scripts["postremove"].split("purge)", 1)[0]
    assert "deb-systemd-invoke stop" in scripts["preremove"]
    assert "install -d -m 0700 -o mediqa -g mediqa" in scripts["postinstall"]


SHELL_SCRIPTS = {
    "sh": ["deb/postinst", "deb/prerm", "deb/postrm"],
    "bash": ["deb/build.sh", "deb/tools.sh", "lock.sh", "ci/deb_check.sh"],
}


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")
@pytest.mark.parametrize(("shell", "script"), [(sh, s) for sh, names in SHELL_SCRIPTS.items() for s in names])
def test_shell_scripts_parse(shell: str, script: str) -> None:
    interpreter = shutil.which(shell)
    if interpreter is None:
        pytest.skip(f"{shell} not installed")
    proc = subprocess.run([interpreter, "-n", str(PKG / script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    checker = shutil.which("shellcheck")
    if checker:
        proc = subprocess.run([checker, "-S", "error", "-s", shell, str(PKG / script)], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout


def test_license_and_make_targets() -> None:
    assert (REPO / "LICENSE").read_text(encoding="utf-8").lstrip().startswith("Apache License")
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert "LICENSE" in PYPROJECT["project"]["license-files"]
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^deb:", makefile, re.MULTILINE) and re.search(r"^lock:", makefile, re.MULTILINE)


def test_the_package_ships_every_doc_the_agent_names() -> None:
    """An operator told "see docs/dicom.md" by a message or the conffile finds it in /usr/share/doc."""
    script = (PKG / "deb" / "build.sh").read_text(encoding="utf-8")
    copied = next(line for line in script.splitlines() if line.startswith("cp docs/"))
    shipped = {p.name for glob in re.findall(r"docs/\S+", copied) for p in REPO.glob(glob)}
    named = set()
    for folder in ("agent", "mediqa", "engines", "configs", "packaging"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".yaml", ".service", ".xml", ".sh") and path.is_file():
                named |= set(re.findall(r"docs/([a-z_-]+\.md)", path.read_text(encoding="utf-8", errors="replace")))
    assert "dicom.md" in named and named <= shipped, f"named but not shipped: {sorted(named - shipped)}"

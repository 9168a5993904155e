"""``mediqa backfill`` without the scale extra says in one line what to install; user errors are one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# A Python where the named top-level modules cannot be imported, as on an install without the extra.
WITHOUT = """
import sys
from importlib.abc import MetaPathFinder
class Without(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Without())
import importlib.util
_find = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if name in {blocked!r} else _find(name, package)
from mediqa.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _run_without(blocked: set[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT.format(blocked=blocked), *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    from mediqa.agent.samples import write_phantom_ct

    write_phantom_ct(tmp_path / "tree" / "s1", noise_hu=5.0, seed=0, slices=3, size=96)
    return tmp_path / "tree"


@pytest.mark.slow
def test_ray_flag_without_ray_says_how_to_install(tree: Path, tmp_path: Path):
    done = _run_without({"ray"}, "backfill", str(tree), "--out", str(tmp_path / "out"), "--ray", "local")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mediqa backfill: error: mediqa backfill --ray needs ray, which is not installed: "
        "pip install 'mediqa-edge[scale]'"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_without_pyarrow_the_local_pool_says_how_to_install(tree: Path, tmp_path: Path):
    done = _run_without({"pyarrow"}, "backfill", str(tree), "--out", str(tmp_path / "out"))
    assert done.returncode == 1
    assert "needs pyarrow, which is not installed: pip install 'mediqa-edge[scale]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_local_path_does_not_import_ray(tree: Path, tmp_path: Path):
    """Without --ray nothing imports Ray: the driver runs with a blocker that raises on any import of it, and
    the modules the pool's workers load leave it out of sys.modules."""
    done = _run_without({"ray"}, "backfill", str(tree), "--out", str(tmp_path / "out"), "--workers", "1",
                        "--no-summary", "--set", "scoring.scorer=classical")
    assert done.returncode == 0, done.stderr
    assert "1 series found" in done.stdout
    probe = ("import sys; import mediqa.backfill.local, mediqa.backfill.worker, mediqa.backfill.run, "
             "mediqa.backfill.summary; print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip() == "False"


def test_out_inside_the_archive_is_refused(tree: Path):
    done = _run_without(set(), "backfill", str(tree), "--out", str(tree / "results"))
    assert done.returncode == 1 and "is inside" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tree / "results").exists()


@pytest.mark.slow
def test_a_second_run_on_the_same_out_is_refused_in_one_line(tree: Path, tmp_path: Path):
    from mediqa.backfill.store import ResultsDir

    out = tmp_path / "out"
    with ResultsDir(out).lock():  # a run in progress
        done = _run_without(set(), "backfill", str(tree), "--out", str(out))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"mediqa backfill: error: another mediqa backfill is writing to {out.resolve()} "
        "(wait for it to finish, or give this run another --out)"]
    assert not (out / "results").exists()

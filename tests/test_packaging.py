"""The package as a user installs it: bundled search spaces in a non-editable install,
and the repository's top-level ``search_spaces/`` view of them."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_search_config

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "growsearch" / "search_spaces"


def test_top_level_search_spaces_show_each_bundled_space_once():
    names = sorted(p.name for p in BUNDLED.glob("*.yaml"))
    assert {"cnn.yaml", "gpt.yaml", "mlp.yaml", "hf_gpt2.yaml", "hf_llama.yaml", "hf_bert.yaml"} <= set(names)
    top = ROOT / "search_spaces"
    assert sorted(p.name for p in top.iterdir()) == names  # nothing else, no nested folder
    for name in names:
        view = top / name
        assert view.exists(), f"search_spaces/{name} points nowhere"
        # one copy of each file: the top-level entry is a link to the packaged file
        assert view.is_symlink() and view.resolve() == (BUNDLED / name).resolve()


def test_non_editable_install_finds_the_bundled_spaces(tmp_path):
    """Build a wheel, install it (no editable link to this checkout), and run a search that
    names its space as ``mlp.yaml`` from an empty directory."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(ROOT / "pyproject.toml", src)
    shutil.copy(ROOT / "README.md", src)
    shutil.copytree(ROOT / "growsearch", src / "growsearch", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "whl"),
                    str(src)], check=True, timeout=300)
    wheel = next((tmp_path / "whl").glob("growsearch-*.whl"))
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    installed = sorted(p.name for p in (target / "growsearch" / "search_spaces").glob("*.yaml"))
    assert installed == sorted(p.name for p in BUNDLED.glob("*.yaml"))
    cwd = tmp_path / "user"
    cwd.mkdir()
    (cwd / "tiny.yaml").write_text(yaml.safe_dump(tiny_search_config(candidates=2, promotion={"policy": "top_k",
                                                                                              "k": 1})))
    env = {**os.environ, "PYTHONPATH": str(target)}  # the installed copy, its dependencies from this Python
    where = subprocess.run([sys.executable, "-c", "import growsearch; print(growsearch.__file__)"], cwd=cwd,
                           env=env, capture_output=True, text=True, check=True, timeout=120).stdout
    assert Path(where.strip()).is_relative_to(target)
    run = subprocess.run([sys.executable, "-m", "growsearch.cli", "run", "tiny.yaml", "--out", "out"], cwd=cwd,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (cwd / "out" / "leaderboard.csv").exists()

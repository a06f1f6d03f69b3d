"""The package builds and installs offline (no setuptools download)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _backend():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "_build"))
    try:
        import backend
    finally:
        sys.path.pop(0)
    return backend


def test_wheel_holds_the_package_and_imports(tmp_path: Path) -> None:
    backend = _backend()
    assert backend.get_requires_for_build_wheel() == []
    name = backend.build_wheel(str(tmp_path))
    assert name == "recoveryd-0.1.0-py3-none-any.whl"
    wheel = tmp_path / name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        record = z.read("recoveryd-0.1.0.dist-info/RECORD").decode()
    for mod in ("__init__", "agent", "client", "errors", "asyncio", "_http", "config"):
        assert f"recoveryd/{mod}.py" in names
    assert "recoveryd/py.typed" in names
    assert all(n in record for n in names)
    # A pure-Python wheel imports from the zip itself: no other dependency.
    out = subprocess.run(
        [sys.executable, "-c",
         "import recoveryd.agent, recoveryd.asyncio; print(recoveryd.__version__)"],
        env={"PYTHONPATH": str(wheel), "PATH": os.environ.get("PATH", "")},
        cwd=str(tmp_path), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.1.0"
    sdist = backend.build_sdist(str(tmp_path))
    assert (tmp_path / sdist).exists()


def test_pip_install_offline(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    pip = venv / "bin" / "pip"
    if made.returncode != 0 or not pip.exists():
        pytest.skip("no venv with pip here (Debian's python3-venv)")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([str(pip), "install", "-q", "--no-index", str(ROOT)], env=env, check=True,
                   cwd=str(tmp_path))
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import recoveryd, recoveryd.client as c; print(recoveryd.__file__)"],
                         capture_output=True, text=True, check=True, cwd=str(tmp_path))
    assert str(venv) in out.stdout

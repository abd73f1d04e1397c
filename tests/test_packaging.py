"""The wheel: built from the checkout, installed elsewhere, it serves the pages."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from .live_server import free_port

ROOT = Path(__file__).resolve().parent.parent
PIP = [sys.executable, "-m", "pip"]


def build_wheel(directory: Path) -> Path:
    """The project's wheel, as `pip wheel .` builds it."""
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(directory), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = directory.glob("quart_app-*.whl")
    return wheel


def fresh_venv(directory: Path) -> Path:
    """A new virtualenv holding only the wheel; the dependencies are read from ours.

    Installing the dependencies again would take minutes and need the package index;
    a .pth line puts our virtualenv's site-packages after the new one's, where its .pth
    files (our editable install among them) are not run.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True)
    python = directory / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.server
def test_the_installed_wheel_serves_the_pages(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    assert "quart_app/templates/login.html" in names
    assert "quart_app/templates/base.html" in names
    assert "quart_app/templates/mail/password_reset.txt" in names
    assert "quart_app/templates/mail/password_reset.html" in names

    python = fresh_venv(tmp_path / "venv")
    subprocess.run(
        [
            *PIP,
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import quart_app; print(quart_app.__file__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
        env={"QUART_INSTANCE_PATH": str(tmp_path / "instance"), "PATH": "/usr/bin:/bin"},
    ).stdout
    assert str(tmp_path / "venv") in where
    assert str(ROOT) not in where

    port = free_port()
    log = (tmp_path / "hypercorn.log").open("wb")
    server = subprocess.Popen(
        [str(python), "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "quart_app:app"],
        cwd=elsewhere,
        env={
            "QUART_INSTANCE_PATH": str(tmp_path / "instance"),
            "PATH": "/usr/bin:/bin",
            "PYTHONUNBUFFERED": "1",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        response = wait_for_page(f"http://127.0.0.1:{port}/login/", server)
        assert response.status_code == 200, (tmp_path / "hypercorn.log").read_text()
        assert 'name="password"' in response.text
    finally:
        server.terminate()
        server.wait(10)
        log.close()


def wait_for_page(url: str, server: subprocess.Popen[bytes]) -> httpx.Response:
    """The first answer of the server at url; fail if it exits or never answers."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, "hypercorn exited"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"nothing answered at {url}")

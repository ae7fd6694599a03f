"""What `pip install .` gives a user: a wheel with the studio's page, installed into a fresh venv, serving it.

Offline and without a second copy of the dependencies: the wheel is built with
this venv's setuptools (no build isolation, so nothing is downloaded) and
installed with --no-deps into a new venv whose .pth file points at this venv's
site-packages for torch & co. Only the package itself comes from the wheel
(the test checks that), so a file the wheel lacks is missing there.
"""

import os
import re
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from softprompt.testing import save_tiny

ROOT = Path(__file__).resolve().parents[1]
STATIC = sorted(p.name for p in (ROOT / "src" / "softprompt" / "studio" / "static").iterdir())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("softprompt-*.whl")
    return built


def test_the_wheel_holds_the_studio_page(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert STATIC and {f"softprompt/studio/static/{name}" for name in STATIC} <= set(names)
    assert "softprompt/cli.py" in names and not any(n.startswith(("tests/", "src/")) for n in names)


def test_a_fresh_venv_with_the_wheel_serves_the_studio_page(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies come from this venv, after the fresh venv's own packages.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = subprocess.run(
        [str(python), "-c", "import softprompt; print(softprompt.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the source tree

    model = save_tiny("llama", tmp_path / "model")
    studio = subprocess.Popen(
        [str(venv / "bin" / "softprompt"), "studio", "--model", str(model), "--data-dir", str(tmp_path / "data")]
        + ["--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        url = None
        for line in studio.stdout:  # the studio prints its address once it listens
            if found := re.search(r"(http://\S+/studio/)", line):
                url = found.group(1)
                break
        assert url, studio.stderr.read()[-3000:] if studio.poll() is not None else "no address printed"
        page = urllib.request.urlopen(url, timeout=60).read().decode()
        assert "<html" in page.lower()
        for name in STATIC:
            assert urllib.request.urlopen(f"{url}static/{name}", timeout=60).status == 200, name
    finally:
        studio.send_signal(signal.SIGINT)
        try:
            studio.wait(timeout=60)
        except subprocess.TimeoutExpired:
            studio.kill()
            studio.wait()

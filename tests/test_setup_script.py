"""scripts/setup.sh refuses up front, with one clear line, when the disk cannot hold the install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_refuses_when_the_disk_is_too_small(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    for name in ("setup.sh", "free-space.sh"):
        shutil.copy(REPO / "scripts" / name, tmp_path / "scripts" / name)
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    env = {**os.environ, "MVDATA_MIN_FREE_GB": str(10**7)}  # more than any disk has
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert f"error: {tmp_path} has" in proc.stderr
    assert "GB free" in proc.stderr and "MVDATA_MIN_FREE_GB" in proc.stderr
    assert not (tmp_path / ".venv").exists()  # nothing half-made left behind


def test_test_script_refuses_when_the_temp_dir_is_too_small(tmp_path: Path) -> None:
    """The same check in front of pytest: the suite's checkpoints need room in TMPDIR."""
    script = tmp_path / "check.sh"
    script.write_text(
        f"set -euo pipefail\nsource {REPO / 'scripts' / 'free-space.sh'}\n"
        + "".join(
            line + "\n"
            for line in (REPO / "scripts" / "test.sh").read_text().splitlines()
            if line.startswith(("require_free_gb", "  MVDATA_TEST_MIN_TMP_GB"))
        )
        + "echo reached pytest\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "MVDATA_TEST_MIN_TMP_GB": str(10**7)}
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and "reached pytest" not in proc.stdout
    assert f"error: {tmp_path} has" in proc.stderr
    assert "TMPDIR" in proc.stderr and "MVDATA_TEST_MIN_TMP_GB" in proc.stderr
    env["MVDATA_TEST_MIN_TMP_GB"] = "0"
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "reached pytest" in proc.stdout

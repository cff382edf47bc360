"""scripts/setup.sh refuses up front, with one clear line, when the disk cannot hold the install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_setup_refuses_when_the_disk_is_too_small(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
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

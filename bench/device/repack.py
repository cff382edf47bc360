"""Pack DALI and the loaders' wheels into five parts that each fit one device call.

A device call carries at most 64 MiB, the project's working tree (~10.4 MiB) included, so
``dali-for-device.sh``'s 56 MiB parts do not fit beside it. This drops the DALI wheel's
extension modules for Pythons other than 3.12 (14 files, ~13 MiB compressed; the device runs
3.12), rewrites its RECORD to match, tars every wheel into one stream and cuts it into five
equal parts ``.dev1``-``.dev5`` (``split`` does the cutting; ``tarfile``/``zipfile`` the rest).

Run by ``bench/device/prepare.sh`` (from the repository root, after ``dali-for-device.sh`` and
the .devwheels download), or alone::

    python bench/device/repack.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

OTHER_PYTHONS = re.compile(r"cpython-3(?!12)\d+t?-")
PARTS = 5


def strip_dali(src: Path, dst: Path) -> None:
    """Copy the DALI wheel without other Pythons' extension modules, RECORD kept consistent."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if OTHER_PYTHONS.search(info.filename):
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = (
                    "\n".join(ln for ln in lines if not OTHER_PYTHONS.search(ln)) + "\n"
                ).encode()
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)


def main() -> None:
    root = Path.cwd()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dali = work / "nvidia_dali_cuda130-2.4.0-py3-none-manylinux_2_28_x86_64.whl"
        with dali.open("wb") as f:
            for part in sorted(root.glob(".dali[1-4]/dali.part*")):
                f.write(part.read_bytes())
        wheels = work / "wheels"
        wheels.mkdir()
        strip_dali(dali, wheels / dali.name)
        dali.unlink()
        for w in [*root.glob(".dali[4-5]/*.whl"), *root.glob(".devwheels/*.whl")]:
            shutil.copy2(w, wheels / w.name)
        bundle = work / "bundle.tar"
        with tarfile.open(bundle, "w") as tar:
            for w in sorted(wheels.iterdir()):
                tar.add(w, arcname=w.name)
        size = bundle.stat().st_size
        chunk = -(-size // PARTS)
        subprocess.run(
            ["split", "-b", str(chunk), "-d", "-a", "1", str(bundle), str(work / "bundle.part")],
            check=True,
        )
        for n in range(PARTS):
            d = root / f".dev{n + 1}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            shutil.move(work / f"bundle.part{n}", d / f"bundle.part{n}")
        print(f"bundle {size / 2**20:.1f} MiB in {PARTS} parts of {chunk / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

"""bench/device/repack.py: the DALI wheel loses only other Pythons' modules, RECORD agrees."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def _repack_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("repack", REPO / "bench/device/repack.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_strip_dali_keeps_python_312_and_rewrites_record(tmp_path: Path) -> None:
    names = {
        "nvidia/dali/backend_impl.cpython-312-x86_64-linux-gnu.so": b"312",
        "nvidia/dali/backend_impl.cpython-311-x86_64-linux-gnu.so": b"311",
        "nvidia/dali/backend_impl.cpython-314t-x86_64-linux-gnu.so": b"314t",
        "nvidia/dali/libdali.so": b"lib",
    }
    record = "".join(f"{n},sha256=x,3\n" for n in names) + "d.dist-info/RECORD,,\n"
    src, dst = tmp_path / "in.whl", tmp_path / "out.whl"
    with zipfile.ZipFile(src, "w") as z:
        for n, data in names.items():
            z.writestr(n, data)
        z.writestr("d.dist-info/RECORD", record)
    _repack_module().strip_dali(src, dst)
    with zipfile.ZipFile(dst) as z:
        kept = set(z.namelist())
        assert z.testzip() is None
        assert z.read("nvidia/dali/libdali.so") == b"lib"
        new_record = z.read("d.dist-info/RECORD").decode().splitlines()
    assert kept == {
        "nvidia/dali/backend_impl.cpython-312-x86_64-linux-gnu.so",
        "nvidia/dali/libdali.so",
        "d.dist-info/RECORD",
    }
    assert [ln.split(",")[0] for ln in new_record] == [
        "nvidia/dali/backend_impl.cpython-312-x86_64-linux-gnu.so",
        "nvidia/dali/libdali.so",
        "d.dist-info/RECORD",
    ]

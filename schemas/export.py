"""Write (or check) the JSON Schema files: ``python -m schemas.export [--check]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from schemas.models import CONTRACTS, SCHEMA_VERSION

HERE = Path(__file__).parent


def schema_texts() -> dict[str, str]:
    """File name -> JSON text for every contract, as the checked-in files must read."""
    out: dict[str, str] = {}
    major = SCHEMA_VERSION.split(".")[0]
    for name, model in CONTRACTS.items():
        doc = model.model_json_schema()
        doc["$id"] = f"mvdata/{name}.v{major}.json"
        doc["x-schema-version"] = SCHEMA_VERSION
        out[f"{name}.v{major}.json"] = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for fname, text in schema_texts().items():
        path = HERE / fname
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(fname)
        else:
            path.write_text(text)
    if stale:
        print("schema files out of date (run python -m schemas.export):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

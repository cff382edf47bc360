"""Read only the ``json`` members of a shard directory, through the DALI indexes.

A model job needs every sample's metadata once (landmarks for the geometric prior, keys, folds)
without decoding a single image: the ``.idx`` of each shard gives the offset and size of every
member, so this reads the json bytes with one seek each (a 4D clip's tar is mostly images).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mvdata.shards.codecs import decode_json
from mvdata.shards.index import read_index
from mvdata.shards.names import shard_paths
from mvdata.shards.reader import filesystem, list_shards

__all__ = ["iter_sample_jsons"]


def iter_sample_jsons(out_dir: str, *, split: str | None = None) -> Iterator[dict[str, Any]]:
    """Every committed sample's parsed ``json`` member, shard by shard in sorted order.

    ``split`` keeps only shards named ``{split}-NNNNNN``. Raises ``ValueError`` naming the shard
    and key when an index entry points outside its tar or a json member does not parse.
    """
    fs, root = filesystem(out_dir)
    for name in list_shards(out_dir):
        if split is not None and not name.startswith(f"{split}-"):
            continue
        paths = shard_paths(root, name)
        with fs.open(paths["idx"], "rb") as f:
            try:
                index = read_index(f.read())
            except (UnicodeDecodeError, ValueError) as exc:
                raise ValueError(f"{paths['idx']}: not a readable DALI index ({exc})") from exc
        tar_size = fs.size(paths["tar"])
        with fs.open(paths["tar"], "rb") as tar:
            for entries in index:
                json_entries = [e for e in entries if e[0] == "json"]
                if not json_entries:
                    raise ValueError(f"{paths['idx']}: sample {entries[0][3]} has no json member")
                _, offset, size, member = json_entries[0]
                if offset < 0 or size < 0 or offset + size > tar_size:
                    raise ValueError(f"{paths['idx']}: {member} points outside {paths['tar']}")
                tar.seek(offset)
                data = tar.read(size)
                try:
                    yield decode_json(data)
                except ValueError as exc:
                    raise ValueError(f"shard {name} member {member}: {exc}") from exc

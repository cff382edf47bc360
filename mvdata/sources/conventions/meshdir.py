"""A plain mesh folder: no codes; the licence is the user's.

Read by the reader (:mod:`mvdata.sources.meshdir`) and inverted by the synthetic source's native
writer, so each code is spelled once.
"""

from __future__ import annotations

from mvdata.sources.conventions.geometry import file_axes
from mvdata.sources.conventions.status import Convention
from mvdata.sources.conventions.text import final_newline

LICENCE = (
    "Unknown: a user-supplied mesh folder; the user is responsible for the data's terms "
    "(state them with the data before publishing anything derived)."
)


#: What the reader assumes about a plain mesh folder (printed by ``mvdata inspect``).
CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "OBJ texture v",
        "vt v grows up, (0, 0) at the image's lower-left; kept as they are",
        "verified",
        "the OBJ convention (Wavefront; every major tool reads it so)",
    ),
    Convention(
        "VRML texture v",
        "texCoord (0, 0) at the image's lower-left, v up; kept as they are",
        "verified",
        "VRML97 spec (TextureCoordinate)",
    ),
    Convention(
        "PLY texture v",
        "per-vertex s t, texture_u texture_v or u v (or MeshLab's per-corner face texcoord) "
        "with v up; 'comment TextureFile' names the image",
        "guess",
        "PLY defines no texture convention: MeshLab's, which most tools follow",
    ),
    Convention(
        "subject",
        "without a label row, the top-level folder under the root is the person (S01 for "
        "S01/happy/1.obj; 'root' for files at the top)",
        "guess",
        "this reader's choice: splitting one person into two ids would leak identity across "
        "subject-independent folds, merging two only unbalances them",
    ),
    file_axes("the common habit of face-scan exporters; a plain folder states nothing"),
    final_newline(".obj, ASCII .ply and .bnd files"),
)

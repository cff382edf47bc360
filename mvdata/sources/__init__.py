"""Dataset readers, one module a dataset, and their registry.

* :mod:`mvdata.sources.registry`: the :class:`~mvdata.sources.registry.Source` protocol,
  ``get_source`` / ``list_sources`` / ``load_frame``;
* :mod:`mvdata.sources.conventions`: each dataset's code tables (one module each);
* :mod:`mvdata.sources.common`: helpers the readers share;
* :mod:`mvdata.sources.inspect`: what ``mvdata inspect`` shows;
* one reader module per dataset (``bu3dfe``, ``bu4dfe``, ``bosphorus``, ``bp4d``, ``coma``,
  ``facescape``, ``meshdir``, ``synthetic``), registered when first looked up.
"""

from mvdata.sources.registry import (
    ScanResult,
    Source,
    get_source,
    list_sources,
    load_frame,
    register,
    safe_join,
)

__all__ = [
    "ScanResult",
    "Source",
    "get_source",
    "list_sources",
    "load_frame",
    "register",
    "safe_join",
]

"""``mvdata build``: raw dataset -> plan -> shards -> root files.

:mod:`~mvdata.build.config` (settings) · :mod:`~mvdata.build.plan` (folds, global shuffle,
shards) · :mod:`~mvdata.build.clips` (4D frame sampling) · :mod:`~mvdata.build.worker` (one
shard) · :mod:`~mvdata.build.driver` (pool, resume, summary) · :mod:`~mvdata.build.finalize`
(root files). The package imports none of them, so that planning never loads GL.
"""

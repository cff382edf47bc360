"""``mvmodel train``: :mod:`~mvmodel.train.loop` (the run), :mod:`~mvmodel.train.module` (what
DDP wraps), :mod:`~mvmodel.train.data` (shard checks, the prior's table, held-back labels),
:mod:`~mvmodel.train.logs` (JSONL run log), :mod:`~mvmodel.train.plot` (curves)."""

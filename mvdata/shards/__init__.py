"""The shard format and everything that reads or writes it.

:mod:`~mvdata.shards.names` (files, keys, member names) · :mod:`~mvdata.shards.index` (DALI
``.idx``) · :mod:`~mvdata.shards.codecs` (image encoders, json) · :mod:`~mvdata.shards.writer`
(one shard, committed by its stats file) · :mod:`~mvdata.shards.reader` (committed shards, stats,
rows, samples) · :mod:`~mvdata.shards.verify` · :mod:`~mvdata.shards.info` ·
:mod:`~mvdata.shards.card` (dataset card) · :mod:`~mvdata.shards.contact_sheet`.
The package imports none of them: a loader reads names, the index and codecs without ever
loading the writer.
"""

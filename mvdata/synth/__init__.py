"""The synthetic source: the embedded default that needs no licensed data.

:mod:`~mvdata.synth.facemodel` (SFM or the procedural face) · :mod:`~mvdata.synth.texture`
(albedo) · :mod:`~mvdata.synth.generate` (identities, expressions, sequences) ·
:mod:`~mvdata.synth.native` (a dataset's native layout) · :mod:`~mvdata.synth.writer` (the set on
disk, atomically).
"""

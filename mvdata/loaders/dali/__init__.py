"""The NVIDIA DALI backend: :mod:`~mvdata.loaders.dali.graph` (the pipeline graph),
:mod:`~mvdata.loaders.dali.loader` (:class:`~mvdata.loaders.dali.loader.DaliLoader`),
:mod:`~mvdata.loaders.dali.quarantine` (samples masked for an undecodable member). Importing this
package imports no DALI module; the submodules need ``nvidia-dali``.
"""

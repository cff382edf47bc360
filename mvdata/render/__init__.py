"""Headless multiview rendering of face meshes: normalisation, camera rig, renderer.

Pipeline for one mesh (one scan, or one frame of a sequence):

1. :func:`~mvdata.render.normalise.normalise` finds the similarity transform that brings the
   face into the *canonical frame*: ``x' = scale * R @ (x - centre)``. The canonical frame is
   right-handed, +y up, the face looking along +z (towards a frontal camera), +x towards the
   subject's left. One canonical unit is about one millimetre of an average adult face: the
   outer eye-corner distance maps to :data:`~mvdata.render.normalise.CANONICAL_EYE_DISTANCE`
   units, so views are comparable across datasets whatever the scan's size or pose.
2. :class:`~mvdata.render.cameras.CameraRig` places cameras on a sphere of radius ``distance``
   around the canonical origin, looking at it, from (yaw, pitch) pairs in degrees. Positive yaw
   moves the camera towards +x (it sees more of the subject's left cheek); positive pitch moves
   it up.
3. :class:`~mvdata.render.gl.Renderer` uploads the normalised mesh ONCE and draws every view of
   the rig from it, changing only uniforms; all views go into one tall framebuffer that is read
   back once.

Outputs (rgb, metric depth, camera-space normals): see :mod:`mvdata.render.gl`.

GL and processes: the renderer owns a headless EGL context (Mesa llvmpipe on CPU machines,
the NVIDIA EGL driver on GPU machines; same code). A process must never fork after it has
opened a GL context: the child hangs in the driver. Build pools with the ``"spawn"`` start
method, or open no context in the parent, and let EACH worker create its own
:class:`~mvdata.render.gl.Renderer` (a renderer cannot be pickled). A renderer created in a
forked child of a process that had opened a context raises :class:`RuntimeError` instead of hanging.

Determinism: anti-aliasing is off and all arithmetic is fixed, so the same mesh and rig give
byte-identical images on the same machine and driver.

Modules: :mod:`~mvdata.render.normalise` and :mod:`~mvdata.render.cameras` are numpy only;
:mod:`~mvdata.render.gl` holds the GL stack (moderngl). This package imports none of them, so that
planning a build (which needs the camera rig's defaults) never loads GL.
"""

"""The DALI graph of the loader: reader -> decode (``mixed`` on a GPU, CPU otherwise) ->
per-view augmentation -> normalise, for every view of every clip frame (see
:mod:`mvdata.loaders.dali.loader` for the design)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from nvidia.dali import fn as _fn
from nvidia.dali import pipeline_def as _pipeline_def
from nvidia.dali import types as _types

from mvdata.loaders.batch import IMAGENET_MEAN, IMAGENET_STD
from mvdata.loaders.dataset import DatasetInfo

# DALI's stubs type every operator result as ``DataNode | Sequence[DataNode] | None`` and leave
# out the enum members; DALI checks the graph itself when it is built (and the tests build it),
# so mypy sees these modules as Any.
fn: Any = _fn

types: Any = _types

pipeline_def: Any = _pipeline_def

#: What the reader does with a sample missing a member: drop it, or stop.
OnMissing = Literal["skip", "error"]


def _uniform(lo: float, hi: float) -> Any:
    """A per-sample uniform draw, or the constant when the range is empty (augmentation off)."""
    return fn.random.uniform(range=[lo, hi]) if hi > lo else lo


def _view_params(train: bool, max_zoom: float, jitter: float) -> dict[str, Any]:
    """Random per-view augmentation parameters (DataNodes), shared by the view's frames."""
    if not train:
        return {}
    # Crop side s in [1 - max_zoom, 1] of the image, centre shifted by at most what keeps the crop
    # inside the image: a small scale-and-shift; never a flip (left/right views keep their sides).
    s = _uniform(1.0 - max_zoom, 1.0)
    u = fn.random.uniform(range=[-1.0, 1.0], shape=[2])
    centre = 0.5 + u * (1.0 - s) * 0.5
    return {
        "roi_start": centre - s * 0.5,
        "roi_end": centre + s * 0.5,
        "brightness": _uniform(1.0 - jitter, 1.0 + jitter),
        "contrast": _uniform(1.0 - jitter, 1.0 + jitter),
        "saturation": _uniform(1.0 - jitter, 1.0 + jitter),
    }


#: PNG members: (bit depth, colour type) as the IHDR chunk stores them (bytes 24 and 25 of the
#: file): depth maps are 16-bit grey (0), normal maps 8-bit RGB (2).
PNG_HEADER = {1: (16, 0), 3: (8, 2)}


def _stored_shape(decoded: Any, stored: int, channels: int, png: Any = None) -> Any:
    """``decoded`` (HWC) as ``[stored, stored, channels]``: a member of another size or channel
    count fails here, in training too, where the resize would otherwise hide it (and in eval
    the views' stack would fail less clearly). Metadata only: no copy.

    ``png``: the encoded PNG member. Its IHDR bit depth and colour type must be what the shards
    write (:data:`PNG_HEADER`): the decoder converts any bit depth to the requested type without
    a word (an 8-bit grey PNG in a depth slot would come out x257), so a wrong header zeroes
    the target shape and the reshape fails, which sends the batch to the quarantine scan that
    names the member (:mod:`mvdata.loaders.dali.quarantine`)."""
    if png is None:
        return fn.reshape(decoded, shape=[stored, stored, channels])
    bits, colour = PNG_HEADER[channels]
    ok = fn.cast((png[24] == bits) & (png[25] == colour), dtype=types.INT32)
    shape = types.Constant(np.array([stored, stored, channels], np.int32), device="cpu") * ok
    return fn.reshape(decoded, shape=shape)


def _decode_png_nearest(
    data: Any,
    dtype: Any,
    gpu: bool,
    train: bool,
    p: dict[str, Any],
    size: int,
    resize_needed: bool,
    stored: int,
    channels: int,
) -> Any:
    """Decode a depth (16-bit grey) or normal (8-bit RGB) PNG to CHW with its stored values.

    On the CPU: nvImageCodec has no GPU PNG decoder. Resized nearest-neighbour with the view's
    crop, so that background (0) never blends into the face and normals are never averaged."""
    d = fn.decoders.image(data, device="cpu", output_type=types.ANY_DATA, dtype=dtype)
    d = _stored_shape(d, stored, channels, png=data)
    if gpu:
        d = d.gpu()
    if train:
        d = fn.resize(
            d,
            size=[size, size],
            roi_start=p["roi_start"],
            roi_end=p["roi_end"],
            roi_relative=True,
            interp_type=types.INTERP_NN,
            antialias=False,
        )
    elif resize_needed:
        d = fn.resize(d, size=[size, size], interp_type=types.INTERP_NN, antialias=False)
    return fn.transpose(d, perm=[2, 0, 1])


def define_graph(
    info: DatasetInfo,
    shards: list[str],
    *,
    gpu: bool,
    rank: int,
    world_size: int,
    size: int,
    train: bool,
    shuffle: bool,
    shuffle_seed: int,
    with_depth: bool,
    with_normals: bool,
    on_missing: OnMissing,
    hw_decoder_load: float = 0.0,
    initial_fill: int = 256,
    max_zoom: float = 0.1,
    jitter: float = 0.2,
    index_paths: list[str] | None = None,
) -> tuple[Any, ...]:
    """The graph of one rank's pipeline over ``shards`` (in that order), defined inside the
    current DALI pipeline; returns the outputs ``json, source, images[TV,3,H,W] float``, then
    ``depth[TV,1,H,W] float`` (raw PNG values) when ``with_depth`` and ``normals[TV,3,H,W]
    uint8`` (stored values) when ``with_normals``. ``gpu``: JPEGs decode with ``"mixed"`` and
    every image output is on the device.

    ``index_paths`` (one per shard) default to the shards' own ``.idx`` files."""
    if index_paths is None:
        index_paths = [info.idx_path(s) for s in shards]
    rgb_exts = info.rgb_exts()
    depth_exts = info.depth_exts() if with_depth else []
    normal_exts = info.normal_exts() if with_normals else []
    mean = [m * 255.0 for m in IMAGENET_MEAN]
    std = [s * 255.0 for s in IMAGENET_STD]
    resize_needed = size != info.meta.image_size
    outs = fn.readers.webdataset(
        paths=[info.tar_path(s) for s in shards],
        index_paths=index_paths,
        ext=["json", *rgb_exts, *depth_exts, *normal_exts],
        name="Reader",
        shard_id=rank,
        num_shards=world_size,
        pad_last_batch=True,
        random_shuffle=shuffle,
        initial_fill=initial_fill,
        seed=shuffle_seed,
        missing_component_behavior=on_missing,
    )
    n_rgb, n_dep = len(rgb_exts), len(depth_exts)
    js, rgb = outs[0], outs[1 : 1 + n_rgb]
    dep, nrm = outs[1 + n_rgb : 1 + n_rgb + n_dep], outs[1 + n_rgb + n_dep :]
    source = fn.pad(fn.get_property(js, key="source_info"), fill_value=0)
    js = fn.pad(js, fill_value=0)
    images, depths, normals = [], [], []
    nv = info.num_views
    params = [_view_params(train, max_zoom, jitter) for _ in range(nv)]
    for i in range(len(rgb_exts)):
        p = params[i % nv]
        img = fn.decoders.image(
            rgb[i],
            device="mixed" if gpu else "cpu",
            output_type=types.RGB,
            hw_decoder_load=hw_decoder_load,
        )
        img = _stored_shape(img, info.meta.image_size, 3)
        if train:
            img = fn.resize(
                img,
                size=[size, size],
                roi_start=p["roi_start"],
                roi_end=p["roi_end"],
                roi_relative=True,
                antialias=True,
            )
            img = fn.color_twist(
                img,
                brightness=p["brightness"],
                contrast=p["contrast"],
                saturation=p["saturation"],
            )
        elif resize_needed:
            img = fn.resize(img, size=[size, size], antialias=True)
        images.append(
            fn.crop_mirror_normalize(
                img, dtype=types.FLOAT, output_layout="CHW", mean=mean, std=std, mirror=0
            )
        )
        if with_depth:
            d = _decode_png_nearest(
                dep[i], types.UINT16, gpu, train, p, size, resize_needed, info.meta.image_size, 1
            )
            depths.append(fn.cast(d, dtype=types.FLOAT))
        if with_normals:
            normals.append(
                _decode_png_nearest(
                    nrm[i], types.UINT8, gpu, train, p, size, resize_needed, info.meta.image_size, 3
                )
            )
    stacked = [js, source, fn.stack(*images, axis=0)]
    if with_depth:
        stacked.append(fn.stack(*depths, axis=0))
    if with_normals:
        stacked.append(fn.stack(*normals, axis=0))
    return tuple(stacked)


def build_pipeline(
    info: DatasetInfo,
    shards: list[str],
    *,
    batch_size: int,
    device_id: int | None,
    num_threads: int,
    seed: int,
    prefetch_queue_depth: int = 2,
    checkpoint: bytes | None = None,
    **graph: Any,
) -> Any:
    """One rank's DALI pipeline (checkpointing on) over :func:`define_graph` with ``graph``'s
    arguments; ``device_id=None`` runs it on the CPU; ``checkpoint`` restores its readers."""
    pipe = pipeline_def(define_graph, enable_checkpointing=True)
    kwargs: dict[str, Any] = dict(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id,
        seed=seed,
        prefetch_queue_depth=prefetch_queue_depth,
    )
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    return pipe(info, shards, gpu=device_id is not None, shuffle_seed=seed, **graph, **kwargs)

"""The vision model: shapes, channels, weight loading, sharing, fusion, round trips, FLOPs.

Real timm architectures, randomly initialised, at 32 px: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from pydantic import ValidationError
from safetensors.torch import load_model, save_file, save_model

from mvmodel.vision import (
    CHANNELS,
    DEPTH_SCALE_MM,
    InputAdapter,
    MultiviewVLM,
    ViewFrameFusion,
    VisionConfig,
    example_input,
    flops_per_sample,
    load_local_weights,
    make_backbone,
    standardise_depth,
)
from mvmodel.vision.backbone import needs_img_size

SIZE = 32


def tiny(**overrides: object) -> VisionConfig:
    """resnet18 at 32 px with small heads and a one-layer fusion."""
    base: dict[str, object] = {
        "backbone": "resnet18",
        "image_size": SIZE,
        "embed_dim": 32,
        "proj_hidden": 64,
        "fusion_depth": 1,
        "fusion_heads": 4,
    }
    return VisionConfig.model_validate({**base, **overrides})


@pytest.fixture(scope="module")
def model() -> MultiviewVLM:
    torch.manual_seed(0)
    return MultiviewVLM(tiny()).eval()


def _first_conv(m: torch.nn.Module) -> torch.Tensor:
    first_conv = m.pretrained_cfg["first_conv"]  # type: ignore[index]
    return m.get_parameter(f"{first_conv}.weight")


@pytest.mark.parametrize("frames", [1, 3])
def test_shapes_and_unit_norms(model: MultiviewVLM, frames: int) -> None:
    torch.manual_seed(1)
    x = example_input(model.config, batch=2, frames=frames, views=3)
    with torch.no_grad():
        out = model(**x)
    assert out.z.shape == (2, frames * 3, 32)
    assert out.f.shape == (2, 32)
    assert out.tokens.shape == (2, frames * 3, model.feature_dim)
    assert out.fused.shape == (2, model.feature_dim)
    # f is the projection of the fused feature the probe script reads, nothing else
    with torch.no_grad():
        torch.testing.assert_close(
            out.f, torch.nn.functional.normalize(model.fused_head(out.fused).float(), dim=-1)
        )
    torch.testing.assert_close(out.z.norm(dim=-1), torch.ones(2, frames * 3))
    torch.testing.assert_close(out.f.norm(dim=-1), torch.ones(2))
    assert out.z.dtype == out.f.dtype == torch.float32


@pytest.mark.parametrize("channels", sorted(CHANNELS))
def test_channel_configs(channels: str) -> None:
    cfg = tiny(channels=channels)
    m = MultiviewVLM(cfg).eval()
    assert _first_conv(m.backbone).shape[1] == CHANNELS[channels] == cfg.in_chans
    x = example_input(cfg, batch=2, frames=1, views=3)
    assert ("depth" in x) == ("depth" in channels) and ("normals" in x) == ("normal" in channels)
    adapted = m.adapter(**x)
    assert adapted.shape == (2, 1, 3, CHANNELS[channels], SIZE, SIZE)
    with torch.no_grad():
        assert m(**x).f.shape == (2, 32)


def test_vit_backbone_at_small_size() -> None:
    assert needs_img_size("vit_tiny_patch16_224") and not needs_img_size("resnet18")
    cfg = tiny(backbone="vit_tiny_patch16_224", channels="rgb+depth+normal", fusion_heads=3)
    m = MultiviewVLM(cfg).eval()
    assert m.feature_dim == 192
    x = example_input(cfg, batch=2, frames=3, views=3)
    with torch.no_grad():
        out = m(**x)
    assert out.z.shape == (2, 9, 32) and out.f.shape == (2, 32)
    torch.testing.assert_close(out.f.norm(dim=-1), torch.ones(2))


def test_depth_standardisation_is_scale_free() -> None:
    torch.manual_seed(0)
    relief = 40 * torch.rand(2, 1, 3, 1, SIZE, SIZE)
    fg = torch.zeros_like(relief, dtype=torch.bool)
    fg[..., 4:28, 4:28] = True
    near = torch.where(fg, 500 + relief, 0.0)
    far = torch.where(fg, 900 + relief, 0.0)  # same face, 40 cm further away
    a, b = standardise_depth(near), standardise_depth(far)
    torch.testing.assert_close(a, b)
    assert (a[~fg] == 0).all()
    # Fixed millimetre scale, positive towards the camera: 10 mm nearer is +10/scale.
    flat = torch.where(fg, 600.0, 0.0)
    flat[..., 10, 10] -= 10
    rel = standardise_depth(flat)
    torch.testing.assert_close(rel[..., 10, 10], torch.full((2, 1, 3, 1), 10 / DEPTH_SCALE_MM))
    assert rel.abs().sum() == pytest.approx(6 * 10 / DEPTH_SCALE_MM)
    # An empty (padding) view stays zero instead of turning into NaN.
    assert (standardise_depth(torch.zeros(1, 1, 1, 1, 8, 8)) == 0).all()


def test_adapter_resizes_views() -> None:
    adapter = InputAdapter("rgb+depth+normal", image_size=SIZE)
    cfg = tiny(channels="rgb+depth+normal", image_size=48)
    x = example_input(cfg, batch=1, frames=1, views=2)
    out = adapter(**x)
    assert out.shape == (1, 1, 2, 7, SIZE, SIZE)
    # Nearest-neighbour resizing keeps normals unit length or zero (no blending at the edge).
    norms = out[:, :, :, 4:].norm(dim=3)
    assert ((norms - 1).abs() < 1e-4).logical_or(norms == 0).all()


@pytest.mark.parametrize(
    ("channels", "missing"),
    [("rgb+depth", "depth"), ("rgb+depth+normal", "depth"), ("rgb+depth+normal", "normals")],
)
def test_missing_modality_is_a_clear_error(
    model: MultiviewVLM, channels: str, missing: str
) -> None:
    adapter = InputAdapter(channels, SIZE)  # type: ignore[arg-type]
    x = example_input(tiny(channels="rgb+depth+normal"), batch=1, frames=1, views=3)
    x[missing] = None  # type: ignore[assignment]
    with pytest.raises(ValueError, match=f"needs {missing}"):
        adapter(**x)
    if channels == "rgb+depth":
        with pytest.raises(ValueError, match="needs depth"):
            model(x["images"])


@pytest.mark.parametrize("in_chans", [4, 7])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_rgb_weights_adapt_to_more_channels(
    tmp_path: Path, in_chans: int, suffix: str
) -> None:
    torch.manual_seed(0)
    src = timm.create_model("resnet18", pretrained=False)  # with its 1000-class head
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    path = tmp_path / f"rgb{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    torch.manual_seed(1)
    m, dim = make_backbone("resnet18", in_chans, None, SIZE)
    report = load_local_weights(m, path)
    assert dim == 512
    assert report.adapted == ["conv1.weight"]
    assert set(report.unexpected) == {"fc.weight", "fc.bias"}
    assert report.missing == [] and report.mismatched == []
    w = m.get_parameter("conv1.weight").detach()
    assert w.shape[1] == in_chans
    torch.testing.assert_close(w[:, :3], state["conv1.weight"])
    mean_rgb = state["conv1.weight"].mean(dim=1, keepdim=True)
    torch.testing.assert_close(w[:, 3:], mean_rgb.expand(-1, in_chans - 3, -1, -1))
    key = "layer4.1.conv2.weight"
    torch.testing.assert_close(m.get_parameter(key), state[key])

    # Through the config, as training would start from it.
    vlm = MultiviewVLM(tiny(channels="rgb+depth", pretrained=str(path)))
    torch.testing.assert_close(_first_conv(vlm.backbone)[:, :3], state["conv1.weight"])


def test_local_vit_weights_adapt_patch_embed_and_positions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    # Trained at another size than the model's (64 px: 16 patches, the model at 32 px has 4).
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    m, _ = make_backbone("vit_tiny_patch16_224", 4, str(path), SIZE)
    report = load_local_weights(m, path)
    assert set(report.adapted) == {"patch_embed.proj.weight", "pos_embed"}
    assert report.missing == report.unexpected == report.mismatched == []
    assert m.get_parameter("pos_embed").shape == (1, 1 + (SIZE // 16) ** 2, 192)
    key = "patch_embed.proj.weight"
    torch.testing.assert_close(m.get_parameter(key)[:, :3], src.get_parameter(key))
    with torch.no_grad():
        assert m(torch.randn(2, 4, SIZE, SIZE)).shape == (2, 192)


def test_pretrained_errors_without_network(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        make_backbone("resnet18", 3, str(tmp_path / "nope.pth"), SIZE)
    with pytest.raises(ValueError, match="architecture"):
        make_backbone("resnet18", 3, "timm:resnet50.a1_in1k", SIZE)


def test_backbone_is_shared_and_views_are_processed_identically(model: MultiviewVLM) -> None:
    # One backbone: no per-view copies of it anywhere in the model.
    resnets = [m for m in model.modules() if isinstance(m, timm.models.ResNet)]
    assert resnets == [model.backbone]

    torch.manual_seed(2)
    x = example_input(model.config, batch=2, frames=2, views=3)
    perm = torch.tensor([2, 0, 1])
    xp = {k: v[:, :, perm] for k, v in x.items()}
    with torch.no_grad():
        out = model(**x)
        out_p = model(**xp)
        # Views and their camera ids permuted together: same sample, same fused embedding.
        out_pid = model(**xp, view_ids=perm)
    z = out.z.reshape(2, 2, 3, -1)
    torch.testing.assert_close(out_p.z.reshape(2, 2, 3, -1), z[:, :, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_pid.f, out.f, atol=1e-5, rtol=1e-5)
    # Same pixels under other camera ids: the fusion sees different views.
    assert not torch.allclose(out_p.f, out.f, atol=1e-4)


def test_fusion_tells_views_apart_and_is_deterministic() -> None:
    torch.manual_seed(0)
    fusion = ViewFrameFusion(dim=64, num_views_max=6, num_frames_max=8, depth=2, heads=4).eval()
    tokens = torch.randn(2, 8, 6, 64)  # T·V = 48 tokens
    perm = torch.randperm(6)
    with torch.no_grad():
        out = fusion(tokens)
        assert out.shape == (2, 64)
        torch.testing.assert_close(fusion(tokens), out, atol=0, rtol=0)
        assert not torch.allclose(fusion(tokens[:, :, perm]), out, atol=1e-4)
        # Equal view embeddings: the views become interchangeable (a plain set encoder).
        fusion.view_embed.copy_(fusion.view_embed[:1].expand(6, -1))
        out_same = fusion(tokens)
        torch.testing.assert_close(fusion(tokens[:, :, perm]), out_same, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="frames"):
        fusion(torch.randn(1, 9, 6, 64))
    with pytest.raises(ValueError, match="out of range"):
        fusion(torch.randn(1, 1, 2, 64), view_ids=torch.tensor([0, 6]))


def test_safetensors_round_trip(tmp_path: Path, model: MultiviewVLM) -> None:
    torch.manual_seed(3)
    x = example_input(model.config, batch=2, frames=2, views=3)
    with torch.no_grad():
        ref = model(**x)

    path = tmp_path / "vision.safetensors"
    save_model(model, str(path))
    torch.manual_seed(99)
    other = MultiviewVLM(model.config).eval()
    load_model(other, str(path))
    model.save_weights(tmp_path / "with_config.safetensors")
    again = MultiviewVLM.from_safetensors(tmp_path / "with_config.safetensors").eval()
    assert again.config == model.config
    with torch.no_grad():
        for m in (other, again):
            out = m(**x)
            torch.testing.assert_close(out.z, ref.z, atol=0, rtol=0)
            torch.testing.assert_close(out.f, ref.f, atol=0, rtol=0)


def test_gradients_reach_the_backbone() -> None:
    torch.manual_seed(0)
    m = MultiviewVLM(tiny()).train()
    x = example_input(m.config, batch=2, frames=1, views=3)
    out = m(**x)
    (out.z[:, :, 0].sum() + out.f[:, 0].sum()).backward()
    for name in ("backbone.conv1.weight", "fusion.view_embed", "fusion.cls_token"):
        grad = m.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_encode_batch_like(model: MultiviewVLM) -> None:
    x = example_input(model.config, batch=2, frames=1, views=3)
    batch = SimpleNamespace(
        images=x["images"],
        depth=x["depth"],
        normals=x.get("normals"),
        views=[0, 1, 2],
        valid=torch.ones(2),
    )
    with torch.no_grad():
        out = model.encode(batch)
        torch.testing.assert_close(out.f, model(**x).f)
    batch.views = [0, 1, 9]
    with pytest.raises(ValueError, match="max_views"):
        model.encode(batch)


def test_flops_per_sample(model: MultiviewVLM) -> None:
    one = flops_per_sample(model, example_input(model.config, batch=1, views=3))
    two = flops_per_sample(model, example_input(model.config, batch=2, views=3))
    assert one > 0
    assert two == pytest.approx(one, rel=1e-6)  # per sample, whatever the batch
    six = flops_per_sample(model, example_input(model.config, batch=1, views=6))
    assert 1.8 * one < six < 2.2 * one  # the backbone dominates and scales with views


def test_config_is_frozen_and_defaults() -> None:
    cfg = VisionConfig()
    assert (cfg.backbone, cfg.image_size, cfg.pretrained) == ("resnet18", 112, None)
    assert VisionConfig.gpu_default().backbone == "vit_small_patch16_224"
    assert VisionConfig.for_device("cpu") == VisionConfig.cpu_default()
    with pytest.raises(ValidationError):
        cfg.embed_dim = 8  # type: ignore[misc]
    with pytest.raises(ValidationError):
        VisionConfig(channels="rgbd")  # type: ignore[arg-type]

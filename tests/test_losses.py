"""The training losses against plain numpy references (float64 loops written from the formulas
in docs/method.md), their invariances, gradients, edge cases and the temperature clamp."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mvmodel.losses import (
    ImageTextLoss,
    ImageTextLossOutput,
    LearnableTemperature,
    MultiviewContrastiveLoss,
    SigmoidMultiviewLoss,
    gather_no_grad,
    gather_with_grad,
)

TAU = 0.1
TOL = 1e-6

# ---------------------------------------------------------------- numpy references (float64)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _is_negative(b: int, c: int, valid: np.ndarray, pseudo: np.ndarray) -> bool:
    """Sample c is a negative of sample b: another valid sample, not the same confident label."""
    if c == b or not valid[c]:
        return False
    return not (pseudo[b] >= 0 and pseudo[c] == pseudo[b])


def ref_multiview(
    z: np.ndarray, valid: np.ndarray, pseudo: np.ndarray, tau: float, m: float
) -> float:
    """-log(e^{s_ip/τ} / (e^{s_ip/τ} + M·mean_n e^{s_in/τ})), mean over p, then over anchors."""
    bsz, n_views, _ = z.shape
    anchors = []
    for b in range(bsz):
        if not valid[b]:
            continue
        negs = [c for c in range(bsz) if _is_negative(b, c, valid, pseudo)]
        if not negs or n_views < 2:
            continue
        for i in range(n_views):
            mean_neg = np.mean(
                [math.exp(z[b, i] @ z[c, j] / tau) for c in negs for j in range(n_views)]
            )
            per_pos = []
            for p in range(n_views):
                if p == i:
                    continue
                e = math.exp(z[b, i] @ z[b, p] / tau)
                per_pos.append(-math.log(e / (e + m * mean_neg)))
            anchors.append(np.mean(per_pos))
    return float(np.mean(anchors)) if anchors else 0.0


def ref_sigmoid(
    z: np.ndarray, valid: np.ndarray, pseudo: np.ndarray, tau: float, bias: float
) -> float:
    """Mean over positive pairs + mean over negative pairs of -log σ(y(s/τ + b))."""
    bsz, n_views, _ = z.shape
    pos, neg = [], []

    def nls(x: float) -> float:  # -log σ(x)
        return math.log1p(math.exp(-x))

    for b in range(bsz):
        if not valid[b]:
            continue
        for i in range(n_views):
            for c in range(bsz):
                for j in range(n_views):
                    x = z[b, i] @ z[c, j] / tau + bias
                    if c == b and j != i:
                        pos.append(nls(x))
                    elif _is_negative(b, c, valid, pseudo):
                        neg.append(nls(-x))
    return float((np.mean(pos) if pos else 0.0) + (np.mean(neg) if neg else 0.0))


def ref_image_text(
    f: np.ndarray,
    z: np.ndarray,
    c: np.ndarray,
    q: np.ndarray,
    conf: np.ndarray,
    valid: np.ndarray,
    tau: float,
) -> tuple[float, float, float]:
    """(i2t, i2t_views, t2i) from the formulas, with loops."""
    k = c.shape[0]
    idx = [b for b in range(len(f)) if valid[b] and conf[b]]

    def soft_ce(x: np.ndarray, target: np.ndarray) -> float:
        logits = c @ x / tau
        logp = logits - math.log(np.sum(np.exp(logits)))
        return float(-(target * logp).sum())

    i2t = np.mean([soft_ce(f[b], q[b]) for b in idx]) if idx else 0.0
    i2t_v = (
        np.mean([np.mean([soft_ce(z[b, n], q[b]) for n in range(z.shape[1])]) for b in idx])
        if idx
        else 0.0
    )
    label = {b: int(np.argmax(q[b])) for b in idx}
    per_class = []
    for cls in range(k):
        pos = [b for b in idx if label[b] == cls]
        neg = [b for b in idx if label[b] != cls]
        if not pos or not neg:
            continue
        neg_sum = sum(math.exp(c[cls] @ f[b] / tau) for b in neg)
        terms = []
        for p in pos:
            e = math.exp(c[cls] @ f[p] / tau)
            terms.append(-math.log(e / (e + neg_sum)))
        per_class.append(np.mean(terms))
    t2i = np.mean(per_class) if per_class else 0.0
    return float(i2t), float(i2t_v), float(t2i)


# ---------------------------------------------------------------- inputs


def make_batch(
    seed: int = 0, bsz: int = 8, n_views: int = 4, dim: int = 6, k: int = 4
) -> dict[str, np.ndarray]:
    """Random batch: 2 padding rows, some confident pseudo-labels sharing classes."""
    rng = np.random.default_rng(seed)
    valid = np.ones(bsz, dtype=bool)
    valid[[2, bsz - 1]] = False
    pseudo = rng.integers(-1, 3, size=bsz)
    pseudo[:4] = [0, 1, 0, 0]  # samples 0 and 3 share class 0 (2 is padding)
    q = rng.dirichlet(np.full(k, 0.5), size=bsz)
    conf = rng.random(bsz) < 0.7
    conf[[0, 1, 4]] = True
    # views of one sample are near each other, as after some training
    centre = rng.normal(size=(bsz, 1, dim))
    return {
        "z": _unit(centre + 0.7 * rng.normal(size=(bsz, n_views, dim))),
        "f": _unit(rng.normal(size=(bsz, dim))),
        "c": _unit(rng.normal(size=(k, dim))),
        "valid": valid,
        "pseudo": pseudo,
        "q": q,
        "conf": conf,
    }


def t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    out = torch.tensor(x)
    return out.requires_grad_(grad) if out.is_floating_point() else out


# ---------------------------------------------------------------- multiview


@pytest.mark.parametrize("m", [1.0, 128.0])
def test_multiview_matches_reference(m: float) -> None:
    d = make_batch()
    loss = MultiviewContrastiveLoss(nominal_negatives=m)(
        t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU
    )
    assert loss.item() == pytest.approx(
        ref_multiview(d["z"], d["valid"], d["pseudo"], TAU, m), abs=TOL
    )


def test_multiview_masking_changes_loss_as_reference() -> None:
    d = make_batch(seed=3)
    fn = MultiviewContrastiveLoss()
    none = np.full_like(d["pseudo"], -1)
    masked = fn(t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU).item()
    stats = fn.last_stats
    unmasked = fn(t(d["z"]), t(d["valid"]), t(none), TAU).item()
    assert fn.last_stats is not None and fn.last_stats.masked_frac.item() == 0.0
    ref_m = ref_multiview(d["z"], d["valid"], d["pseudo"], TAU, 128.0)
    ref_u = ref_multiview(d["z"], d["valid"], none, TAU, 128.0)
    assert abs(ref_m - ref_u) > 1e-3  # the masking matters on this batch
    assert masked - unmasked == pytest.approx(ref_m - ref_u, abs=TOL)
    # masked fraction: candidate (anchor sample, other valid sample) pairs with the same label
    v, p = d["valid"], d["pseudo"]
    cand = [(b, c) for b in range(len(v)) for c in range(len(v)) if v[b] and v[c] and b != c]
    same = [(b, c) for b, c in cand if p[b] >= 0 and p[b] == p[c]]
    assert stats is not None
    assert stats.masked_frac.item() == pytest.approx(len(same) / len(cand))


def test_multiview_stats() -> None:
    d = make_batch(seed=5)
    fn = MultiviewContrastiveLoss()
    fn(t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU)
    z, v, p = d["z"], d["valid"], d["pseudo"]
    nv = z.shape[1]
    pos = [
        z[b, i] @ z[b, j]
        for b in range(len(v))
        if v[b]
        for i in range(nv)
        for j in range(nv)
        if i != j
    ]
    neg = [
        z[b, i] @ z[c, j]
        for b in range(len(v))
        if v[b]
        for c in range(len(v))
        if _is_negative(b, c, v, p)
        for i in range(nv)
        for j in range(nv)
    ]
    assert fn.last_stats is not None
    assert fn.last_stats.pos_sim.item() == pytest.approx(np.mean(pos), abs=TOL)
    assert fn.last_stats.neg_sim.item() == pytest.approx(np.mean(neg), abs=TOL)
    assert fn.last_stats.anchors.item() == int(v.sum()) * nv


def _permuted(d: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Views shuffled independently within every sample, then samples shuffled."""
    rng = np.random.default_rng(seed)
    out = dict(d)
    out["z"] = np.stack([zb[rng.permutation(zb.shape[0])] for zb in d["z"]])
    order = rng.permutation(len(d["valid"]))
    return {k: v[order] if k != "c" else v for k, v in out.items()}


@pytest.mark.parametrize("loss_cls", [MultiviewContrastiveLoss, SigmoidMultiviewLoss])
def test_view_losses_permutation_invariant(loss_cls: type) -> None:
    d = make_batch(seed=7)
    fn = loss_cls()
    base = fn(t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU).item()
    for seed in range(3):
        e = _permuted(d, seed)
        assert fn(t(e["z"]), t(e["valid"]), t(e["pseudo"]), TAU).item() == pytest.approx(
            base, abs=TOL
        )


@pytest.mark.parametrize("loss_cls", [MultiviewContrastiveLoss, SigmoidMultiviewLoss])
def test_view_losses_ignore_padding_content(loss_cls: type) -> None:
    """NaN or anything in padding rows, and extra padding rows, change nothing."""
    d = make_batch(seed=9)
    fn = loss_cls()
    base = fn(t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU).item()
    z = d["z"].copy()
    z[~d["valid"]] = np.nan
    zt = t(z, grad=True)
    loss = fn(zt, t(d["valid"]), t(d["pseudo"]), TAU)
    loss.backward()
    assert loss.item() == pytest.approx(base, abs=TOL)
    assert zt.grad is not None and torch.isfinite(zt.grad).all()
    assert (zt.grad[~t(d["valid"])] == 0).all()
    more = np.concatenate([d["z"], d["z"][:3]])
    valid = np.concatenate([d["valid"], np.zeros(3, dtype=bool)])
    pseudo = np.concatenate([d["pseudo"], d["pseudo"][:3]])
    assert fn(t(more), t(valid), t(pseudo), TAU).item() == pytest.approx(base, abs=TOL)


@pytest.mark.parametrize("loss_cls", [MultiviewContrastiveLoss, SigmoidMultiviewLoss])
def test_view_losses_gradcheck(loss_cls: type) -> None:
    """Analytic gradients (embeddings through normalisation, τ, bias) equal finite differences."""
    d = make_batch(seed=11, bsz=5, n_views=3, dim=3)
    raw = torch.tensor(d["z"] * 1.3, requires_grad=True)
    log_tau = torch.tensor(math.log(0.2), dtype=torch.float64, requires_grad=True)
    fn = loss_cls().double()
    valid, pseudo = t(d["valid"]), t(d["pseudo"])

    def f(raw_z: torch.Tensor, lt: torch.Tensor) -> torch.Tensor:
        return fn(F.normalize(raw_z, dim=-1), valid, pseudo, lt.exp())

    assert torch.autograd.gradcheck(f, (raw, log_tau), eps=1e-6, atol=1e-5)
    loss = f(raw, log_tau)
    loss.backward()
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert log_tau.grad is not None and torch.isfinite(log_tau.grad)


def test_multiview_edge_cases() -> None:
    fn = MultiviewContrastiveLoss()
    d = make_batch(seed=13)
    # every valid sample shares one confident label: no anchor keeps a negative
    same = np.zeros_like(d["pseudo"])
    z = t(d["z"], grad=True)
    loss = fn(z, t(d["valid"]), t(same), TAU)
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None and torch.isfinite(z.grad).all()
    # one sample's negatives are all masked, the others keep theirs: it simply drops out
    part = np.array([0, 1, 5, 1, 1, 1, 1, 5])
    ref = ref_multiview(d["z"], d["valid"], part, TAU, 128.0)
    assert fn(t(d["z"]), t(d["valid"]), t(part), TAU).item() == pytest.approx(ref, abs=TOL)
    # a single view: no positive anywhere
    z1 = t(d["z"][:, :1], grad=True)
    loss = fn(z1, t(d["valid"]), t(d["pseudo"]), TAU)
    loss.backward()
    assert loss.item() == 0.0 and z1.grad is not None and torch.isfinite(z1.grad).all()
    # all padding: 0, still differentiable
    za = t(d["z"], grad=True)
    loss = fn(za, t(np.zeros(len(d["valid"]), dtype=bool)), t(d["pseudo"]), TAU)
    assert loss.requires_grad
    loss.backward()
    assert loss.item() == 0.0 and za.grad is not None and (za.grad == 0).all()
    # a lone valid sample has no negatives
    lone = np.zeros(len(d["valid"]), dtype=bool)
    lone[0] = True
    assert fn(t(d["z"]), t(lone), t(d["pseudo"]), TAU).item() == 0.0


def test_multiview_float32_input_and_tau_tensor() -> None:
    d = make_batch(seed=15)
    tau = torch.tensor(TAU, dtype=torch.float32)
    loss = MultiviewContrastiveLoss()(t(d["z"]).float(), t(d["valid"]), t(d["pseudo"]), tau)
    assert loss.dtype == torch.float32
    ref = ref_multiview(d["z"], d["valid"], d["pseudo"], TAU, 128.0)
    assert loss.item() == pytest.approx(ref, abs=1e-4)


def test_losses_run_in_float32_under_bf16_autocast() -> None:
    """Inside a bf16 autocast region the losses still compute their logits in float32."""
    d = make_batch(seed=16)
    z, f, c = t(d["z"]).float(), t(d["f"]).float(), t(d["c"]).float()
    v, p, q, conf = t(d["valid"]), t(d["pseudo"]), t(d["q"]).float(), t(d["conf"])
    tau = 0.02

    def all_losses() -> list[float]:
        return [
            MultiviewContrastiveLoss()(z, v, p, tau).item(),
            SigmoidMultiviewLoss()(z, v, p, tau).item(),
            ImageTextLoss()(f, z, c, q, conf, v, tau).total.item(),
        ]

    plain = all_losses()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = all_losses()
    assert mixed == pytest.approx(plain, abs=1e-5)


# ---------------------------------------------------------------- sigmoid


@pytest.mark.parametrize("bias", [0.0, -2.5])
def test_sigmoid_matches_reference(bias: float) -> None:
    d = make_batch(seed=17)
    fn = SigmoidMultiviewLoss(init_bias=bias).double()
    loss = fn(t(d["z"]), t(d["valid"]), t(d["pseudo"]), TAU)
    ref = ref_sigmoid(d["z"], d["valid"], d["pseudo"], TAU, bias)
    assert loss.item() == pytest.approx(ref, abs=TOL)
    none = np.full_like(d["pseudo"], -1)
    ref_u = ref_sigmoid(d["z"], d["valid"], none, TAU, bias)
    unmasked = fn(t(d["z"]), t(d["valid"]), t(none), TAU).item()
    assert abs(ref_u - ref) > 1e-3
    assert unmasked - loss.item() == pytest.approx(ref_u - ref, abs=TOL)


def test_sigmoid_gradient_bounded_by_inverse_tau() -> None:
    """One positive pair, one negative pair of samples, extreme logits: |∂l/∂s| <= 1/τ."""
    tau = 0.05
    z = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]], dtype=torch.float64)
    zz = z.clone().requires_grad_(True)
    fn = SigmoidMultiviewLoss().double()
    loss = fn(zz, torch.ones(2, dtype=torch.bool), torch.tensor([-1, -1]), tau)
    loss.backward()
    assert zz.grad is not None
    # each anchor view is in 1 positive and 2 negative pairs, each counted twice (as i and j);
    # the means divide by 4 positive and 8 negative pairs: per-view bound 2·(1/4 + 2/8)/τ.
    bound = 2 * (1 / 4 + 2 / 8) / tau
    norms = zz.grad.norm(dim=-1)
    assert norms.max().item() <= bound + 1e-9
    # view (0, 0): its positive is opposite and its negatives identical, so every pair pulls
    # the same way with a saturated sigmoid: the bound is reached, not just respected.
    assert norms[0, 0].item() > 0.99 * bound


def test_sigmoid_edge_cases() -> None:
    d = make_batch(seed=19)
    fn = SigmoidMultiviewLoss()
    za = t(d["z"], grad=True)
    loss = fn(za, t(np.zeros(len(d["valid"]), dtype=bool)), t(d["pseudo"]), TAU)
    loss.backward()
    assert loss.item() == 0.0 and za.grad is not None and (za.grad == 0).all()
    assert fn.bias.grad is not None and fn.bias.grad.item() == 0.0
    # a single view with everything masked: no pair at all
    z1 = t(d["z"][:, :1], grad=True)
    loss = fn(z1, t(d["valid"]), t(np.zeros_like(d["pseudo"])), TAU)
    loss.backward()
    assert loss.item() == 0.0 and z1.grad is not None and torch.isfinite(z1.grad).all()
    # single view but negatives left: only the negative mean
    ref = ref_sigmoid(d["z"][:, :1], d["valid"], d["pseudo"], TAU, 0.0)
    got = fn(t(d["z"][:, :1]), t(d["valid"]), t(d["pseudo"]), TAU).item()
    assert got == pytest.approx(ref, abs=TOL)


# ---------------------------------------------------------------- image <-> text


def _image_text(
    d: dict[str, np.ndarray], view_weight: float = 1.0, t2i_weight: float = 1.0
) -> ImageTextLossOutput:
    return ImageTextLoss(view_weight=view_weight, t2i_weight=t2i_weight)(
        t(d["f"]), t(d["z"]), t(d["c"]), t(d["q"]), t(d["conf"]), t(d["valid"]), TAU
    )


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_image_text_matches_reference(seed: int) -> None:
    d = make_batch(seed=seed)
    out = _image_text(d, view_weight=0.5, t2i_weight=2.0)
    i2t, i2t_v, t2i = ref_image_text(d["f"], d["z"], d["c"], d["q"], d["conf"], d["valid"], TAU)
    assert out.i2t.item() == pytest.approx(i2t, abs=TOL)
    assert out.i2t_views.item() == pytest.approx(i2t_v, abs=TOL)
    assert out.t2i.item() == pytest.approx(t2i, abs=TOL)
    assert t2i > 0
    assert out.total.item() == pytest.approx(i2t + 0.5 * i2t_v + 2.0 * t2i, abs=TOL)
    assert out.confident.item() == int((d["conf"] & d["valid"]).sum())


def test_image_text_permutation_invariant_and_padding_ignored() -> None:
    d = make_batch(seed=25)
    base = _image_text(d).total.item()
    for seed in range(3):
        assert _image_text(_permuted(d, seed)).total.item() == pytest.approx(base, abs=TOL)
    e = dict(d)
    for key in ("f", "z", "q"):
        e[key] = d[key].copy()
        e[key][~d["valid"]] = np.nan
    # padding marked confident still takes no part
    e["conf"] = np.where(d["valid"], d["conf"], True)
    assert _image_text(e).total.item() == pytest.approx(base, abs=TOL)


def test_image_text_gradcheck() -> None:
    d = make_batch(seed=27, bsz=5, n_views=2, dim=3, k=3)
    d["conf"][:] = True
    raw_f = torch.tensor(d["f"] * 1.2, requires_grad=True)
    raw_z = torch.tensor(d["z"] * 0.8, requires_grad=True)
    raw_c = torch.tensor(d["c"] * 1.1, requires_grad=True)
    log_tau = torch.tensor(math.log(0.3), dtype=torch.float64, requires_grad=True)
    fn = ImageTextLoss(view_weight=0.7, t2i_weight=1.3)
    q, conf, valid = t(d["q"]), t(d["conf"]), t(d["valid"])

    def f(rf: torch.Tensor, rz: torch.Tensor, rc: torch.Tensor, lt: torch.Tensor) -> torch.Tensor:
        return fn(
            F.normalize(rf, dim=-1),
            F.normalize(rz, dim=-1),
            F.normalize(rc, dim=-1),
            q,
            conf,
            valid,
            lt.exp(),
        ).total

    assert torch.autograd.gradcheck(f, (raw_f, raw_z, raw_c, log_tau), eps=1e-6, atol=1e-5)


def test_image_text_edge_cases() -> None:
    d = make_batch(seed=29)
    # nobody confident: every term 0, still differentiable
    e = dict(d)
    e["conf"] = np.zeros_like(d["conf"])
    f = t(d["f"], grad=True)
    c = t(d["c"], grad=True)
    out = ImageTextLoss()(f, t(d["z"]), c, t(d["q"]), t(e["conf"]), t(d["valid"]), TAU)
    out.total.backward()
    assert out.total.item() == 0.0
    assert f.grad is not None and (f.grad == 0).all()
    assert c.grad is not None and (c.grad == 0).all()
    # every confident sample in one class: t2i has no negatives, i2t still counts
    e["conf"] = d["conf"].copy()
    e["q"] = d["q"].copy()
    e["q"][:, 0] += 10.0
    e["q"] /= e["q"].sum(axis=1, keepdims=True)
    out = _image_text(e)
    i2t, _, t2i = ref_image_text(d["f"], d["z"], d["c"], e["q"], e["conf"], d["valid"], TAU)
    assert t2i == 0.0 and out.t2i.item() == 0.0
    assert out.i2t.item() == pytest.approx(i2t, abs=TOL)


# ---------------------------------------------------------------- temperature and gather


def test_temperature_clamp() -> None:
    temp = LearnableTemperature(init=0.07)
    assert temp().item() == pytest.approx(0.07)
    with pytest.raises(ValueError):
        LearnableTemperature(init=2.0)
    with torch.no_grad():
        temp.log_tau.fill_(math.log(0.001))
    tau = temp()
    assert tau.item() == pytest.approx(0.01)
    # straight-through: the gradient still reaches log τ past the bound
    (1.0 / tau).backward()
    assert temp.log_tau.grad is not None and temp.log_tau.grad.item() != 0.0
    temp.clamp_()
    assert temp.log_tau.item() == pytest.approx(math.log(0.01))
    with torch.no_grad():
        temp.log_tau.fill_(math.log(5.0))
    assert temp().item() == pytest.approx(1.0)
    assert temp.clamp_().log_tau.item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        temp.log_tau.fill_(math.log(0.3))
    assert temp.clamp_()().item() == pytest.approx(0.3)
    # the optimizer step + clamp cycle keeps τ in range
    opt = torch.optim.SGD(temp.parameters(), lr=100.0)
    opt.zero_grad()
    (1.0 / temp()).backward()  # wants a larger τ, with a huge step
    opt.step()
    temp.clamp_()
    assert 0.01 <= temp().item() <= 1.0 and temp().item() == pytest.approx(1.0)


def test_gather_single_process_is_identity() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x, 1) is x
    assert gather_with_grad(x, 4) is x  # no process group: nothing to gather
    m = torch.tensor([True, False])
    assert torch.equal(gather_no_grad(m, 2), m)

"""Pseudo-labels: Sinkhorn balancing, log-space combination, gate, queue state, agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mvmodel.pseudolabels import (
    P_GEO_FLOOR,
    PseudoLabelConfig,
    PseudoLabeler,
    agreement,
    alpha_beta,
    combine,
    gate,
    sinkhorn,
)


def sinkhorn_numpy(scores: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """SwAV's distributed_sinkhorn, single process, in plain numpy (the reference)."""
    q = np.exp(scores / eps).T  # K x N
    q /= q.sum()
    k, n = q.shape
    for _ in range(iters):
        q /= q.sum(axis=1, keepdims=True)
        q /= k
        q /= q.sum(axis=0, keepdims=True)
        q /= n
    q *= n
    return q.T


def test_sinkhorn_matches_swav_reference() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(-1, 1, (64, 6))
    scores[:, 2] += 0.6  # one class favoured by every sample
    got = sinkhorn(torch.from_numpy(scores), eps=0.05, iters=3).numpy()
    np.testing.assert_allclose(got, sinkhorn_numpy(scores, 0.05, 3), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)  # soft labels per sample
    # Class marginals: nearer N/K than without balancing after 3 iterations, exact at convergence.
    plain = torch.softmax(torch.from_numpy(scores) / 0.05, dim=1).numpy()
    spread = np.abs(plain.sum(axis=0) / (64 / 6) - 1).max()
    assert np.abs(got.sum(axis=0) / (64 / 6) - 1).max() < 0.5 * spread
    conv = sinkhorn(torch.from_numpy(scores), eps=0.05, iters=200).numpy()
    np.testing.assert_allclose(conv.sum(axis=0), 64 / 6, rtol=1e-6)
    # Without balancing, class 2 would take most samples.
    assert (scores.argmax(axis=1) == 2).mean() > 0.4
    assert (conv.argmax(axis=1) == 2).mean() < 0.3


def test_sinkhorn_is_stable_for_large_scores_and_keeps_dtype() -> None:
    scores = torch.tensor([[200.0, 0.0], [0.0, 200.0], [150.0, -50.0]], dtype=torch.float32)
    q = sinkhorn(scores, eps=0.05)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(3))
    with pytest.raises(ValueError):
        sinkhorn(torch.zeros(3))


def test_combine_in_log_space_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(-1, 1, (5, 6))
    p = rng.dirichlet(np.ones(6), 5)
    p[0, 3] = 0.0  # floored, not -inf
    alpha, beta, tau = 0.7, 1.8, 0.1
    got = combine(torch.from_numpy(s), torch.from_numpy(p), alpha, beta, tau).numpy()

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    want = log_softmax(alpha * log_softmax(s / tau) + beta * np.log(np.maximum(p, P_GEO_FLOOR)))
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(np.exp(got).sum(axis=1), 1.0)
    # alpha = 0: the prior alone; beta = 0: the image scores alone.
    prior_only = combine(torch.from_numpy(s), torch.from_numpy(p), 0.0, 1.0).exp().numpy()
    np.testing.assert_allclose(
        prior_only, np.maximum(p, P_GEO_FLOOR) / np.maximum(p, P_GEO_FLOOR).sum(1, keepdims=True)
    )
    image_only = combine(torch.from_numpy(s), torch.from_numpy(p), 1.0, 0.0, tau).numpy()
    np.testing.assert_allclose(image_only, log_softmax(s / tau), rtol=1e-10)
    with pytest.raises(ValueError):
        combine(torch.zeros(2, 6), torch.zeros(2, 5), 1.0, 1.0)


def test_gate() -> None:
    q = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
    out = gate(q, 0.5)
    assert out.confident.tolist() == [True, False, True]
    assert out.hard.tolist() == [0, 0, 2]
    assert out.q is q
    assert gate(q, 0.0).confident.all() and not gate(q, 0.9).confident.any()


def test_alpha_beta_schedule() -> None:
    cfg = PseudoLabelConfig(
        alpha_start=0.1,
        alpha_end=1.0,
        beta_start=2.0,
        beta_end=0.5,
        ramp_start_epoch=2,
        ramp_epochs=4,
    )
    assert alpha_beta(0, cfg) == (0.1, 2.0)
    assert alpha_beta(2, cfg) == (0.1, 2.0)
    a, b = alpha_beta(4, cfg)
    assert a == pytest.approx(0.55) and b == pytest.approx(1.25)
    assert alpha_beta(6, cfg) == (1.0, 0.5) == alpha_beta(100, cfg)
    alphas = [alpha_beta(e / 2, cfg)[0] for e in range(20)]
    assert alphas == sorted(alphas)
    with pytest.raises(ValueError):
        PseudoLabelConfig(gamma=1.5)


def _batches(n: int, b: int, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(n):
        s = torch.rand(b, k, generator=g) * 2 - 1
        p = torch.softmax(torch.randn(b, k, generator=g) * 2, dim=1)
        out.append((s, p))
    return out


def test_pseudolabeler_queue_and_exact_resume() -> None:
    cfg = PseudoLabelConfig(queue_size=20, gamma=0.4)
    batches = _batches(6, 8, 6)
    a = PseudoLabeler(6, cfg)
    for s, p in batches[:3]:
        a(s, p, epoch=1.0)
    assert a.queued == 20  # 24 rows pushed, the oldest 4 dropped
    state = a.state_dict()
    b = PseudoLabeler(6, cfg)
    b.load_state_dict(state)
    for s, p in batches[3:]:
        out_a, out_b = a(s, p, epoch=2.5), b(s, p, epoch=2.5)
        assert torch.equal(out_a.q, out_b.q)
        assert torch.equal(out_a.confident, out_b.confident)
        assert torch.equal(out_a.hard, out_b.hard)
    # The state is a copy: changing the labeller afterwards does not change a saved state.
    before = state["scores"].clone()
    a(*batches[0], epoch=3.0)
    assert torch.equal(state["scores"], before)
    with pytest.raises(ValueError, match="PseudoLabelConfig"):
        PseudoLabeler(6, PseudoLabelConfig(queue_size=21)).load_state_dict(state)


def test_pseudolabeler_balances_over_the_queue() -> None:
    # A prior that prefers class 0 a little for everyone: the queue lets Sinkhorn spread it.
    cfg = PseudoLabelConfig(
        queue_size=64,
        alpha_start=0.0,
        alpha_end=0.0,
        beta_start=1.0,
        beta_end=1.0,
        sinkhorn_iters=3,
    )
    lab = PseudoLabeler(4, cfg)
    g = torch.Generator().manual_seed(0)
    for _ in range(8):
        p = torch.softmax(torch.randn(16, 4, generator=g) + torch.tensor([1.0, 0, 0, 0]), dim=1)
        out = lab(torch.zeros(16, 4), p, epoch=0)
        torch.testing.assert_close(out.q.sum(dim=1), torch.ones(16))
    # Balanced over the queue: the columns of q over the queued rows are near uniform.
    scores, log_prior = lab._queue_rows()
    q = sinkhorn(combine(scores, log_prior.exp(), 0.0, 1.0), cfg.sinkhorn_eps, 3)
    assert (q.sum(dim=0) / (len(q) / 4) - 1).abs().max() < 0.05
    assert (p.argmax(dim=1) == 0).float().mean() > 0.4
    assert (q.argmax(dim=1) == 0).float().mean() < 0.4


def test_image_weight_is_earned_with_trust_power() -> None:
    """The image side agrees with the prior on 4 rows of 8 (r = 1/2, K = 4: trust = 1/3): the
    scheduled α = 1 becomes trust ** p, and the rows where the two disagree follow the prior
    more as p grows (no label involved)."""
    k, n = 4, 8
    prior_cls = torch.arange(n) % k
    image_cls = torch.where(torch.arange(n) < 4, prior_cls, (prior_cls + 1) % k)
    scores = torch.nn.functional.one_hot(image_cls, k).float() * 0.3
    p_geo = torch.softmax(torch.nn.functional.one_hot(prior_cls, k).float() * 2.0, dim=1)
    kw = {"queue_size": 0, "alpha_start": 1.0, "alpha_end": 1.0, "beta_start": 1.0}
    follows_prior = []
    for power, want_alpha in ((1.0, 1 / 3), (4.0, (1 / 3) ** 4)):
        lab = PseudoLabeler(k, PseudoLabelConfig(**kw, beta_end=1.0, trust_power=power))
        out = lab(scores, p_geo, epoch=5.0)
        assert lab.last_trust == pytest.approx(1 / 3)
        assert lab.last_alpha == pytest.approx(want_alpha)
        follows_prior.append(float(out.q[4:, :].gather(1, prior_cls[4:, None]).mean()))
    assert follows_prior[1] > follows_prior[0]
    with pytest.raises(ValueError, match="trust_power"):
        PseudoLabelConfig(trust_power=0.5)


def test_pseudolabeler_without_queue_and_shapes() -> None:
    lab = PseudoLabeler(3, PseudoLabelConfig(queue_size=0))
    s, p = torch.rand(5, 3), torch.full((5, 3), 1 / 3)
    out = lab(s, p, epoch=0)
    assert out.q.shape == (5, 3) and lab.queued == 0
    with pytest.raises(ValueError):
        lab(torch.rand(5, 4), torch.rand(5, 4), epoch=0)


def test_agreement_per_class() -> None:
    classes = ("anger", "disgust", "fear")
    hard = torch.tensor([0, 0, 1, 2, 2, 1, 0])
    labels = ["anger", "disgust", "disgust", "fear", "neutral", None, "anger"]
    out = agreement(hard, labels, classes)
    assert out["count"] == 5 and out["unmatched"] == 2
    assert out["overall"] == pytest.approx(4 / 5)
    assert out["agreement/anger"] == 1.0
    assert out["agreement/disgust"] == 0.5
    assert out["agreement/fear"] == 1.0
    assert out["count/disgust"] == 2
    empty = agreement([0], ["anger"], ("anger", "fear"))
    assert math.isnan(empty["agreement/fear"])
    with pytest.raises(ValueError):
        agreement([0, 1], ["anger"], classes)

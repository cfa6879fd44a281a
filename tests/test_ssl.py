"""Tests of course_lib.ssl: the known pitfalls of MoCo, BYOL and MAE, on tiny data."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from course_lib.ssl import (
    BYOL,
    MAE,
    MoCo,
    PredictionHead,
    ProjectionHead,
    SplitBatchNorm1d,
    SplitBatchNorm2d,
    byol_loss,
    collapse_std,
    convert_to_split_bn,
    copy_as_target,
    cosine_tau,
    deactivate_requires_grad,
    info_nce,
    mae_loss,
    momentum_update,
    patchify,
    random_masking,
    unpatchify,
)


def tiny_cnn(width: int = 8, out: int = 16) -> nn.Module:
    """A 1x8x8-image encoder with BatchNorm, output (N, out)."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * width, out),
    )


def views(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)


# --------------------------------------------------------------------------- common


def test_projection_head_layers_and_shapes():
    head = ProjectionHead(16, 32, 8, num_layers=3, batchnorm=True)
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == 2
    assert head(torch.randn(5, 16)).shape == (5, 8)
    plain = ProjectionHead(16, 32, 8, num_layers=2, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain)
    assert isinstance(ProjectionHead(16, 32, 8, num_layers=1)[0], nn.Linear)
    assert PredictionHead(8, 16, 8)(torch.randn(4, 8)).shape == (4, 8)
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(16, 32, 8, num_layers=0)


def test_copy_as_target_is_frozen_independent_and_keeps_mode():
    net = tiny_cnn().train()
    target = copy_as_target(net)
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in net.parameters())
    assert target.training  # not forced into eval mode
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert not torch.equal(next(net.parameters()), next(target.parameters()))
    assert deactivate_requires_grad(nn.Linear(2, 2)).weight.requires_grad is False


def test_momentum_update_tau_one_keeps_target_and_tau_zero_copies():
    online, target = tiny_cnn(), tiny_cnn()
    online(torch.rand(4, 1, 8, 8))  # move online BN running stats
    before = {k: v.clone() for k, v in target.named_parameters()}
    momentum_update(online, target, tau=1.0)
    for k, v in target.named_parameters():
        assert torch.equal(v, before[k])
    momentum_update(online, target, tau=0.0)
    for (k, v), (_, w) in zip(target.named_parameters(), online.named_parameters()):
        assert torch.equal(v, w), k
    for (k, v), (_, w) in zip(target.named_buffers(), online.named_buffers()):
        assert torch.equal(v, w), k  # buffers are copied


def test_momentum_update_is_the_ema_formula():
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    t0 = target.weight.detach().clone()
    momentum_update(online, target, tau=0.9)
    torch.testing.assert_close(target.weight, 0.9 * t0 + 0.1 * online.weight.detach())
    with pytest.raises(ValueError, match="tau"):
        momentum_update(online, target, tau=1.5)
    with pytest.raises(ValueError, match="copy_as_target"):
        momentum_update(online, nn.Linear(3, 2, bias=False), tau=0.5)


def test_cosine_tau_starts_at_base_and_ends_at_one():
    assert cosine_tau(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_tau(100, 100, 0.99) == 1.0
    assert cosine_tau(150, 100, 0.99) == 1.0
    assert cosine_tau(50, 100, 0.99) == pytest.approx(0.995)
    values = [cosine_tau(k, 100, 0.99) for k in range(101)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="total_steps"):
        cosine_tau(0, 0, 0.99)


# --------------------------------------------------------------------------- split BN


def test_split_bn_computes_per_chunk_statistics():
    torch.manual_seed(0)
    bn = SplitBatchNorm2d(3, num_splits=2).train()
    x = torch.randn(8, 3, 4, 4)
    out = bn(x)
    x2 = x.clone()
    x2[4:] = 5 * torch.randn(4, 3, 4, 4) + 3  # change chunk 1 only
    out2 = bn(x2)
    torch.testing.assert_close(out2[:4], out[:4])  # chunk 0 unaffected
    assert not torch.allclose(out2[4:], out[4:])
    # each chunk is normalised exactly as a plain BN would normalise it alone
    ref = nn.BatchNorm2d(3).train()
    torch.testing.assert_close(out[4:], ref(x[4:]))
    # a plain BN over the whole batch is different: the chunks really are separate
    assert not torch.allclose(nn.BatchNorm2d(3).train()(x2)[:4], out2[:4], atol=1e-3)


def test_split_bn_running_stats_eval_mode_and_errors():
    torch.manual_seed(0)
    bn = SplitBatchNorm1d(2, num_splits=2, momentum=1.0).train()
    x = torch.randn(6, 2)
    bn(x)
    chunks = [x[:3], x[3:]]
    torch.testing.assert_close(bn.running_mean, torch.stack([c.mean(0) for c in chunks]).mean(0))
    torch.testing.assert_close(bn.running_var, torch.stack([c.var(0) for c in chunks]).mean(0))
    bn.eval()
    plain = nn.BatchNorm1d(2).eval()
    plain.load_state_dict(bn.state_dict())
    torch.testing.assert_close(bn(x), plain(x))
    bn.train()
    with pytest.raises(ValueError, match="divisible by 2"):
        bn(torch.randn(5, 2))


def test_convert_to_split_bn_keeps_weights():
    net = tiny_cnn().eval()
    with torch.no_grad():
        net[1].weight.fill_(2.0)
        net[1].running_mean.fill_(0.3)
    x = torch.rand(4, 1, 8, 8)
    ref = net(x)
    net = convert_to_split_bn(net, 2)
    assert isinstance(net[1], SplitBatchNorm2d) and net[1].num_splits == 2
    assert not net.training and not net[1].training
    torch.testing.assert_close(net(x), ref)
    assert isinstance(convert_to_split_bn(nn.BatchNorm1d(4), 2), SplitBatchNorm1d)


# --------------------------------------------------------------------------- MoCo


def test_info_nce_of_random_unit_vectors_is_ln_k_plus_one():
    g = torch.Generator().manual_seed(0)
    n, d, K = 512, 256, 1024
    q = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    k = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(d, K, generator=g), dim=0)
    loss, logits = info_nce(q, k, queue, T=1.0)
    assert logits.shape == (n, K + 1)
    assert abs(loss.item() - math.log(K + 1)) < 0.05


def test_info_nce_positive_is_at_index_zero():
    q = torch.eye(4)[:2]  # two queries
    queue = torch.eye(4)[:, 2:]  # negatives orthogonal to both
    loss, logits = info_nce(q, q.clone(), queue, T=0.1)
    assert (logits.argmax(1) == 0).all()
    assert loss.item() < 1e-3
    with pytest.raises(ValueError, match="queue.T"):
        info_nce(q, q, queue.T.contiguous()[:, :3], T=0.1)
    with pytest.raises(ValueError, match="T must be > 0"):
        info_nce(q, q, queue, T=0.0)


def make_moco(**kw) -> MoCo:
    torch.manual_seed(0)
    defaults = dict(dim=8, K=40, T=0.2, bn_splits=4)
    defaults.update(kw)
    return MoCo(tiny_cnn(), feature_dim=16, **defaults)


def test_moco_key_encoder_gets_no_gradient_and_is_not_in_optimizer():
    model = make_moco().train()
    key_params = {id(p) for p in [*model.encoder_k.parameters(), *model.projector_k.parameters()]}
    trainable = model.trainable_parameters()
    assert trainable == [p for p in model.parameters() if p.requires_grad]
    assert key_params.isdisjoint(id(p) for p in trainable)
    opt = torch.optim.SGD(trainable, lr=0.1)
    assert key_params.isdisjoint(id(p) for group in opt.param_groups for p in group["params"])
    x_q, x_k = views()
    out = model(x_q, x_k)
    out.loss.backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert all(p.grad is None for p in model.projector_k.parameters())
    assert all(p.grad is not None for p in model.encoder_q.parameters())


def test_moco_queue_is_a_buffer_in_state_dict():
    model = make_moco()
    names = dict(model.named_buffers())
    assert "queue" in names and "queue_ptr" in names
    sd = model.state_dict()
    assert sd["queue"].shape == (8, 40) and sd["queue_ptr"].dtype == torch.long
    assert "queue" not in dict(model.named_parameters())


def test_moco_queue_pointer_wraps_and_keys_are_unit_norm():
    model = make_moco(K=10)
    batches = [torch.randn(4, 8) * 3 for _ in range(3)]
    for b in batches:
        model.dequeue_and_enqueue(b)
    assert int(model.queue_ptr) == 12 % 10  # K=10 is not a multiple of the batch size 4
    unit = torch.nn.functional.normalize(batches[2], dim=1).T
    torch.testing.assert_close(model.queue[:, [8, 9, 0, 1]], unit)
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(10))
    with pytest.raises(ValueError, match="K >= batch size"):
        model.dequeue_and_enqueue(torch.randn(11, 8))


def test_moco_forward_uses_queue_before_enqueue():
    model = make_moco().train()
    x_q, x_k = views()
    old_queue = model.queue.clone()
    out = model(x_q, x_k)
    assert out.logits.shape == (16, 41) and (out.labels == 0).all()
    with torch.no_grad():
        q = model.query(x_q)  # query encoder unchanged by the forward
    torch.testing.assert_close(out.logits[:, 1:], q @ old_queue / model.T)
    assert int(model.queue_ptr) == 16
    torch.testing.assert_close(model.queue.norm(dim=0), torch.ones(40))


def test_moco_eval_mode_changes_nothing():
    model = make_moco()
    model.train()(*views())  # fill some state
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model(*views(seed=1))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_moco_symmetric_and_batch_checks():
    model = make_moco(symmetric=True).train()
    out = model(*views())
    assert out.logits.shape == (32, 41)
    assert int(model.queue_ptr) == 32
    with pytest.raises(ValueError, match="bn_splits"):
        make_moco()(*views(n=10))
    with pytest.raises(ValueError, match="feature_dim"):
        MoCo(tiny_cnn(out=12), feature_dim=16, K=40, dim=8, bn_splits=4)(*views())
    assert isinstance(make_moco(shuffle="none").encoder_q[1], nn.BatchNorm2d)
    assert isinstance(make_moco().encoder_q[1], SplitBatchNorm2d)
    with pytest.raises(ValueError, match="shuffle"):
        make_moco(shuffle="gpu")


def test_moco_training_steps_reduce_loss():
    # 128 "images", K=32: the queue holds a quarter of the data set.  (With K close to
    # the data-set size the queue fills with the very images of the batch and the loss
    # rises instead: K must be well below the number of training images.)
    torch.manual_seed(0)
    model = MoCo(tiny_cnn(16, 32), feature_dim=32, dim=16, K=32, m=0.99, bn_splits=4).train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(128, 1, 8, 8, generator=g)
    key_before = [p.clone() for p in model.encoder_k.parameters()]
    epoch_losses = []
    for _ in range(20):
        perm = torch.randperm(128, generator=g)
        losses = []
        for i in range(0, 128, 32):
            x = data[perm[i : i + 32]]
            x_q = x + 0.1 * torch.randn(x.shape, generator=g)
            x_k = x + 0.1 * torch.randn(x.shape, generator=g)
            out = model(x_q, x_k)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            losses.append(out.loss.item())
        assert all(math.isfinite(v) for v in losses)
        epoch_losses.append(sum(losses) / len(losses))
    # epoch 0 still sees the random initial queue; from epoch 1 on it holds real keys
    assert epoch_losses[-1] < epoch_losses[1] - 0.5
    # the key encoder moved, through the momentum update only (it has no gradients)
    assert any(not torch.equal(a, b) for a, b in zip(key_before, model.encoder_k.parameters()))
    assert all(p.grad is None for p in model.encoder_k.parameters())


# --------------------------------------------------------------------------- BYOL


def test_byol_loss_values():
    p = torch.randn(6, 5)
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -p).item() == pytest.approx(4.0, abs=1e-6)
    assert byol_loss(torch.eye(2)[:1], torch.eye(2)[1:]).item() == pytest.approx(2.0)
    z = torch.randn(6, 5, requires_grad=True)
    pp = torch.randn(6, 5, requires_grad=True)
    byol_loss(pp, z).backward()
    assert z.grad is None and pp.grad is not None  # target is detached


def test_collapse_std_healthy_and_collapsed():
    g = torch.Generator().manual_seed(0)
    d = 64
    healthy = collapse_std(torch.randn(4096, d, generator=g))
    assert healthy == pytest.approx(1 / math.sqrt(d), rel=0.05)
    assert collapse_std(torch.ones(100, d) * 3.0) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="N >= 2"):
        collapse_std(torch.ones(1, d))


def make_byol(**kw) -> BYOL:
    torch.manual_seed(0)
    return BYOL(tiny_cnn(), feature_dim=16, projection_dim=8, hidden_dim=32, **kw)


def test_byol_target_gets_no_gradient_and_is_not_in_optimizer():
    model = make_byol().train()
    target = [*model.target_encoder.parameters(), *model.target_projector.parameters()]
    assert {id(p) for p in target}.isdisjoint(id(p) for p in model.trainable_parameters())
    out = model(*views())
    out.loss.backward()
    assert all(p.grad is None for p in target)
    online = [*model.encoder.parameters(), *model.projector.parameters(), *model.predictor.parameters()]
    assert all(p.grad is not None for p in online)
    assert out.projections.shape == (16, 8) and not out.projections.requires_grad


def test_byol_update_target_follows_cosine_schedule():
    model = make_byol(tau_base=0.9)
    assert model.update_target(0, 10) == pytest.approx(0.9)
    frozen = [p.clone() for p in model.target_encoder.parameters()]
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(1.0)
    assert model.update_target(10, 10) == 1.0  # tau = 1 at the end: target unchanged
    for a, b in zip(frozen, model.target_encoder.parameters()):
        assert torch.equal(a, b)
    model.update_target(5, 10)  # tau = 0.95: target moves towards online
    for a, b in zip(frozen, model.target_encoder.parameters()):
        assert not torch.equal(a, b)


def test_byol_ablation_switches():
    simsiam = make_byol(use_ema=False)
    assert simsiam.target_encoder is None and simsiam.update_target(3, 10) == 0.0
    no_pred = make_byol(use_predictor=False)
    assert isinstance(no_pred.predictor, nn.Identity)
    for model in (simsiam, no_pred):
        out = model.train()(*views())
        out.loss.backward()
        assert math.isfinite(out.loss.item())
        assert all(p.grad is not None for p in model.encoder.parameters())


def test_byol_training_steps_reduce_loss():
    model = make_byol().train()
    opt = torch.optim.SGD(model.trainable_parameters(), lr=0.05, momentum=0.9)
    x1, x2 = views(n=32)
    losses = []
    for step in range(20):
        out = model(x1, x2)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.update_target(step, 20)
        losses.append(out.loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# --------------------------------------------------------------------------- MAE


def test_patchify_round_trips_exactly_and_orders_patches():
    x = torch.rand(2, 3, 8, 8)
    patches = patchify(x, 4)
    assert patches.shape == (2, 4, 4 * 4 * 3)
    assert torch.equal(unpatchify(patches, 4, 3), x)
    # patch 1 is the top-right block, flattened as (p, p, C)
    assert torch.equal(patches[:, 1], x[:, :, :4, 4:].permute(0, 2, 3, 1).reshape(2, -1))
    with pytest.raises(ValueError, match="not divisible by patch size"):
        patchify(torch.rand(1, 1, 6, 6), 4)


def test_random_masking_keeps_and_restores():
    g = torch.Generator().manual_seed(0)
    n, L, d, r = 5, 16, 3, 0.75
    x = torch.randn(n, L, d, generator=g)
    kept, mask, ids_restore = random_masking(x, r, generator=g)
    keep = int(L * (1 - r))
    assert kept.shape == (n, keep, d)
    assert (mask.sum(1) == L - keep).all()
    # ids_restore inverts the shuffle: kept tokens land back where mask == 0
    filler = torch.zeros(n, L - keep, d)
    restored = torch.gather(torch.cat([kept, filler], 1), 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
    visible = mask == 0
    assert torch.equal(restored[visible], x[visible])
    assert (restored[~visible] == 0).all()
    assert len({tuple(m.tolist()) for m in mask}) > 1  # per-sample masks
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="mask_ratio"):
            random_masking(x, bad)


def test_mae_loss_ignores_visible_patches():
    imgs = torch.rand(2, 1, 8, 8)
    mask = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    pred = torch.rand(2, 4, 16, requires_grad=True)
    loss = mae_loss(imgs, pred, mask, 4)
    changed = pred.detach().clone()
    changed[mask == 0] += 10.0
    torch.testing.assert_close(mae_loss(imgs, changed, mask, 4), loss)
    loss.backward()
    assert (pred.grad[mask == 0] == 0).all() and (pred.grad[mask == 1] != 0).any()
    target = patchify(imgs, 4)
    expected = ((pred.detach() - target) ** 2).mean(-1)[mask == 1].mean()
    torch.testing.assert_close(loss.detach(), expected)


def make_mae(**kw) -> MAE:
    torch.manual_seed(0)
    args = dict(image_size=8, patch_size=2, in_channels=1, enc_dim=32, enc_depth=2, enc_heads=4,
                dec_dim=16, dec_depth=1, dec_heads=2)
    args.update(kw)
    return MAE(**args)


def test_mae_encoder_sees_only_visible_tokens_and_shapes():
    model = make_mae()
    imgs = torch.rand(3, 1, 8, 8)
    latent, mask, _ = model.forward_encoder(imgs, 0.75)
    assert latent.shape == (3, 1 + int(16 * 0.25), 32)
    loss, pred, mask = model(imgs)
    assert pred.shape == (3, 16, 4) and mask.shape == (3, 16) and loss.dim() == 0
    assert model.reconstruct(pred, imgs, mask).shape == imgs.shape
    with pytest.raises(ValueError, match="mask_ratio"):
        model(imgs, mask_ratio=1.0)
    with pytest.raises(ValueError, match="features"):
        model(imgs, mask_ratio=0.0)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        make_mae(image_size=10, patch_size=4)
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        model(torch.rand(3, 3, 8, 8))


def test_mae_features_use_all_patches_in_order():
    model = make_mae(pos_embed="learned").eval()
    imgs = torch.rand(3, 1, 8, 8)
    assert model.features(imgs, "cls").shape == (3, 32)
    assert model.features(imgs, "mean").shape == (3, 32)
    flat = model.features(imgs, "flat")
    assert flat.shape == (3, 16 * 32)
    torch.testing.assert_close(model.features(imgs, "flat"), flat)  # no random masking
    torch.testing.assert_close(model.as_backbone("mean")(imgs), model.features(imgs, "mean"))
    with pytest.raises(ValueError, match="pool"):
        model.features(imgs, "max")


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_mae_training_steps_reduce_loss(norm_pix_loss):
    model = make_mae(norm_pix_loss=norm_pix_loss).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    imgs = torch.rand(8, 1, 8, 8)
    losses = []
    for _ in range(25):
        g = torch.Generator().manual_seed(0)  # the same masks every step
        loss, _, _ = model(imgs, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0]

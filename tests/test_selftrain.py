"""Self-training with a few labels and an unlabelled pool (course_lib.selftrain)."""

from __future__ import annotations

import pytest
import torch

from course_lib.selftrain import self_train
from course_lib.ssl.encoders import ConvEncoder
from data_fixtures import stripe_images


def settled(enc: ConvEncoder, images: torch.Tensor) -> ConvEncoder:
    """The encoder with BatchNorm statistics of ``images``, as a pretrained encoder has them."""
    bns = [m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None  # cumulative average
    with torch.no_grad():
        enc.train()(images.float() / 255)
    for m in bns:
        m.momentum = 0.1
    return enc.eval()


def test_student_learns_the_pool_from_four_labels_and_leaves_the_encoder_alone():
    torch.manual_seed(0)
    pool, truth = stripe_images()
    idx = torch.tensor([0, 1, 64, 65])
    enc = settled(ConvEncoder(1, (8, 16)), pool)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    res = self_train(enc, pool[idx], truth[idx], pool, Cs=(0.1, 1.0), epochs=3, rounds=2, batch_size=32)
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in before.items())  # the pretrained encoder is a copy
    assert not torch.equal(res.model[0].features[0][0].weight, enc.features[0][0].weight)  # every layer trained
    assert res.pseudo_labels.shape == (len(pool),) and res.teacher_C in (0.1, 1.0)
    assert not res.model.training
    with torch.no_grad():
        acc = float((res.model(pool.float() / 255).argmax(1) == truth).float().mean())
    assert acc > 0.95


def test_bad_inputs_name_the_problem():
    enc = ConvEncoder(1, (8, 16))
    pool, truth = stripe_images(8)
    with pytest.raises(ValueError, match="as many labels"):
        self_train(enc, pool[:4], truth[:3], pool)
    with pytest.raises(ValueError, match="epochs and rounds"):
        self_train(enc, pool[:4], truth[:4], pool, rounds=0)
    with pytest.raises(ValueError, match="shaped like the labelled ones"):
        self_train(enc, pool[:4], truth[:4], torch.zeros(5, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one label per unlabelled image"):
        self_train(enc, pool[:4], truth[:4], pool, pseudo_labels=truth[:3])


def test_another_teachers_labels_are_what_the_student_learns():
    torch.manual_seed(0)
    pool, truth = stripe_images()
    idx = torch.tensor([0, 1, 64, 65])
    enc = settled(ConvEncoder(1, (8, 16)), pool)
    flipped = 1 - truth  # a teacher that is always wrong, except on the labelled four (added with true labels)
    res = self_train(enc, pool[idx], truth[idx], pool, Cs=(1.0,), epochs=3, batch_size=32, pseudo_labels=flipped)
    assert torch.equal(res.pseudo_labels, flipped)
    with torch.no_grad():
        acc = float((res.model(pool.float() / 255).argmax(1) == truth).float().mean())
    assert acc < 0.5  # it followed the given labels, not the probe's

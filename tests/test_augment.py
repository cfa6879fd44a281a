"""Tests for course_lib.augment: per-image randomness, reproducibility, correctness, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as tv2
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from course_lib import augment as A

EIGVALS = torch.tensor([0.05, 0.01, 0.002])
EIGVECS = torch.linalg.qr(torch.tensor([[1.0, 0.5, 0.2], [0.9, -0.3, 0.4], [0.8, 0.1, -0.7]]))[0]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 4, c: int = 3, h: int = 8, w: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=gen(seed))


def copies(n: int = 16, c: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    """n identical images in one batch."""
    return batch(1, c, h, w).expand(n, -1, -1, -1).contiguous()


# Every random transform, configured so that it changes (almost) every image.
RANDOM = {
    "hflip": lambda: A.RandomHorizontalFlip(),
    "vflip": lambda: A.RandomVerticalFlip(),
    "crop": lambda: A.RandomCrop((8, 10), padding=2),
    "crop_reflect": lambda: A.RandomCrop(6, padding=(1, 2), padding_mode="reflect"),
    "resized_crop": lambda: A.RandomResizedCrop((8, 10)),
    "affine": lambda: A.RandomAffine(20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10, fill=0.5),
    "rotation": lambda: A.RandomRotation(30),
    "elastic": lambda: A.ElasticDistortion(alpha=8, sigma=1.5),
    "erasing": lambda: A.RandomErasing(p=1.0),
    "cutout": lambda: A.Cutout(4),
    "noise": lambda: A.GaussianNoise(0.1),
    "jitter": lambda: A.ColorJitter(0.4, 0.4, 0.4),
    "gray": lambda: A.RandomGrayscale(0.5),
    "lighting": lambda: A.PCALighting(EIGVALS, EIGVECS, alphastd=0.5),
    "apply": lambda: A.RandomApply(A.GaussianNoise(0.2), p=0.5),
}
DETERMINISTIC = {
    "identity": lambda: A.Identity(),
    "grayscale": lambda: A.Grayscale(),
    "normalize": lambda: A.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
    "compose": lambda: A.Compose([A.Grayscale(), A.Normalize(0.5, 0.25)]),
}
RGB_ONLY = {"lighting"}


def out_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    return (*x.shape[:2], 6, 6) if name == "crop_reflect" else tuple(x.shape)


@pytest.mark.parametrize("name", sorted(RANDOM) + sorted(DETERMINISTIC))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_preserved(name, channels, dtype):
    if name in RGB_ONLY and channels == 1:
        pytest.skip("RGB only")
    t = {**RANDOM, **DETERMINISTIC}[name]()
    if name in ("normalize", "compose") and channels == 1:
        t = A.Normalize(0.5, 0.2)
    x = batch(c=channels).to(dtype)
    y = t(x, generator=gen())
    assert y.shape == out_shape(name, x)
    assert y.dtype == dtype and y.device == x.device
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_identical_images_get_different_parameters(name):
    x = copies()
    y = RANDOM[name]()(x, generator=gen(1))
    distinct = torch.unique(y.flatten(1), dim=0).shape[0]
    assert distinct > 1, f"{name}: all {len(x)} copies came out identical"


def test_torchvision_v2_shares_one_draw_across_the_batch_but_we_do_not():
    x = copies(8)
    torch.manual_seed(0)
    theirs = tv2.RandomCrop(6, padding=2)(x)
    assert all(torch.equal(theirs[0], theirs[i]) for i in range(8))
    ours = A.RandomCrop(6, padding=2)(x, generator=gen(0))
    assert not all(torch.equal(ours[0], ours[i]) for i in range(8))


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_same_seed_same_output_different_seed_different_output(name):
    t = RANDOM[name]()
    x = batch(8)
    a, b, c = t(x, generator=gen(3)), t(x, generator=gen(3)), t(x, generator=gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_rng_used_without_generator():
    t = A.Compose([A.RandomCrop(6, padding=2), A.GaussianNoise(0.1)])
    x = batch()
    torch.manual_seed(5)
    a = t(x)
    torch.manual_seed(5)
    assert torch.equal(a, t(x))


def test_compose_passes_the_generator_through_in_order():
    steps = [A.RandomHorizontalFlip(), A.GaussianNoise(0.1)]
    x, g = batch(), gen(7)
    expected = steps[1](steps[0](x, generator=g), generator=g)
    assert torch.equal(A.Compose(steps)(x, generator=gen(7)), expected)


def test_flips_with_p1_equal_torch_flip_and_p0_are_identity():
    x = batch()
    assert torch.equal(A.RandomHorizontalFlip(1.0)(x, gen()), torch.flip(x, dims=[-1]))
    assert torch.equal(A.RandomVerticalFlip(1.0)(x, gen()), torch.flip(x, dims=[-2]))
    assert torch.equal(A.RandomHorizontalFlip(0.0)(x, gen()), x)


def test_flip_probability_is_per_image():
    x = copies(2000, c=1, h=2, w=2)
    y = A.RandomHorizontalFlip(0.3)(x, gen())
    flipped = (y != x).flatten(1).any(1).float().mean().item()
    assert abs(flipped - 0.3) < 0.05


def test_random_crop_without_padding_at_full_size_is_identity():
    x = batch()
    assert torch.equal(A.RandomCrop((8, 10))(x, gen()), x)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_random_crop_returns_a_window_of_the_padded_image(mode):
    x = batch(6, h=5, w=6)
    pad = F.pad(x, (2, 2, 2, 2), mode={"zeros": "constant"}.get(mode, mode))
    y = A.RandomCrop((4, 5), padding=2, padding_mode=mode)(x, gen())
    for img, padded in zip(y, pad):
        windows = [padded[:, i:i + 4, j:j + 5] for i in range(6) for j in range(6)]
        assert any(torch.equal(img, w) for w in windows)


def test_random_resized_crop_full_box_is_a_bilinear_resize():
    x = batch(h=6, w=6)
    t = A.RandomResizedCrop((12, 12), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    expected = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(t(x, gen()), expected, atol=1e-5, rtol=0)
    same = A.RandomResizedCrop((6, 6), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(same(x, gen()), x, atol=1e-5, rtol=0)


def test_random_resized_crop_falls_back_to_centre_crop_when_no_box_fits():
    # On a 4x16 image a 2:1 box of >= 90 % of the area is ~11x5.5 px and never fits, so the
    # fallback is the full-height box trimmed to ratio 2 (8 px wide), centred: columns 4..11.
    x = batch(2, h=4, w=16)
    t = A.RandomResizedCrop((4, 8), scale=(0.9, 1.0), ratio=(2.0, 2.0))
    expected = F.interpolate(x[..., 4:12], size=(4, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(t(x, gen()), expected, atol=1e-5, rtol=0)


def test_rotation_zero_and_affine_without_parameters_are_identity():
    x = batch()
    torch.testing.assert_close(A.RandomRotation(0)(x, gen()), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(A.RandomAffine()(x, gen()), x, atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_is_counter_clockwise_rot90():
    x = batch(h=7, w=7)
    y = A.RandomRotation((90, 90))(x, gen())
    torch.testing.assert_close(y, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    torch.testing.assert_close(y, TF.rotate(x, 90, interpolation=InterpolationMode.BILINEAR), atol=1e-5, rtol=0)


def test_affine_matches_torchvision_for_fixed_parameters():
    x = batch(2, h=9, w=12)
    ours = A.RandomAffine(degrees=(25, 25), scale=(1.2, 1.2), shear=(8, 8, -5, -5))(x, gen())
    # torchvision's functional affine counts angles clockwise.
    ref = TF.affine(x, angle=-25, translate=[0, 0], scale=1.2, shear=[8, -5],
                    interpolation=InterpolationMode.BILINEAR)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_affine_fill_paints_the_outside():
    x = torch.zeros(2, 3, 8, 8)
    y = A.RandomRotation((45, 45), fill=[1.0, 0.5, 0.25])(x, gen())
    corner = y[:, :, 0, 0]
    torch.testing.assert_close(corner, torch.tensor([[1.0, 0.5, 0.25]] * 2), atol=1e-5, rtol=0)
    assert y[:, :, 4, 4].abs().max() < 1e-6
    # the border blends exactly: a constant image filled with its own value stays constant
    # (torchvision's bilinear fill attenuates the image twice near the border and fails this)
    c = torch.full((4, 1, 9, 9), 0.7)
    torch.testing.assert_close(A.RandomAffine(30, scale=(0.7, 0.9), fill=0.7)(c, gen()), c, atol=1e-5, rtol=0)


def test_random_resized_crop_does_not_darken_the_border():
    x = torch.ones(8, 1, 6, 6)
    y = A.RandomResizedCrop((16, 16), scale=(0.2, 1.0))(x, gen())
    torch.testing.assert_close(y, torch.ones_like(y))


def test_affine_translation_stays_within_its_range():
    x = torch.zeros(64, 1, 20, 20)
    x[:, :, 10, 10] = 1.0
    y = A.RandomAffine(translate=(0.1, 0.2))(x, gen())
    rows = torch.arange(20.0).view(1, 20, 1)
    cols = torch.arange(20.0).view(1, 1, 20)
    mass = y[:, 0].sum((1, 2))
    dy = (y[:, 0] * rows).sum((1, 2)) / mass - 10
    dx = (y[:, 0] * cols).sum((1, 2)) / mass - 10
    assert dx.abs().max() <= 2.0 + 1e-4 and dy.abs().max() <= 4.0 + 1e-4
    assert dx.abs().max() > 1.0 and dy.abs().max() > 2.0  # the range is actually used


def test_elastic_without_displacement_is_the_identity():
    x = batch(3, 1, 28, 28)
    assert torch.allclose(A.ElasticDistortion(alpha=0)(x, generator=gen()), x, atol=1e-5)


def test_elastic_field_is_smooth_per_image_and_of_simards_size():
    t = A.ElasticDistortion(alpha=34, sigma=4)
    d = t.displacement(200, 28, 28, generator=gen())
    assert d.shape == (200, 2, 28, 28)
    # sigma=4, alpha=34 on 28 px moves a pixel by about 1.3 px (std), never by half the image
    assert 0.8 < float(d.std()) < 2.0 and float(d.abs().max()) < 14
    # smooth: neighbouring pixels move almost together (unsmoothed noise would not: correlation ~0)
    a, b = d[..., 10:18, 10:17].flatten(), d[..., 10:18, 11:18].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9
    assert not torch.allclose(d[0], d[1]), "each image gets its own field"


def test_elastic_moves_ink_without_creating_it():
    x = torch.zeros(8, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a vertical stroke, well inside the image
    y = A.ElasticDistortion(alpha=34, sigma=4)(x, generator=gen())
    assert not torch.allclose(y, x, atol=1e-3)
    assert float(y.min()) >= 0 and float(y.max()) <= 1 + 1e-6  # bilinear resampling: a convex combination
    ratio = y.sum((1, 2, 3)) / x.sum((1, 2, 3))  # stretched parts gain ink, squeezed parts lose it
    assert bool(((ratio > 0.4) & (ratio < 2.5)).all()), f"the stroke bends, it must not vanish or blow up: {ratio}"


def test_random_erasing_paints_one_rectangle_of_the_right_size():
    x = torch.ones(50, 1, 20, 20)
    y = A.RandomErasing(p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), value=0.0)(x, gen())
    erased = y == 0
    area = erased.float().mean((1, 2, 3))
    assert (area >= 0.07).all() and (area <= 0.23).all()  # rounding to whole pixels
    # one axis-aligned rectangle: its bounding box is fully erased
    for m in erased[:, 0]:
        r, c = m.any(1).nonzero(), m.any(0).nonzero()
        assert m[r.min():r.max() + 1, c.min():c.max() + 1].all()


def test_random_erasing_per_channel_and_random_values():
    x = torch.zeros(4, 3, 10, 10)
    y = A.RandomErasing(p=1.0, value=[0.1, 0.2, 0.3])(x, gen())
    m = y[:, 0] != 0
    assert m.any()
    assert torch.allclose(y[:, 1][m], torch.tensor(0.2)) and torch.allclose(y[:, 2][m], torch.tensor(0.3))
    z = A.RandomErasing(p=1.0, value="random")(x, gen())
    assert z.std() > 0


def test_cutout_zeroes_at_most_a_size_by_size_square():
    x = torch.ones(100, 1, 12, 12)
    y = A.Cutout(4)(x, gen())
    zeros = (y == 0).sum((1, 2, 3))
    assert (zeros <= 16).all() and (zeros >= 4).all()  # clipped at a corner: at least 2x2
    assert (zeros == 16).float().mean() > 0.3
    assert torch.equal(A.Cutout(4, p=0.0)(x, gen()), x)


def test_gaussian_noise_std_is_the_standard_deviation_not_the_variance():
    x = torch.full((64, 3, 16, 16), 0.5)
    for std in (0.05, 0.3):
        noise = A.GaussianNoise(std, clip=False)(x, gen()) - x
        assert abs(noise.std().item() - std) < 0.03 * std
        assert abs(noise.mean().item()) < 0.02 * std * 10
    clipped = A.GaussianNoise(0.5)(x, gen())
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_color_jitter_brightness_factor_per_image_in_range():
    x = torch.full((200, 3, 2, 2), 0.4)
    y = A.ColorJitter(brightness=0.5)(x, gen())
    factor = y[:, 0, 0, 0] / 0.4
    assert factor.min() >= 0.5 - 1e-5 and factor.max() <= 1.5 + 1e-5
    assert factor.std() > 0.2  # spread over the range, one factor per image
    assert torch.allclose(y, y[:, :1, :1, :1].expand_as(y))  # same factor for all pixels of an image


def test_color_jitter_contrast_and_saturation_limits():
    x = batch(3, c=3)
    flat = A.ColorJitter(contrast=(0.0, 0.0))(x, gen())
    gray_mean = A.Grayscale()(x, gen()).mean((1, 2, 3))
    torch.testing.assert_close(flat, gray_mean.view(-1, 1, 1, 1).expand_as(x), atol=1e-6, rtol=0)
    desat = A.ColorJitter(saturation=(0.0, 0.0))(x, gen())
    torch.testing.assert_close(desat, A.Grayscale()(x, gen()), atol=1e-6, rtol=0)
    g = batch(3, c=1)
    assert torch.equal(A.ColorJitter(saturation=0.9)(g, gen()), g)  # no-op on grey images


def test_grayscale_uses_itu_601_weights_and_keeps_channels():
    x = torch.zeros(3, 3, 2, 2)
    for i in range(3):
        x[i, i] = 1.0
    y = A.Grayscale()(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[:, :, 0, 0], torch.tensor([[0.299] * 3, [0.587] * 3, [0.114] * 3]))
    g = batch(c=1)
    assert torch.equal(A.Grayscale()(g), g)


def test_pca_lighting_per_image_shift_with_zero_mean():
    x = torch.full((4000, 3, 2, 2), 0.5)
    y = A.PCALighting(EIGVALS, EIGVECS, alphastd=0.1)(x, gen())
    shift = y - x
    per_image = shift[:, :, 0, 0]
    assert torch.allclose(shift, per_image.view(-1, 3, 1, 1).expand_as(shift))  # whole image, one colour
    # mean colour preserved over many images (alpha has mean 0)
    typical = 0.1 * EIGVALS[0]
    assert per_image.mean(0).abs().max() < 0.1 * typical
    # and the shifts have covariance eigvecs diag((alphastd * eigvals)^2) eigvecs^T
    expected_cov = EIGVECS @ torch.diag((0.1 * EIGVALS) ** 2) @ EIGVECS.T
    torch.testing.assert_close(torch.cov(per_image.T), expected_cov, atol=0.1 * typical**2, rtol=0)


def test_pca_lighting_from_data_recovers_a_known_covariance():
    g = gen(11)
    q = torch.linalg.qr(torch.randn(3, 3, generator=g))[0]
    lam = torch.tensor([0.04, 0.01, 0.0025])
    z = torch.randn(20000, 3, generator=g) * lam.sqrt()
    pixels = 0.5 + z @ q.T  # covariance q diag(lam) q^T
    images = pixels.view(5000, 2, 2, 3).permute(0, 3, 1, 2)
    vals, vecs = A.pca_lighting_from_data(images, max_pixels=15000)
    assert vals.shape == (3,) and vecs.shape == (3, 3)
    assert (vals > 0).all() and (vals[:-1] > vals[1:]).all()
    torch.testing.assert_close(vecs.T @ vecs, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(vals, lam, rtol=0.08, atol=0)
    torch.testing.assert_close((vecs.T @ q).abs(), torch.eye(3), atol=0.05, rtol=0)
    # uint8 input is read as 0..255 and gives the same answer in [0, 1] units
    u8 = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    vals8, _ = A.pca_lighting_from_data(u8)
    torch.testing.assert_close(vals8, A.pca_lighting_from_data(u8.float() / 255)[0], rtol=1e-4, atol=1e-7)


def test_random_apply_probability_extremes_and_rate():
    x = batch(32)
    noise = A.GaussianNoise(0.2, clip=False)
    assert torch.equal(A.RandomApply(noise, p=0.0)(x, gen()), x)
    always = A.RandomApply(A.RandomHorizontalFlip(1.0), p=1.0)(x, gen())
    assert torch.equal(always, x.flip(-1))
    many = copies(2000, c=1, h=2, w=2)
    changed = (A.RandomApply(noise, p=0.25)(many, gen()) != many).flatten(1).any(1).float().mean()
    assert abs(changed.item() - 0.25) < 0.05


def test_normalize_matches_the_formula_and_checks_channels():
    x = batch()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(A.Normalize(mean, std)(x), expected)
    with pytest.raises(ValueError, match="3 channels"):
        A.Normalize([0.1, 0.2], [1.0, 1.0])(x)


def test_reprs_are_readable():
    assert repr(A.RandomHorizontalFlip(0.3)) == "RandomHorizontalFlip(p=0.3)"
    assert repr(A.RandomCrop(32, padding=4, padding_mode="reflect")) == \
        "RandomCrop(size=(32, 32), padding=4, padding_mode='reflect')"
    text = repr(A.Compose([A.RandomRotation(10), A.Normalize(0.5, 0.2)]))
    assert text.startswith("Compose([") and "RandomRotation(degrees=(-10.0, 10.0)" in text and "Normalize(" in text
    assert "PCALighting(eigvals=[0.05, 0.01, 0.002]" in repr(A.PCALighting(EIGVALS, EIGVECS))


@pytest.mark.parametrize("make, match", [
    (lambda: A.RandomHorizontalFlip(1.5), r"p is a probability and must lie in \[0, 1\]"),
    (lambda: A.RandomApply(A.Identity(), p=-0.1), r"must lie in \[0, 1\]"),
    (lambda: A.RandomCrop(8, padding=-1), "padding must be >= 0"),
    (lambda: A.RandomCrop(8, padding_mode="circular"), "padding_mode must be one of"),
    (lambda: A.RandomCrop(0), "positive int"),
    (lambda: A.RandomResizedCrop(8, scale=(0.9, 0.1)), "min must not exceed max.*swap"),
    (lambda: A.RandomResizedCrop(8, scale=(0.0, 1.0)), r"scale values must lie in \(0.0, 1.0\]"),
    (lambda: A.RandomAffine(degrees=-5), "must be >= 0"),
    (lambda: A.RandomAffine(translate=(0.1, 1.5)), r"translate fractions must lie in \[0, 1\]"),
    (lambda: A.RandomAffine(shear=(1, 2, 3)), "shear must be"),
    (lambda: A.RandomErasing(scale=(0.3, 0.02)), "min must not exceed max"),
    (lambda: A.RandomErasing(value="noise"), "'random'"),
    (lambda: A.Cutout(-3), "positive int"),
    (lambda: A.GaussianNoise(-0.1), "std is a standard deviation and must be >= 0"),
    (lambda: A.ColorJitter(brightness=-1), "brightness must be >= 0"),
    (lambda: A.PCALighting([1.0, 2.0], EIGVECS), "pca_lighting_from_data"),
    (lambda: A.Normalize([0.5], [0.0]), "std must be > 0"),
    (lambda: A.ElasticDistortion(alpha=-1), "alpha .* must be a finite number >= 0"),
    (lambda: A.ElasticDistortion(sigma=0), "sigma .* must be a finite number > 0.*Simard"),
    (lambda: A.Compose([A.RandomHorizontalFlip]), "not the class"),
])
def test_constructor_validation_messages(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_call_time_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"x.unsqueeze\(0\)"):
        A.RandomHorizontalFlip()(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match=r"x.float\(\) / 255"):
        A.RandomCrop(4)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="lower size or raise padding"):
        A.RandomCrop(10)(batch(h=8, w=8))
    with pytest.raises(ValueError, match="padding_mode='replicate'"):
        A.RandomCrop(8, padding=8, padding_mode="reflect")(batch(h=8, w=8))
    with pytest.raises(ValueError, match="3 channels"):
        A.PCALighting(EIGVALS, EIGVECS)(batch(c=1))
    with pytest.raises(ValueError, match="1- or 3-channel"):
        A.ColorJitter(0.2)(batch(c=4))
    with pytest.raises(ValueError, match="only shape-preserving"):
        A.RandomApply(A.RandomCrop(4), p=1.0)(batch())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        A.pca_lighting_from_data(batch(c=1))


def test_generator_device_is_used_for_the_draws():
    # The parameters come from the generator's device; here both are the CPU, and the
    # batch on the CPU gets exactly the draws a CPU generator makes.
    x = batch(5)
    y = A.RandomHorizontalFlip()(x, gen(2))
    flips = torch.rand(5, generator=gen(2)) < 0.5
    assert torch.equal(y, torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x))

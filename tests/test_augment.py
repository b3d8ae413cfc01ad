"""Image augmentation: random resized crop and brightness/contrast (the views contrastive
pre-training needs), drawn only when set, so older configs keep their exact draws."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from layerwise.config import AugmentConfig
from layerwise.data.augment import Augmenter, brightness_contrast, flip, resized_crop, shift


def _images(b: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 1, 28, 28, generator=g)


def test_options_that_are_off_draw_nothing_so_old_configs_augment_as_before() -> None:
    x = _images()
    new = Augmenter({"image": AugmentConfig(shift=2, flip=True)}, seed=3)({"image": x})
    g = torch.Generator().manual_seed(3 + 7919)  # the Augmenter's own seeding
    old = flip(shift(x, 2, g), g)  # what shift + flip drew before crop/brightness existed
    assert torch.equal(new["image"], old)
    assert not Augmenter({"image": AugmentConfig(crop=1.0, brightness=0, contrast=0)}, 0)


def test_resized_crop_zooms_in_stays_inside_the_image_and_is_seeded() -> None:
    x = _images()
    a = resized_crop(x, 0.3, torch.Generator().manual_seed(1))
    b = resized_crop(x, 0.3, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)
    ones = torch.ones(4, 1, 28, 28)  # never samples outside: no zero padding comes in
    assert torch.allclose(resized_crop(ones, 0.2, torch.Generator().manual_seed(2)), ones)
    ramp = torch.linspace(0, 1, 28).view(1, 1, 1, 28).expand(16, 1, 28, 28).contiguous()
    out = resized_crop(ramp, 0.25, torch.Generator().manual_seed(3))
    slope = (out[..., -1] - out[..., 0]).flatten()  # a zoom makes the ramp steeper
    assert (slope <= 1 + 1e-5).all() and (slope >= 0.4).all()


def test_brightness_and_contrast_move_each_image_within_their_bounds() -> None:
    x = _images(64)
    g = torch.Generator().manual_seed(0)
    out = brightness_contrast(x, 0.3, 0.0, g)
    offset = (out - x).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-6)  # one per image
    assert offset.abs().max() <= 0.3 and offset[:, 0].std() > 0.05
    out = brightness_contrast(x, 0.0, 0.5, g)
    dims = (1, 2, 3)
    assert torch.allclose(out.mean(dims), x.mean(dims), atol=1e-5)  # the mean stays
    ratio = out.std(dims) / x.std(dims)
    assert (ratio >= 0.5 - 1e-5).all() and (ratio <= 1.5 + 1e-5).all() and ratio.std() > 0.05


def test_the_augmenter_applies_them_only_to_training_batches_it_is_given() -> None:
    cfg = AugmentConfig(crop=0.5, brightness=0.2, contrast=0.2)
    x = _images()
    first = Augmenter({"image": cfg}, seed=0)({"image": x, "other": x})
    again = Augmenter({"image": cfg}, seed=0)({"image": x, "other": x})
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["other"], x)
    assert not torch.allclose(first["image"], x)


@pytest.mark.parametrize("bad", [{"crop": 0.0}, {"crop": 1.5}, {"brightness": -0.1},
                                 {"contrast": 1.0}])
def test_out_of_range_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        AugmentConfig(**bad)

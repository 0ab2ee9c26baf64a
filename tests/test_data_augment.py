"""Train-time augmentation: every output image is a flip and a crop of its own zero-padded input."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hinterval.data.augment import random_flip_crop


def crops_of(image: torch.Tensor, padding: int) -> list:
    """Every image ``random_flip_crop`` may make of one ``(C, H, W)`` image."""
    _, h, w = image.shape
    out = []
    for candidate in (image, image.flip(-1)):
        padded = F.pad(candidate, (padding, padding, padding, padding))
        out += [padded[:, dy:dy + h, dx:dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return out


def test_each_image_is_a_flip_and_crop_of_itself_and_both_occur():
    torch.manual_seed(0)
    x = torch.rand(64, 2, 5, 6)
    y = random_flip_crop(x, padding=2)
    assert y.shape == x.shape and y.dtype == x.dtype and y.is_contiguous()
    for image, augmented in zip(x, y):
        assert any(torch.equal(augmented, c) for c in crops_of(image, 2))
    assert not torch.equal(y, x)  # 64 samples: some were moved


def test_without_padding_an_image_is_itself_or_its_mirror():
    torch.manual_seed(1)
    x = torch.rand(32, 3, 4, 4)
    y = random_flip_crop(x, padding=0)
    flipped = [torch.equal(b, a.flip(-1)) for a, b in zip(x, y)]
    assert all(torch.equal(b, a) or f for a, b, f in zip(x, y, flipped))
    assert 0 < sum(flipped) < len(x)

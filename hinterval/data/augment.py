"""Batched train-time augmentation on device tensors (no per-sample Python loop)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_flip_crop(x: Tensor, padding: int = 4) -> Tensor:
    """Random horizontal flip and random crop with zero padding, per sample, for ``(N, C, H, W)``."""
    n, _, h, w = x.shape
    flip = torch.rand(n, device=x.device) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h))  # (N, H)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w))  # (N, W)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()

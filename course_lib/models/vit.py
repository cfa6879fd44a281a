"""A small Vision Transformer (Dosovitskiy et al. 2021) for 28-32 px images.

Patch embedding is a conv with kernel = stride = patch size (the same as cutting
patches and applying one shared linear map), optionally after a small stem of 3x3
convolutions (the ViT paper's "hybrid" model, whose patches are cut from a CNN feature
map rather than from raw pixels; Xiao et al. 2021 show that such early convolutions
make ViTs learn faster and more stably); a learned CLS token and learned
position embeddings are added; pre-norm Transformer blocks (LayerNorm -> attention
-> residual, LayerNorm -> MLP -> residual) follow; a final LayerNorm, then the CLS
token (``pool="cls"``) or the mean of the patch tokens (``pool="mean"``) goes to the
classifier.  Attention uses ``F.scaled_dot_product_attention``, which picks a fused
kernel on CUDA and MPS where one exists.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Attention", "Block", "ViT"]


class Attention(nn.Module):
    """Multi-head self-attention over ``(N, L, dim)`` tokens."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads}); e.g. dim=64 with heads=4")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Vision Transformer classifier.

    Args:
        image_size: side of the square input (must be a multiple of ``patch_size``).
        patch_size: side of each patch (4 -> 49 tokens on 28 px, 7 -> 16 tokens).
        dim: token width; depth: number of blocks; heads: attention heads.
        mlp_ratio: MLP hidden width / dim.
        pool: ``"cls"`` (classify the CLS token) or ``"mean"`` (average the patch tokens).
        stem_channels: widths of 3x3 conv-BatchNorm-ReLU layers (stride 1, same padding)
            run before the patch embedding; ``()`` (default) cuts patches from the raw
            pixels, as the plain ViT does.  Each patch token then summarises local edge
            and stroke features instead of raw pixels -- the locality prior a plain ViT
            must learn from data.
    """

    def __init__(
        self,
        image_size: int = 28,
        patch_size: int = 4,
        in_channels: int = 1,
        num_classes: int = 10,
        dim: int = 64,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pool: str = "cls",
        stem_channels: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            divisors = [p for p in range(2, image_size + 1) if image_size % p == 0]
            raise ValueError(
                f"image_size ({image_size}) must be a multiple of patch_size ({patch_size}) so the patches tile "
                f"the image; patch sizes that work for {image_size} px: {divisors}"
            )
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean'; got {pool!r}")
        self.image_size, self.in_channels, self.pool = image_size, in_channels, pool
        self.num_patches = (image_size // patch_size) ** 2
        if any(c < 1 for c in stem_channels):
            raise ValueError(f"stem_channels are conv widths and must be >= 1; got {tuple(stem_channels)}")
        stem: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *stem_channels), stem_channels):
            stem += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        self.stem = nn.Sequential(*stem)  # empty: the identity
        self.patch_embed = nn.Conv2d(stem_channels[-1] if stem_channels else in_channels, dim, patch_size,
                                     stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def embed(self, x: Tensor) -> Tensor:
        """The token sequence the first block sees: ``(N, 1 + patches, dim)``, CLS first, positions added."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"ViT was built for (N, {self.in_channels}, {self.image_size}, {self.image_size}) inputs; "
                f"got {tuple(x.shape)}. Build ViT(image_size=..., in_channels=...) to match the data."
            )
        tokens = self.patch_embed(self.stem(x)).flatten(2).transpose(1, 2)  # (N, patches, dim)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return self.drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled, normalised representation ``(N, dim)`` (CLS token or mean of patches)."""
        h = self.norm(self.blocks(self.embed(x)))
        return h[:, 0] if self.pool == "cls" else h[:, 1:].mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

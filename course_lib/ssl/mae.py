"""Masked autoencoder (He et al. 2022), small enough for 28-32 px images on a CPU.

The image is cut into ``p x p`` patches (tokens).  A random ``mask_ratio`` of them is
removed per image; the ViT encoder sees *only the visible tokens* (plus a class
token), which is what makes MAE cheap.  A light decoder gets the encoded visible
tokens back in place, with a shared learned mask token in the removed positions,
and predicts the pixels of every patch.  The loss is the mean squared error on the
*masked* patches only (optionally against per-patch normalised pixels).

Token order follows the reference implementation: ``patchify`` flattens each patch
as ``(p, p, C)`` and orders patches row by row.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLS = ("cls", "mean", "flat")
POS_EMBEDS = ("sincos", "learned")


# --------------------------------------------------------------------------- patches


def patchify(imgs: Tensor, p: int) -> Tensor:
    """Images ``(N, C, H, W)`` -> patches ``(N, L, p*p*C)``, ``L = (H/p) * (W/p)``."""
    if imgs.dim() != 4:
        raise ValueError(f"imgs must be (N, C, H, W), got shape {tuple(imgs.shape)}")
    n, c, h, w = imgs.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by patch size {p}; pick p dividing both")
    gh, gw = h // p, w // p
    x = imgs.reshape(n, c, gh, p, gw, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, gh * gw, p * p * c)


def unpatchify(x: Tensor, p: int, C: int) -> Tensor:
    """Patches ``(N, L, p*p*C)`` -> images ``(N, C, H, W)`` for a square grid (inverse of ``patchify``)."""
    if x.dim() != 3 or x.shape[2] != p * p * C:
        raise ValueError(f"x must be (N, L, p*p*C) = (N, L, {p * p * C}), got {tuple(x.shape)}")
    n, L, _ = x.shape
    g = math.isqrt(L)
    if g * g != L:
        raise ValueError(f"unpatchify needs a square grid of patches, but L={L} is not a square")
    x = x.reshape(n, g, g, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, C, g * p, g * p)


def _check_mask_ratio(mask_ratio: float) -> float:
    mask_ratio = float(mask_ratio)
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1) (fraction of patches removed; MAE uses 0.75), got {mask_ratio}")
    return mask_ratio


def random_masking(
    x: Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample random masking by sorting random noise.

    Args:
        x: tokens ``(N, L, D)``.
        mask_ratio: fraction of tokens to remove, in [0, 1).
        generator: optional ``torch.Generator`` on ``x``'s device, for reproducible masks.

    Returns:
        ``(x_kept, mask, ids_restore)``: ``x_kept`` is ``(N, int(L * (1 - mask_ratio)), D)``
        (the kept tokens, in shuffled order); ``mask`` is ``(N, L)`` with 1 for removed
        and 0 for kept tokens, in the original order; ``ids_restore`` ``(N, L)`` undoes
        the shuffle: ``cat([x_kept, filler]).gather(1, ids_restore)`` is back in order.
    """
    mask_ratio = _check_mask_ratio(mask_ratio)
    if x.dim() != 3:
        raise ValueError(f"x must be tokens (N, L, D), got shape {tuple(x.shape)}")
    n, L, d = x.shape
    len_keep = int(L * (1 - mask_ratio))
    if len_keep < 1:
        raise ValueError(f"mask_ratio={mask_ratio} keeps no token out of L={L}; lower it")
    noise = torch.rand(n, L, device=x.device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(n, L, device=x.device, dtype=x.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return x_kept, mask, ids_restore


def mae_loss(imgs: Tensor, pred: Tensor, mask: Tensor, patch_size: int, norm_pix_loss: bool = False) -> Tensor:
    """Mean squared error of ``pred`` (N, L, p*p*C) on the masked patches only.

    With ``norm_pix_loss`` each target patch is normalised by its own mean and
    variance (the MAE paper's better-representation variant).  Predictions for
    visible patches do not affect the loss.
    """
    target = patchify(imgs, patch_size)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but the patchified images are {tuple(target.shape)}")
    if mask.shape != target.shape[:2]:
        raise ValueError(f"mask must be (N, L) = {tuple(target.shape[:2])}, got {tuple(mask.shape)}")
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    n_masked = mask.sum()
    if n_masked == 0:
        raise ValueError("no patch is masked, so the MAE loss is undefined; use mask_ratio > 0 for training")
    return (per_patch * mask).sum() / n_masked


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = True) -> Tensor:
    """Fixed 2D sine-cosine positional embeddings ``(grid_size**2 [+1], dim)`` (MAE's).

    Half of the channels encode the row, half the column; the class token (first row,
    if ``cls_token``) gets zeros.
    """
    if dim % 4:
        raise ValueError(f"sin-cos positional embeddings need a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    coords = torch.arange(grid_size, dtype=torch.float64)
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")

    def embed(pos: Tensor) -> Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([embed(gx), embed(gy)], dim=1).float()
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)
    return emb


# --------------------------------------------------------------------------- ViT


class Attention(nn.Module):
    """Multi-head self-attention (``F.scaled_dot_product_attention``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by the number of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MAE(nn.Module):
    """Masked autoencoder with a small ViT encoder and a lighter ViT decoder.

    Args:
        image_size: height = width of the input images (must be divisible by ``patch_size``).
        patch_size: side of a square patch; ``L = (image_size / patch_size) ** 2`` tokens.
        in_channels: 1 for MNIST, 3 for CIFAR.
        enc_dim, enc_depth, enc_heads: encoder width, number of blocks, heads.
        dec_dim, dec_depth, dec_heads: decoder width, number of blocks, heads.
        mask_ratio: default fraction of patches removed during training, in [0, 1).
        norm_pix_loss: regress per-patch normalised pixels.
        pos_embed: ``"sincos"`` (fixed 2D sine-cosine, as MAE) or ``"learned"``.
        mlp_ratio: hidden width of the MLPs relative to the block width.
    """

    def __init__(
        self,
        image_size: int = 32,
        patch_size: int = 4,
        in_channels: int = 3,
        enc_dim: int = 128,
        enc_depth: int = 4,
        enc_heads: int = 4,
        dec_dim: int = 64,
        dec_depth: int = 2,
        dec_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        pos_embed: str = "sincos",
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(
                f"image_size={image_size} is not divisible by patch_size={patch_size}; "
                "pick a patch size that divides the image size (e.g. 4 or 7 for 28 px, 4 or 8 for 32 px)"
            )
        if pos_embed not in POS_EMBEDS:
            raise ValueError(f"pos_embed must be one of {POS_EMBEDS}, got {pos_embed!r}")
        self.mask_ratio = _check_mask_ratio(mask_ratio)
        self.image_size, self.patch_size, self.in_channels = image_size, patch_size, in_channels
        self.norm_pix_loss = norm_pix_loss
        self.grid = image_size // patch_size
        self.num_patches = self.grid**2
        patch_dim = patch_size * patch_size * in_channels
        self.enc_dim = enc_dim

        # encoder
        self.patch_embed = nn.Linear(patch_dim, enc_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, enc_dim))
        self.blocks = nn.ModuleList([Block(enc_dim, enc_heads, mlp_ratio) for _ in range(enc_depth)])
        self.norm = nn.LayerNorm(enc_dim)
        # decoder
        self.decoder_embed = nn.Linear(enc_dim, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.decoder_blocks = nn.ModuleList([Block(dec_dim, dec_heads, mlp_ratio) for _ in range(dec_depth)])
        self.decoder_norm = nn.LayerNorm(dec_dim)
        self.decoder_pred = nn.Linear(dec_dim, patch_dim)

        if pos_embed == "sincos":
            self.register_buffer("pos_embed", sincos_pos_embed_2d(enc_dim, self.grid).unsqueeze(0))
            self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(dec_dim, self.grid).unsqueeze(0))
        else:
            self.pos_embed = nn.Parameter(0.02 * torch.randn(1, self.num_patches + 1, enc_dim))
            self.decoder_pos_embed = nn.Parameter(0.02 * torch.randn(1, self.num_patches + 1, dec_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _check_images(self, imgs: Tensor) -> None:
        expected = (self.in_channels, self.image_size, self.image_size)
        if imgs.dim() != 4 or tuple(imgs.shape[1:]) != expected:
            raise ValueError(f"MAE expects images (N, {', '.join(map(str, expected))}), got {tuple(imgs.shape)}")

    def forward_encoder(
        self, imgs: Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Encode the visible patches.

        Returns ``(latent, mask, ids_restore)``; ``latent`` is ``(N, 1 + L_kept, enc_dim)``
        with the class token first.  ``mask_ratio=0`` keeps all patches in their
        original order (no shuffle), for feature extraction.
        """
        self._check_images(imgs)
        mask_ratio = _check_mask_ratio(mask_ratio)
        x = self.patch_embed(patchify(imgs, self.patch_size)) + self.pos_embed[:, 1:]
        if mask_ratio == 0.0:
            n, L = x.shape[:2]
            mask = torch.zeros(n, L, device=x.device, dtype=x.dtype)
            ids_restore = torch.arange(L, device=x.device).expand(n, L)
        else:
            x, mask, ids_restore = random_masking(x, mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Predict every patch's pixels ``(N, L, p*p*C)`` from the encoded visible tokens."""
        x = self.decoder_embed(latent)
        n, L = ids_restore.shape
        fill = self.mask_token.expand(n, L + 1 - x.shape[1], -1)
        tokens = torch.cat([x[:, 1:], fill], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(
        self, imgs: Tensor, mask_ratio: float | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Returns ``(loss, pred, mask)``: masked-patch MSE, ``(N, L, p*p*C)`` predictions, ``(N, L)`` mask."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        if _check_mask_ratio(ratio) == 0.0:
            raise ValueError("mask_ratio=0 masks nothing, so there is no loss; use features() to extract features")
        latent, mask, ids_restore = self.forward_encoder(imgs, ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return mae_loss(imgs, pred, mask, self.patch_size, self.norm_pix_loss), pred, mask

    def reconstruct(self, pred: Tensor, imgs: Tensor, mask: Tensor) -> Tensor:
        """Images with the masked patches replaced by the predictions (visible patches kept).

        With ``norm_pix_loss`` the predictions are de-normalised with each target
        patch's own mean and std, as in the MAE visualisation demo.
        """
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            pred = pred * std + mean
        m = mask.unsqueeze(-1)
        return unpatchify(target * (1 - m) + pred * m, self.patch_size, self.in_channels)

    def features(self, imgs: Tensor, pool: str = "cls") -> Tensor:
        """Encoder features of unmasked images (mask ratio 0).

        ``pool``: ``"cls"`` the class token ``(N, enc_dim)``; ``"mean"`` the mean of the
        patch tokens ``(N, enc_dim)``; ``"flat"`` all patch tokens flattened
        ``(N, L * enc_dim)``.
        """
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        latent, _, _ = self.forward_encoder(imgs, 0.0)
        if pool == "cls":
            return latent[:, 0]
        if pool == "mean":
            return latent[:, 1:].mean(dim=1)
        return latent[:, 1:].flatten(1)

    def as_backbone(self, pool: str = "cls") -> nn.Module:
        """A module whose ``forward(imgs)`` is ``self.features(imgs, pool)`` (shares weights)."""
        return MAEBackbone(self, pool)


class MAEBackbone(nn.Module):
    """Wraps an ``MAE`` as a feature extractor, e.g. for ``evaluation.extract_features``."""

    def __init__(self, mae: MAE, pool: str = "cls") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.mae, self.pool = mae, pool

    def forward(self, imgs: Tensor) -> Tensor:
        return self.mae.features(imgs, self.pool)

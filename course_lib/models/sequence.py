"""Sequence models that read an image row by row (the MNIST report's LSTM and "Transformer").

A 28 x 28 image becomes a sequence of 28 time steps, each a 28-value row.  This is
not how one should classify images, but it is what the report compared, and it
shows what recurrence and attention do with the same data.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["RowLSTM", "SingleAttention", "image_to_rows"]


def image_to_rows(x: Tensor, row_size: int) -> Tensor:
    """``(N, 1, H, W)`` or ``(N, H, W)`` images -> ``(N, H, W)`` sequences of H rows of W values."""
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[-1] != row_size:
        raise ValueError(
            f"expected grayscale images shaped (N, 1, H, {row_size}) or (N, H, {row_size}); got {tuple(x.shape)}. "
            f"Set input_size to the image width, or convert colour images to one channel."
        )
    return x


class RowLSTM(nn.Module):
    """An LSTM over image rows; classifies from the last time step.

    Args:
        input_size: values per row (the image width, 28 for MNIST).
        hidden: LSTM hidden size.
        layers: stacked LSTM layers (1 or 2 in the report).
        bidirectional: also read the rows bottom-up; the head then sees the final
            states of both directions.
        dropout: dropout between stacked layers (ignored for one layer).
    """

    def __init__(
        self,
        input_size: int = 28,
        hidden: int = 128,
        layers: int = 1,
        num_classes: int = 10,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.lstm = nn.LSTM(
            input_size,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        rows = image_to_rows(x, self.input_size)
        _, (h, _) = self.lstm(rows)  # h: (layers * directions, N, hidden)
        if self.lstm.bidirectional:
            last = torch.cat([h[-2], h[-1]], dim=1)  # last layer, forward and backward
        else:
            last = h[-1]
        return self.head(last)


class SingleAttention(nn.Module):
    """The report's one-layer "Transformer": row embedding, one self-attention, pooling, classifier.

    ``rows -> Linear(input_size, d_model) + learned position embedding -> LayerNorm(h +
    MultiheadAttention(h)) -> mean over rows -> Linear``.  No feed-forward block and no
    stacking: one attention layer, as in the report.

    Args:
        d_model: embedding width.
        heads: attention heads (must divide ``d_model``).
        input_size: values per row (image width).
        seq_len: number of rows (image height).
    """

    def __init__(
        self,
        d_model: int = 64,
        heads: int = 4,
        input_size: int = 28,
        seq_len: int = 28,
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads}); e.g. heads=4 with d_model=64")
        self.input_size = input_size
        self.seq_len = seq_len
        self.embed = nn.Linear(input_size, d_model)
        self.pos = nn.Parameter(torch.zeros(1, seq_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def _embed(self, x: Tensor) -> Tensor:
        rows = image_to_rows(x, self.input_size)
        if rows.shape[1] != self.seq_len:
            raise ValueError(f"SingleAttention(seq_len={self.seq_len}) got {rows.shape[1]} rows; set seq_len={rows.shape[1]}")
        return self.embed(rows) + self.pos

    def forward(self, x: Tensor) -> Tensor:
        h = self._embed(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        h = self.norm(h + a)
        return self.head(h.mean(dim=1))

    @torch.no_grad()
    def attention_map(self, x: Tensor) -> Tensor:
        """Attention weights ``(N, heads, rows, rows)``: how much each row attends to each other row."""
        h = self._embed(x)
        _, w = self.attn(h, h, h, need_weights=True, average_attn_weights=False)
        return w

"""Networks. Inputs stay in their storage dtype (uint8/int8) until the network converts them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KarpathyPolicy(nn.Module):
    """The seed's two-layer policy: Linear(D, 200) -> ReLU -> Linear(200, A), no biases.

    ``bias=True`` adds them: without biases an all-zero observation gives all-zero logits, so
    the net cannot prefer an action in a state it sees as zeros (the action probe catches it).

    The first layer gets Kaiming init (it feeds a ReLU). The last layer is zero-initialised
    (Schulman's advice) so every action starts equally likely: initial entropy = log(A), the
    maximum. ``zero_init_last=False`` keeps PyTorch's default init for comparison.

    ``forward`` also accepts a sparse CSR batch: Pong difference frames are ~99% zeros, and
    ``torch.sparse.mm`` makes the first layer (and its weight gradient) cost per non-zero pixel.
    """

    def __init__(
        self, obs_dim: int, n_actions: int, hidden: int = 200, zero_init_last: bool = True, bias: bool = False
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(obs_dim, hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, n_actions, bias=bias)
        nn.init.kaiming_normal_(self.fc1.weight, nonlinearity="relu")
        if bias:
            nn.init.zeros_(self.fc1.bias)
        if zero_init_last:
            nn.init.zeros_(self.fc2.weight)
            if bias:
                nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) float, dense or sparse CSR -> (B, A) logits."""
        if x.layout == torch.sparse_csr:
            hidden = torch.sparse.mm(x, self.fc1.weight.t())
            if self.fc1.bias is not None:
                hidden = hidden + self.fc1.bias
        else:
            hidden = self.fc1(x)
        return self.fc2(F.relu(hidden))

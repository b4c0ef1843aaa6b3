"""Q-networks for DQN: the seed's small conv net, the Nature DQN CNN, and an MLP for vectors.

Image inputs arrive as uint8 and stay uint8 through the replay buffer and the batch; the
network divides by 255 in its first line. Converting earlier quadruples every copy on the way
(a 32x4x84x84 batch is 0.9 MB as uint8, 3.6 MB as float32).
"""

from __future__ import annotations

import torch
from torch import nn

from dirtyrl.dqn_maths import dueling_aggregate

NETS = ("seed", "nature", "mnih2013", "mlp")


def _flat_size(features: nn.Module, in_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(features(torch.zeros(1, *in_shape)).numel())


class DuelingHead(nn.Module):
    """Two streams on the conv features, V(s) and A(s, a), each with its own hidden layer
    (Wang et al. 2016), joined by ``dueling_aggregate``.

    >>> DuelingHead(8, 3, 4)(torch.zeros(2, 8)).shape
    torch.Size([2, 3])
    """

    def __init__(self, flat: int, n_actions: int, hidden: int, bias: bool = True) -> None:
        super().__init__()
        self.value = nn.Sequential(nn.Linear(flat, hidden, bias=bias), nn.ReLU(), nn.Linear(hidden, 1, bias=bias))
        self.advantage = nn.Sequential(nn.Linear(flat, hidden, bias=bias), nn.ReLU(), nn.Linear(hidden, n_actions, bias=bias))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return dueling_aggregate(self.value(features), self.advantage(features))


def _head(flat: int, n_actions: int, hidden: int, bias: bool, dueling: bool) -> nn.Module:
    if dueling:
        return DuelingHead(flat, n_actions, hidden, bias)
    return nn.Sequential(nn.Linear(flat, hidden, bias=bias), nn.ReLU(), nn.Linear(hidden, n_actions, bias=bias))


def _conv_stack(spec: list[tuple[int, int, int, int]], batch_norm: bool, bias: bool) -> nn.Sequential:
    """(in, out, kernel, stride) per layer -> Conv2d [BatchNorm2d] ReLU, ...; BN makes the conv bias redundant."""
    layers: list[nn.Module] = []
    for c_in, c_out, kernel, stride in spec:
        layers.append(nn.Conv2d(c_in, c_out, kernel, stride=stride, bias=bias and not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class PixelQNet(nn.Module):
    """A conv net on uint8 frames: [0, 1] floats -> ``CONVS`` -> a hidden layer -> action values.

    Subclasses name their layers: ``CONVS`` is (out channels, kernel, stride) per convolution,
    ``HIDDEN`` the default width of the head. ``batch_norm`` puts a BatchNorm2d after each
    convolution (the conv bias is then redundant and dropped); ``bias=False`` removes the
    biases everywhere else too; ``dueling`` swaps the head for V and A streams.
    """

    CONVS: tuple[tuple[int, int, int], ...]
    HIDDEN: int

    def __init__(
        self,
        in_channels: int,
        n_actions: int,
        frame_hw: tuple[int, int] = (84, 84),
        batch_norm: bool = False,
        bias: bool = True,
        hidden: int | None = None,
        dueling: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last = False
        channels = (in_channels, *(out for out, _, _ in self.CONVS))
        spec = [(c_in, out, kernel, stride) for c_in, (out, kernel, stride) in zip(channels, self.CONVS, strict=False)]
        self.features = _conv_stack(spec, batch_norm, bias)
        flat = _flat_size(self.features, (in_channels, *frame_hw))
        self.head = _head(flat, n_actions, hidden or self.HIDDEN, bias, dueling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) uint8 -> (B, A) float32 action values."""
        if self.channels_last:
            # Transposed while still uint8: a quarter of the bytes to move; .float() keeps the layout.
            x = x.contiguous(memory_format=torch.channels_last)
        x = x.float().div_(255.0)
        return self.head(self.features(x).flatten(1))

    def use_channels_last(self, enabled: bool = True) -> PixelQNet:
        """NHWC layout for the convolutions: oneDNN's fast path on CPU (see benchmarks)."""
        self.channels_last = enabled
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)


class SeedQNet(PixelQNet):
    """The seed's small Q-network: two 3x3 stride-2 convs (16, 32 channels), a 256-unit layer.

    Its features are 32 x 20 x 20 = 12800 at 84x84.

    >>> SeedQNet(4, 3)(torch.zeros(2, 4, 84, 84, dtype=torch.uint8)).shape
    torch.Size([2, 3])
    """

    CONVS = ((16, 3, 2), (32, 3, 2))
    HIDDEN = 256


class NatureCNN(PixelQNet):
    """Mnih et al. 2015: 8x8/4 (32), 4x4/2 (64), 3x3/1 (64) convolutions, 512 hidden units.

    Its features are 64 x 7 x 7 = 3136 at 84x84.

    >>> NatureCNN(4, 6)(torch.zeros(1, 4, 84, 84, dtype=torch.uint8)).shape
    torch.Size([1, 6])
    """

    CONVS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))
    HIDDEN = 512


class Mnih2013QNet(PixelQNet):
    """Mnih et al. 2013 (the NIPS workshop DQN): 8x8/4 (16), 4x4/2 (32) convolutions, 256 hidden.

    A third of the Nature net's compute at 84x84 and a twentieth at 40x40 (the pong-fast
    preset's input), where its features are 32 x 3 x 3.

    >>> Mnih2013QNet(4, 3, (40, 40))(torch.zeros(1, 4, 40, 40, dtype=torch.uint8)).shape
    torch.Size([1, 3])
    """

    CONVS = ((16, 8, 4), (32, 4, 2))
    HIDDEN = 256


class MLPQNet(nn.Module):
    """Fully connected Q-network for vector observations (CartPole, the probes).

    >>> MLPQNet(4, 2, hidden=(8, 8))(torch.zeros(5, 4)).shape
    torch.Size([5, 2])
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (256, 256), bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width_in, width_out in zip((obs_dim, *hidden), hidden, strict=False):
            layers += [nn.Linear(width_in, width_out, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1] if hidden else obs_dim, n_actions, bias=bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, A)."""
        return self.net(x.float())


def make_qnet(
    name: str,
    obs_shape: tuple[int, ...],
    n_actions: int,
    *,
    batch_norm: bool = False,
    bias: bool = True,
    hidden: tuple[int, ...] = (256, 256),
    dueling: bool = False,
) -> nn.Module:
    """Build the named network for observations of ``obs_shape`` (C, H, W) or (D,).

    >>> type(make_qnet("mlp", (4,), 2, hidden=(16,))).__name__
    'MLPQNet'
    """
    if name == "mlp":
        if len(obs_shape) != 1:
            raise ValueError(f"--net mlp needs vector observations, got shape {obs_shape}; use --net nature or seed")
        if dueling:
            raise ValueError("--dueling is implemented for the conv nets (seed, nature, mnih2013), not --net mlp")
        return MLPQNet(obs_shape[0], n_actions, hidden, bias)
    if len(obs_shape) != 3:
        raise ValueError(f"--net {name} needs image observations (C, H, W), got shape {obs_shape}; use --net mlp")
    cls = {"seed": SeedQNet, "nature": NatureCNN, "mnih2013": Mnih2013QNet}[name]
    return cls(obs_shape[0], n_actions, tuple(obs_shape[1:]), batch_norm=batch_norm, bias=bias, dueling=dueling)

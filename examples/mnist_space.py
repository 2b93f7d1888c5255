"""NNI's MNIST search space example, on archsearch's mutables.

conv1 and conv2 each choose a 3x3 or a 5x5 convolution; an InputChoice decides whether conv2's output skips
over conv3 and joins its output (n_chosen=None: it may choose nothing, and then returns None). The network
pools down and ends in adaptive average pooling, so it runs on 8x8 digits as on 28x28 MNIST.

    python scripts/main.py --algos darts --config examples/mnist_space.yaml     # or enas, random
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archsearch.spaces.mutables import InputChoice, LayerChoice


def conv_choice(ch_in: int, ch_out: int, key: str) -> LayerChoice:
    return LayerChoice(
        OrderedDict(
            conv3x3=nn.Conv2d(ch_in, ch_out, 3, padding=1),
            conv5x5=nn.Conv2d(ch_in, ch_out, 5, padding=2),
        ),
        key=key,
    )


class Net(nn.Module):
    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, hidden_size: int = 64) -> None:
        super().__init__()
        self.conv1 = conv_choice(in_channels, width, "conv1")
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = conv_choice(width, 2 * width, "conv2")
        self.conv3 = nn.Conv2d(2 * width, 2 * width, 1)
        self.skipconnect = InputChoice(n_candidates=1, n_chosen=None, key="skip")
        self.bn = nn.BatchNorm2d(2 * width)
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(2 * width * 2 * 2, hidden_size)
        self.fc2 = nn.Linear(hidden_size, n_classes)
        self.relu = nn.ReLU()  # a module, not F.relu: forward hooks (NASWOT's activation codes) see it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x0 = self.relu(self.conv2(x))
        x1 = self.relu(self.conv3(x0))
        skip = self.skipconnect([x0])
        if skip is not None:  # the skip connection was not chosen
            x1 = x1 + skip
        x = self.pool(self.bn(x1))
        x = self.gap(x).flatten(1)
        return self.fc2(self.relu(self.fc1(x)))

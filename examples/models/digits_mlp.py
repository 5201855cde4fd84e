"""Digits MLP (64-128-64-10) on scikit-learn's load_digits, trained here and pruned to 2:4.

`model()` trains a few seconds on the CPU (fixed seed), prunes every layer to 2:4 by magnitude
and fine-tunes with the masks held, so the weights reach the compiler already 2:4 (kept as is).
"""
import functools

import torch

from nmforge.compiler.datasets import digits
from nmforge.compiler.training import prune_module_nm, train_classifier


class DigitsMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 64)
        self.fc3 = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@functools.cache
def dense_model():
    """The float model before pruning."""
    torch.manual_seed(0)
    x, y, _, _ = digits()
    return train_classifier(DigitsMLP(), x, y, epochs=30, lr=0.003)


@functools.cache
def model():
    net = DigitsMLP()
    net.load_state_dict(dense_model().state_dict())
    x, y, _, _ = digits()
    return train_classifier(net, x, y, epochs=10, lr=0.001, masks=prune_module_nm(net, 2, 4),
                            seed=1)


def example_input():
    return digits()[0][:1]


def calibration_data():
    return digits()[0][:512]


def test_data():
    _, _, x, y = digits()
    return x, y.numpy()

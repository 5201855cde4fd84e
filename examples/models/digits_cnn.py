"""Digits CNN (two 3x3 convolutions with max pooling, one Linear) on scikit-learn's load_digits,
trained here and pruned to 2:4 (the first convolution's K = 9 is padded to 12 by the compiler
and pruned there)."""
import functools

import torch

from nmforge.compiler.datasets import digits
from nmforge.compiler.training import prune_module_nm, train_classifier


class DigitsCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


@functools.cache
def dense_model():
    torch.manual_seed(0)
    x, y, _, _ = digits(images=True)
    return train_classifier(DigitsCNN(), x, y, epochs=20, lr=0.003)


@functools.cache
def model():
    net = DigitsCNN()
    net.load_state_dict(dense_model().state_dict())
    x, y, _, _ = digits(images=True)
    return train_classifier(net, x, y, epochs=6, lr=0.001, masks=prune_module_nm(net, 2, 4),
                            seed=1)


def example_input():
    return digits(images=True)[0][:1]


def calibration_data():
    return digits(images=True)[0][:512]


def test_data():
    _, _, x, y = digits(images=True)
    return x, y.numpy()

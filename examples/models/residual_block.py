"""A transformer-style block: embed, then x + fc2(relu(fc1(x))) (the residual add runs on the
host), then a classifier head; on a synthetic teacher task (compiler.datasets.teacher_task),
trained here and pruned to 2:4."""
import functools

import torch

from nmforge.compiler.datasets import teacher_task
from nmforge.compiler.training import prune_module_nm, train_classifier


class ResidualBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(16, 32)
        self.fc1 = torch.nn.Linear(32, 64)
        self.fc2 = torch.nn.Linear(64, 32)
        self.head = torch.nn.Linear(32, 4)

    def forward(self, x):
        h = self.embed(x)
        h = h + self.fc2(torch.relu(self.fc1(h)))
        return self.head(torch.relu(h))


@functools.cache
def dense_model():
    torch.manual_seed(0)
    x, y, _, _ = teacher_task()
    return train_classifier(ResidualBlock(), x, y, epochs=30, lr=0.003)


@functools.cache
def model():
    net = ResidualBlock()
    net.load_state_dict(dense_model().state_dict())
    x, y, _, _ = teacher_task()
    return train_classifier(net, x, y, epochs=10, lr=0.001, masks=prune_module_nm(net, 2, 4),
                            seed=1)


def example_input():
    return teacher_task()[0][:1]


def calibration_data():
    return teacher_task()[0][:512]


def test_data():
    _, _, x, y = teacher_task()
    return x, y.numpy()

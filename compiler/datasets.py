"""Data sets the example models train on, from packages (nothing is downloaded)."""
from __future__ import annotations

import functools

import numpy as np

DIGITS_TEST = 360


@functools.cache
def digits(images=False):
    """scikit-learn's load_digits as float32 tensors scaled to [0, 1]: (x_train, y_train,
    x_test, y_test), a stratified split with DIGITS_TEST test images (random_state 0);
    `images` gives x as (B, 1, 8, 8) instead of (B, 64)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    data = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        data.data / 16.0, data.target, test_size=DIGITS_TEST, random_state=0,
        stratify=data.target)
    shape = (-1, 1, 8, 8) if images else (-1, 64)
    as_x = lambda a: torch.tensor(a.reshape(shape), dtype=torch.float32)  # noqa: E731
    as_y = lambda a: torch.tensor(a, dtype=torch.long)  # noqa: E731
    return as_x(x_train), as_y(y_train), as_x(x_test), as_y(y_test)


@functools.cache
def teacher_task(features=16, classes=4, train=2048, test=512, seed=0):
    """A synthetic classification task: Gaussian inputs labelled by the argmax of a fixed random
    two-layer teacher network (x_train, y_train, x_test, y_test as tensors)."""
    import torch
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((features, 32))
    w2 = rng.standard_normal((32, classes))
    x = rng.standard_normal((train + test, features))
    y = (np.maximum(x @ w1, 0) @ w2 + x[:, :classes]).argmax(axis=1)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    return x[:train], y[:train], x[train:], y[train:]

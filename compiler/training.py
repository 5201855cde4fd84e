"""Training helpers for example models: a seeded classifier trainer and N:M pruning of a
torch module with a short masked fine-tune (the masks from `passes.nm_mask`, i.e. golden.nm)."""
from __future__ import annotations

import numpy as np

from .passes import nm_mask


def train_classifier(model, x, y, epochs, lr=0.01, batch=64, seed=0, masks=None):
    """Adam + cross-entropy on (x, y) for `epochs` epochs, shuffled with `seed`; with `masks`
    ({parameter: 0/1 tensor}) the pruned weights are zeroed again after every step."""
    import torch
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # small models: threads only contend on a shared machine
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for param, mask in masks.items():
                        param.mul_(mask)
    torch.set_num_threads(threads)
    return model.eval()


def prune_module_nm(model, n, m):
    """Magnitude-prune every Linear and Conv2d weight of `model` in place to N:M along its
    reduction dimension (in_features; in_channels*kh*kw); returns {weight: mask} for
    `train_classifier(masks=...)`. A K that is not a multiple of M is padded with zeros at the
    end for the mask, as the compiler pads it (passes.pad_k), so the result stays N:M there."""
    import torch
    masks = {}
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            w = module.weight.detach()
            k = w[0].numel()
            padded = np.zeros((-(-k // m) * m, w.shape[0]), dtype=np.float32)
            padded[:k] = w.reshape(w.shape[0], k).T.numpy()
            mask = nm_mask(padded, n, m)[:k].T.reshape(w.shape)
            masks[module.weight] = torch.from_numpy(mask.astype(np.float32))
            with torch.no_grad():
                module.weight.mul_(masks[module.weight])
    return masks


def accuracy(logits, labels) -> float:
    """Fraction of rows whose argmax equals the label."""
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())

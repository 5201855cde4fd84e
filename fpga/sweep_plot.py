"""Pareto plot of a sweep: dense-equivalent throughput vs LUT4 and vs DSP (matplotlib, Agg)."""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

__all__ = ["pareto_front", "plot_pareto"]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points when minimising x (resources) and maximising y
    (throughput), ordered by increasing x. A point is optimal when no other point has x <= and
    y >= with one of them strict; of exact duplicates the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best_y = float("-inf")
    for i in order:
        if points[i][1] > best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def _use_log(xs: Iterable[float]) -> bool:
    xs = list(xs)
    return bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20


def _clusters(pts: list[tuple[float, float]], all_pts: list[tuple[float, float]], log_x: bool,
              radius: float = 0.035) -> list[list[int]]:
    """Greedy groups of points within ``radius`` of each other in axis-normalised coordinates."""
    import math

    def norm(p):
        return (math.log10(p[0]) if log_x else p[0]), p[1]

    ref = [norm(p) for p in all_pts] or [(0.0, 0.0)]
    span_x = (max(x for x, _ in ref) - min(x for x, _ in ref)) or 1.0
    span_y = (max(y for _, y in ref) - min(y for _, y in ref)) or 1.0
    groups: list[list[int]] = []
    centers: list[tuple[float, float]] = []
    for i, p in enumerate(pts):
        x, y = norm(p)
        for g, (cx, cy) in zip(groups, centers):
            if abs(x - cx) / span_x < radius and abs(y - cy) / span_y < radius:
                g.append(i)
                break
        else:
            groups.append([i])
            centers.append((x, y))
    return groups


def _place_labels(fig, labels, placed) -> None:
    """Annotate each (ax, text, xy) at the first of a few offsets whose box overlaps no placed
    artist (Pareto labels, the legend, earlier labels); the first offset when none is free."""
    fig.canvas.draw()  # final layout, so that extents are those of the saved figure
    renderer = fig.canvas.get_renderer()
    boxes = [a.get_window_extent(renderer) for a in placed]
    offsets = ((5, -4, "left", "top"), (5, 4, "left", "bottom"), (-5, -4, "right", "top"),
               (-5, 4, "right", "bottom"), (0, -9, "center", "top"), (0, 9, "center", "bottom"))
    for ax, text, xy in labels:
        for k, (dx, dy, ha, va) in enumerate(offsets):
            ann = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                              fontsize=7, color="0.4", zorder=2)
            ann.set_in_layout(False)
            box = ann.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in boxes) or k == len(offsets) - 1:
                if k == len(offsets) - 1 and any(box.overlaps(b) for b in boxes):
                    ann.remove()  # nowhere free: fall back to the first position
                    ann = ax.annotate(text, xy, xytext=offsets[0][:2], textcoords="offset points",
                                      ha=offsets[0][2], va=offsets[0][3], fontsize=7, color="0.4",
                                      zorder=2)
                    ann.set_in_layout(False)
                    box = ann.get_window_extent(renderer)
                boxes.append(box)
                break
            ann.remove()


def _pattern_key(nm: str) -> tuple:
    try:
        n, m = (int(x) for x in nm.split(":"))
        return (m, -n)
    except ValueError:
        return (0, 0)


def plot_pareto(rows: Iterable[dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Write a two-panel PNG: throughput (GMAC/s) vs LUT4 and vs DSP, every successful row plotted,
    coloured by N:M pattern, a marker per target; each target's Pareto-optimal points are
    highlighted, connected and labelled by pattern/shape."""
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok" and r.get("throughput_gmacs") not in (None, "")]
    n_failed = sum(1 for r in rows if r.get("status") != "ok")
    targets = sorted({r["target"] for r in ok})
    patterns = sorted({r["pattern"] for r in ok}, key=_pattern_key)
    cmap = plt.get_cmap("tab10")
    colors = {p: cmap(i % 10) for i, p in enumerate(patterns)}
    markers = dict(zip(targets, "osD^v<>"))

    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2), constrained_layout=True)
    grey_labels: list[tuple[Any, str, tuple[float, float]]] = []
    placed: list[Any] = []  # artists the grey labels must not overlap
    panels = (("LUT4", "LUT4 (total, incl. carry)"), ("DSP", "DSP blocks"))
    for ax, (res, xlabel) in zip(axes, panels):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("dense-equivalent throughput (GMAC/s)\n= MACs/cycle x Fmax")
        ax.set_title(f"throughput vs {res}")
        ax.grid(True, which="both", alpha=0.3)
        if not ok:
            ax.text(0.5, 0.5, "no successful points", ha="center", va="center", transform=ax.transAxes)
            continue
        front_labels: list[tuple[str, tuple[float, float]]] = []
        all_xy = [(float(r[res]), float(r["throughput_gmacs"])) for r in ok if r.get(res) not in (None, "")]
        log_x = _use_log(x for x, _ in all_xy)
        for target in targets:
            trows = [r for r in ok if r["target"] == target and r.get(res) not in (None, "")]
            if not trows:
                continue
            xy = [(float(r[res]), float(r["throughput_gmacs"])) for r in trows]
            front = pareto_front(xy)
            on_front = set(front)
            others = [i for i in range(len(trows)) if i not in on_front]
            for i in others:
                ax.scatter(*xy[i], s=40, color=colors[trows[i]["pattern"]], marker=markers[target],
                           alpha=0.45, edgecolors="none", zorder=2)
            if len(ok) <= 32:
                # One grey label per cluster of (nearly) coincident points, below right of them.
                for cluster in _clusters([xy[i] for i in others], all_xy, log_x):
                    members = [others[j] for j in cluster]
                    text = "\n".join(trows[i]["label"] for i in members)
                    grey_labels.append((ax, text, xy[members[0]]))
            fx = [xy[i][0] for i in front]
            fy = [xy[i][1] for i in front]
            ax.plot(fx, fy, "-", color="black", lw=1.2, alpha=0.7, zorder=3, drawstyle="steps-post")
            for i in front:
                r = trows[i]
                ax.scatter(*xy[i], s=110, color=colors[r["pattern"]], marker=markers[target],
                           edgecolors="black", linewidths=1.4, zorder=4)
                front_labels.append((r["label"], xy[i]))
        if log_x:
            ax.set_xscale("log")
        if res == "DSP":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(x=0.12, y=0.12)
        ax.autoscale_view()  # settle the limits now: label placement depends on them
        for text, (x, y) in front_labels:
            # Above left of a Pareto point there is no other point (none dominates it); near the
            # left edge the label goes above right instead, to stay inside the axes.
            fx, _ = ax.transLimits.transform(ax.transScale.transform((x, y)))
            left = fx > 0.18
            placed.append(ax.annotate(
                text, (x, y), xytext=(-7 if left else 7, 7), textcoords="offset points",
                ha="right" if left else "left", fontsize=8.5, fontweight="bold", zorder=5,
                bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8)))

    handles = [Line2D([], [], marker="o", ls="", color=colors[p], markersize=8, label=p) for p in patterns]
    if len(targets) > 1:
        handles += [Line2D([], [], marker=markers[t], ls="", color="grey", markersize=8, label=t)
                    for t in targets]
    handles.append(Line2D([], [], marker="o", ls="-", color="black", markerfacecolor="white",
                          markeredgecolor="black", markersize=9, label="Pareto-optimal"))
    if ok:
        placed.append(axes[0].legend(handles=handles, title="N:M pattern", loc="upper left", fontsize=9))
    sub = f"{len(ok)} point(s)" + (f", {n_failed} failed (not plotted)" if n_failed else "")
    if targets:
        sub += f"; target {', '.join(targets)}"
    fig.suptitle(f"{title}: {sub}" if title else sub, fontsize=12)
    if grey_labels:
        _place_labels(fig, grey_labels, placed)
    tmp = f"{os.fspath(path)}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)

"""Pictures of bit-vector models (``ntm``): the heads over time, learning curves, bits as text.

``heads_figure`` draws what users of NTMs expect to see for one repeat-copy example: the input
bits, the output bits, and the write and read weightings (memory row × step) next to them, as in
Graves et al. 2014, figure 6. ``curves_figure`` draws training bit error against seconds for
several checkpoints (NTM vs LSTM). ``bits_picture`` writes one ``input | output`` text as rows of
``█``/``·`` for the terminal.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from genctl.render.plots import _pyplot


def heads_figure(trace: Mapping, *, title: str):
    """4 panels over the steps of one run: input bits, output bits, write and read weightings."""
    plt = _pyplot()
    steps = int(trace["steps"])
    heads = [k for k in ("w_write", "w_read") if k in trace]
    fig, axes = plt.subplots(2 + len(heads), 1, figsize=(max(6.0, steps * 0.12 + 2), 2.2 + 2.2 * len(heads)),
                             gridspec_kw={"height_ratios": [1, 1] + [3] * len(heads)}, sharex=True)
    start = int(trace["prompt_steps"]) - 1  # the step whose output is the first output vector
    panels = [("input", trace["input"], 1), ("output", trace["output"], start)]
    for ax, (name, image, offset) in zip(axes, panels):
        full = np.zeros((image.shape[0], steps))
        full[:, offset:offset + image.shape[1]] = image[:, :max(0, steps - offset)]
        ax.imshow(full, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_ylabel(f"{name}\nbits")
        ax.set_yticks([])
    for ax, name in zip(axes[2:], heads):
        ax.imshow(trace[name], aspect="auto", cmap="viridis", interpolation="nearest", origin="lower")
        ax.set_ylabel(f"{'write' if name == 'w_write' else 'read'} weighting\nmemory row")
    from matplotlib.ticker import MaxNLocator

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("step (BOS, input vectors, delimiter, then one output vector per step)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def curves_figure(curves: Mapping[str, Sequence[Sequence[float]]], *, title: str):
    """Training bit error (%) against seconds: ``{label: [[iteration, seconds, bit_error, ...], ...]}``."""
    from matplotlib.ticker import FuncFormatter

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.8), sharey=True)
    for label, curve in curves.items():
        c = np.asarray(curve, dtype=float)
        if len(c):
            for ax, x in zip(axes, (c[:, 1], c[:, 0])):
                ax.plot(x, 100 * c[:, 2], label=label)
    for ax, xlabel in zip(axes, ("seconds of training (compile included)", "iterations (batches of 32)")):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}".strip("0.")[:1] in ("2", "5") else ""))
        ax.set_xlabel(xlabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("train bit error (%), mean of each point's iterations")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def bits_picture(text: str, on: str = "█", off: str = "·") -> list[str]:
    """``"1011 0110 | 1011 0110"`` → one line per bit: the input's columns, a gap, the output's columns."""
    left, _, right = text.partition("|")
    cols_in, cols_out = left.split(), right.split()
    width = max((len(c) for c in cols_in + cols_out), default=0)

    def row(cols: list[str], i: int) -> str:
        return "".join(on if c[i] == "1" else off for c in cols)

    return [f"{row(cols_in, i)}  {row(cols_out, i)}" for i in range(width)]

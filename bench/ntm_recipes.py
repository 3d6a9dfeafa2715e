"""The ntm recipes of BENCHMARKS.md: NTM vs a same-size LSTM on copy / repeat copy, and the learning curves.

    python bench/ntm_recipes.py train copy ntm runs/ntm-copy            # the NTM, the dataset's time budget
    python bench/ntm_recipes.py train copy lstm runs/lstm-copy          # LSTMCell(118), about the NTM's parameters
    python bench/ntm_recipes.py train names ntm runs/ntm-names
    python bench/ntm_recipes.py curves runs/ntm-copy runs/lstm-copy --out bench/results/ntm/copy-curves.png

``train`` is ``genctl train ntm --dataset D`` with the hparams below (the CLI has no --hparam; the
LSTM is the same family with ``memory_rows=0``); one thread, as the recipes ran side by side.
Extra ``key=value`` arguments override hparams (``max_seconds=60``, ``lr=0.003``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LSTM = {"memory_rows": 0, "controller": 118}  # 66.4k parameters vs the NTM's 66.7k


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train(dataset: str, model: str, out: str, overrides: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    from genctl.training.train import train as run

    hparams = dict(LSTM) if model == "lstm" else {}
    hparams.update({k: parse_value(v) for k, v in (o.split("=", 1) for o in overrides)})
    config = run("ntm", dataset, out, overwrite=True, hparams=hparams)
    print(json.dumps(config["train"]))
    for point in curve_of(config)[-5:]:
        print(point)


def curve_of(config: dict) -> list:
    """The learning curve of a checkpoint config (``learning_curve``; ``train.curve`` in the first recipe runs)."""
    return config.get("learning_curve", {}).get("points") or config["train"].get("curve", [])


def curves(runs: list[str], out: str, title: str) -> None:
    from genctl.render.heads import curves_figure
    from genctl.render.plots import save_figure

    data = {}
    for run in runs:
        config = json.loads((Path(run) / "config.json").read_text())
        t, hp = config["train"], config["hparams"]
        kind = "NTM" if hp["memory_rows"] else "LSTM"
        data[f"{kind} ({t['parameters'] / 1000:.1f}k params, {t['iterations']} it, {Path(run).name})"] = curve_of(config)
    print(save_figure(curves_figure(data, title=title), out))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("dataset", choices=["copy", "repeat-copy", "names"])
    t.add_argument("model", choices=["ntm", "lstm"])
    t.add_argument("out")
    t.add_argument("overrides", nargs="*", help="hparam=value")
    c = sub.add_parser("curves")
    c.add_argument("runs", nargs="+")
    c.add_argument("--out", required=True)
    c.add_argument("--title", default="train bit error vs seconds")
    args = parser.parse_args(argv)
    if args.command == "train":
        train(args.dataset, args.model, args.out, args.overrides)
    else:
        curves(args.runs, args.out, args.title)


if __name__ == "__main__":
    main(sys.argv[1:])

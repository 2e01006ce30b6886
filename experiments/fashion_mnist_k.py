"""K = 1 vs 2 vs 4 at about equal parameters, with and without co-training, on Fashion-MNIST.

Full training set (54,000 images after the held-out validation split), one fixed budget of epochs
for every run, test accuracy of the ensemble and of each member. Each row is also one command:
    automl train --model convnet_s -k K --cot-weight W --epochs 3 --seed S --threads 2
(the CLI's defaults are the recipe below: batch 64, lr 0.05, wd 5e-4 divided by the K rule,
warm-up 0.2 epochs, co-training warm-up 1 epoch, Fashion-MNIST's default augmentation).

    python experiments/fashion_mnist_k.py [--epochs 3] [--seed 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from automl.data import load_dataset
from automl.models import create_model
from automl.models.complexity import count_parameters
from automl.training import TrainConfig, evaluate, fit

RUNS = [(1, 0.0), (2, 0.5), (2, 0.0), (4, 0.5), (4, 0.0)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="convnet_s")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion_mnist")
    print(
        f"# {args.model}, {args.epochs} epochs, batch 64, lr 0.05, seed {args.seed}, "
        f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)}"
    )
    print(
        "| K | cot weight | params | val acc | test acc (ensemble) | test acc (members) | minutes |"
    )
    print("|---|---|---|---|---|---|---|")
    for k, w in RUNS:
        torch.manual_seed(args.seed)
        model = create_model(args.model, num_classes=10, in_chans=1, split_factor=k)
        cfg = TrainConfig(
            epochs=args.epochs,
            batch_size=64,
            lr=0.05,
            weight_decay=5e-4,
            warmup_epochs=0.2,
            cot_weight=w,
            cot_warmup_epochs=1,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        result = fit(model, data, cfg)
        minutes = (time.perf_counter() - t0) / 60
        test = evaluate(model, data.test)
        members = ", ".join(f"{a:.4f}" for a in test.member_accuracies)
        print(
            f"| {k} | {w} | {count_parameters(model):,} | {result.val_accuracy:.4f} | "
            f"{test.accuracy:.4f} | {members} | {minutes:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

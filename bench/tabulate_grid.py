"""Train a grid of the Fashion-MNIST space for real and tabulate it, for simulated searches.

Every configuration of the grid (each K, 6 widths, 3 co-training weights, both kinds; K = 1 has
no co-training) is built, its latency measured before training as a trial does, and co-trained
with the space's recipe for the full epoch budget; each epoch's validation accuracy and seconds,
the final test accuracy and the latency go to one JSON line per configuration. The run resumes:
configurations already in the output are skipped. ``bench/simulate_search.py`` replays the table.

    python bench/tabulate_grid.py --out bench/data/fashion_grid.jsonl

The defaults size the table at about an hour on 2 cores: 5,000 training images (a seeded subset
of the 54,000 left after the validation split) for 9 epochs, i.e. 45,000 images seen by a
configuration that trains to the end, against 3 x 12,000 = 36,000 per trial in ``make demo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import random
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.measure.latency import measure
from automl.models import create_model
from automl.space import SearchSpace, TrialParams, load_space
from automl.training import EpochRecord, evaluate, fit
from bench._common import machine

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "fashion_mnist_cpu.toml"
WIDTHS = (0.5, 0.66, 0.87, 1.15, 1.52, 2.0)  # log-spaced over the space's [0.5, 2.0]
COT_WEIGHTS = (0.0, 0.5, 1.0)
KINDS = ("js", "kl")


def grid_space(epochs: int, train_limit: int, eval_limit: int) -> SearchSpace:
    """The demo's space (model, recipe, augmentation, latency mode) with the table's own data
    subset and epoch budget: full passes over the subset, the learning-rate warm-up a fifth of
    one, each latency mode timed for 1 s."""
    space = load_space(SPACE)
    return dataclasses.replace(
        space,
        data=dataclasses.replace(space.data, train_limit=train_limit, eval_limit=eval_limit),
        train=dataclasses.replace(
            space.train, epochs=epochs, max_steps_per_epoch=None, warmup_epochs=0.2
        ),
        objectives=dataclasses.replace(space.objectives, latency_min_run_s=1.0),
    )


def grid(splits: tuple[int, ...]) -> list[dict[str, object]]:
    configs: list[dict[str, object]] = []
    for k, w in itertools.product(splits, WIDTHS):
        if k == 1:
            configs.append({"split_factor": 1, "width_mult": w})
            continue
        for cw, kind in itertools.product(COT_WEIGHTS, KINDS):
            configs.append({"split_factor": k, "width_mult": w, "cot_weight": cw, "cot_kind": kind})
    return configs


def key_of(config: dict[str, object]) -> str:
    return json.dumps(config, sort_keys=True)


def run_config(
    space: SearchSpace, config: dict[str, object], data: object, seed: int
) -> dict[str, object]:
    from automl.data import DataBundle

    assert isinstance(data, DataBundle)
    k = int(config["split_factor"])  # type: ignore[call-overload]
    w = float(config["width_mult"])  # type: ignore[arg-type]
    params = TrialParams(
        split_factor=k,
        width_mult=w,
        cot_weight=float(config.get("cot_weight", 0.0)),  # type: ignore[arg-type]
        cot_kind=str(config.get("cot_kind", "js")),
        cot_warmup_epochs=0,
        lr=space.train.lr,
        weight_decay=space.train.weight_decay,
        divide_weight_decay=True,
    )
    torch.manual_seed(seed)
    model = create_model(
        space.model.name,
        num_classes=data.num_classes,
        in_chans=data.in_chans,
        split_factor=k,
        width_mult=w,
        **space.model.options,
    )
    obj = space.objectives
    t0 = time.perf_counter()
    lat = measure(
        model,
        torch.randn(obj.latency_batch_size, data.in_chans, data.image_size, data.image_size),
        mode=obj.latency_mode,
        threads=obj.latency_threads,
        warmup_s=obj.latency_warmup_s,
        min_run_s=obj.latency_min_run_s,
    )
    latency_s = time.perf_counter() - t0
    records: list[EpochRecord] = []
    result = fit(model, data, space.train_config(params, seed=seed), callback=records.append)
    test = evaluate(model, data.test)
    return {
        "config": config,
        "params": sum(p.numel() for p in model.parameters()),
        "latency_ms": round(lat.median_ms, 4),
        "latency_iqr_ms": round(lat.iqr_ms, 4),
        "latency_mode": lat.mode,
        "latency_seconds": round(latency_s, 2),
        "val_accuracy": [round(r.val_accuracy, 4) for r in result.history],
        "epoch_seconds": [round(r.seconds, 2) for r in result.history],
        "test_accuracy": round(test.accuracy, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/data/fashion_grid.jsonl"))
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--train-limit", type=int, default=5000)
    ap.add_argument("--eval-limit", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="tabulate only this many configs")
    args = ap.parse_args()

    space = grid_space(args.epochs, args.train_limit, args.eval_limit)
    configs = grid(tuple(int(k) for k in space.search.split_factor.choices))
    # Shuffled, so that a table cut short still covers the whole space evenly.
    random.Random(args.seed).shuffle(configs)
    if args.limit is not None:
        configs = configs[: args.limit]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            row = json.loads(line)
            if "config" in row:
                done.add(key_of(row["config"]))
    else:
        header = {
            "table": "fashion_mnist_cpu grid",
            "command": " ".join(["python", *sys.argv]),
            "machine": machine(),
            "epochs": args.epochs,
            "train_limit": args.train_limit,
            "eval_limit": args.eval_limit,
            "space": str(SPACE.name),
        }
        args.out.write_text(json.dumps(header) + "\n")
    todo = [c for c in configs if key_of(c) not in done]
    data = space.data.load()
    print(f"{len(done)} configs tabulated, {len(todo)} to go; {machine()}", flush=True)
    for config in tqdm(todo, unit="config"):
        row = run_config(space, config, data, args.seed)
        with args.out.open("a") as f:
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()

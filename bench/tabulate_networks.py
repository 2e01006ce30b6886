"""Train every distinct network of the demo space for real, with seeds, and time each network once.

The benchmark of the search (``bench/search_benchmark.py``) replays this table
(``bench/data/fashion_networks.jsonl``). A width multiplier becomes channels by rounding, so the
demo space's width range holds only a few networks per K (``automl.space.networks.space_networks``:
7, 6 and 4 for K = 1, 2 and 4 of ``convnet_s`` over 0.5-2.0). Each is trained at the demo's fidelity
(the space's own recipe: 27 epochs of 94 batches of 64, one warm-up epoch), K = 1 without co-
training and K > 1 at each co-training setting of ``SETTINGS``, with ``--seeds`` seeds; validation
accuracy after every epoch, test accuracy at the end, each epoch's seconds.

Two passes, each resumable (rows already in the output are skipped), each appending JSON lines:

    nice -n 19 python bench/tabulate_networks.py train    # hours at idle priority
    # or in two processes of one thread each (small convnets train faster so on 2 cores):
    nice -n 19 python bench/tabulate_networks.py train --shard 0/2 --threads 1 &
    nice -n 19 python bench/tabulate_networks.py train --shard 1/2 --threads 1
    python bench/tabulate_networks.py latency             # minutes, on a quiet machine
    # or a few measurements at a time (--limit), to leave the machine to others in between
    python bench/tabulate_networks.py latency --rounds 5 --quiet-pass quiet-1
    # a new pass on a machine with nothing else running: only its samples, the median counts

The latency pass is separate so that the training of the first pass (at nice 19, to leave the
machine to other work) does not disturb it: one row per network from ``--rounds``
measurements with the project's ``measure`` (the space's latency settings; each the median of many
timed calls), taken in rounds over the networks: the lowest counts (see ``latency_row``), the
median is kept beside it, with the load average of each moment and the wall time one measurement
takes (what a trial pays for it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from automl.data import DataBundle
from automl.measure.latency import measure
from automl.space import SearchSpace, TrialParams, load_space
from automl.space.networks import Network, space_networks
from automl.training import EpochRecord, evaluate, fit
from bench._common import machine

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "fashion_mnist_cpu.toml"
# Co-training (weight, kind) settings for K > 1, in the order they are trained: a table cut
# short still has every network at the first settings.
SETTINGS: tuple[tuple[float, str], ...] = ((0.5, "js"), (1.0, "kl"), (1.0, "js"), (0.5, "kl"))


def network_widths(space: SearchSpace) -> list[tuple[int, float]]:
    """(K, the smallest width that builds it) for every distinct network of the space."""
    return [(c.split_factor, w) for c in space_networks(space) for w in c.widths]


def configs(space: SearchSpace, n_settings: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for cw, kind in [(0.0, "js"), *SETTINGS[:n_settings]]:
        for k, w in network_widths(space):
            if (k == 1) != (cw == 0.0):
                continue  # K = 1 has no co-training; K > 1 only at the settings
            config: dict[str, Any] = {"split_factor": k, "width_mult": w}
            if k > 1:
                config |= {"cot_weight": cw, "cot_kind": kind}
            out.append(config)
    return out


def params_of(space: SearchSpace, config: dict[str, Any]) -> TrialParams:
    return TrialParams(
        split_factor=int(config["split_factor"]),
        width_mult=float(config["width_mult"]),
        cot_weight=float(config.get("cot_weight", 0.0)),
        cot_kind=str(config.get("cot_kind", "js")),
        cot_warmup_epochs=0,
        lr=space.train.lr,
        weight_decay=space.train.weight_decay,
        divide_weight_decay=True,
    )


def network_of(space: SearchSpace, config: dict[str, Any], data: DataBundle) -> Network:
    params = params_of(space, config)
    with torch.device("meta"):
        model = space.build_model(params, data.num_classes, data.in_chans)
    return Network.of(model, space.model.name, params.split_factor, space.model.options)


def key_of(row: dict[str, Any]) -> str:
    return json.dumps([row.get("config"), row.get("seed")], sort_keys=True)


def done_rows(out: Path, kind: str) -> set[str]:
    if not out.exists():
        return set()
    rows = (json.loads(line) for line in out.read_text().splitlines()[1:] if line.strip())
    return {key_of(r) if kind == "train" else str(r["network"]) for r in rows if r["kind"] == kind}


def load_data(space: SearchSpace, val_limit: int | None) -> DataBundle:
    data = space.data.load()
    if val_limit is not None and val_limit < len(data.val):
        # The first images of the (seeded, shuffled) validation split, as eval_limit takes them.
        data = dataclasses.replace(data, val=data.val.subset(torch.arange(val_limit)))  # type: ignore[attr-defined]
    return data


def train_row(
    space: SearchSpace, config: dict[str, Any], seed: int, data: DataBundle
) -> dict[str, Any]:
    params = params_of(space, config)
    torch.manual_seed(seed)
    model = space.build_model(params, data.num_classes, data.in_chans)
    records: list[EpochRecord] = []
    t0 = time.perf_counter()
    result = fit(model, data, space.train_config(params, seed=seed), callback=records.append)
    train_s = time.perf_counter() - t0
    test = evaluate(model, data.test)
    return {
        "kind": "train",
        "config": config,
        "seed": seed,
        "network": network_of(space, config, data).id,
        "params": sum(p.numel() for p in model.parameters()),
        "val_accuracy": [round(r.val_accuracy, 4) for r in result.history],
        "epoch_seconds": [round(r.seconds, 2) for r in result.history],
        "train_seconds": round(train_s, 1),
        "test_accuracy": round(test.accuracy, 4),
        "threads": torch.get_num_threads(),
        "loadavg": round(os.getloadavg()[0], 2),
    }


def latency_sample(
    space: SearchSpace, config: dict[str, Any], data: DataBundle, network: str
) -> dict[str, Any]:
    """One measurement of a network with the project's ``measure`` and the space's settings."""
    params = params_of(space, config)
    torch.manual_seed(0)
    model = space.build_model(params, data.num_classes, data.in_chans)
    obj = space.objectives
    x = torch.randn(obj.latency_batch_size, data.in_chans, data.image_size, data.image_size)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    lat = measure(
        model,
        x,
        mode=obj.latency_mode,
        threads=obj.latency_threads,
        warmup_s=obj.latency_warmup_s,
        min_run_s=obj.latency_min_run_s,
    )
    return {
        "kind": "latency_sample",
        "network": network,
        "latency_ms": round(lat.median_ms, 4),
        "latency_iqr_ms": round(lat.iqr_ms, 4),
        "latency_mode": lat.mode,
        "seconds": round(time.perf_counter() - t0, 2),
        "loadavg": round(load, 2),
    }


def latency_row(
    network: str, config: dict[str, Any], samples: list[dict[str, Any]], counts: str = "lowest"
) -> dict[str, Any]:
    """A network's latency from its measurements (each the median of many timed calls), taken
    in rounds over all networks so that a busy spell of the machine touches every network alike.
    The lowest measurement counts, as ``settle_reference`` keeps its lowest chunk: load from
    elsewhere only ever slows a measurement down, and on a shared 2-core machine it slows an
    undivided network's two-thread measurement by 3-10x about half the time (the median of
    the measurements is kept beside it). With ``counts = "median"`` (a pass on a quiet machine,
    ``--quiet-pass``) the median counts, the lowest kept beside it."""
    ms = [s["latency_ms"] for s in samples]
    return {
        "kind": "latency",
        "network": network,
        "config": {"split_factor": config["split_factor"], "width_mult": config["width_mult"]},
        "latency_ms": round(min(ms) if counts == "lowest" else statistics.median(ms), 4),
        "latency_counts": counts,
        "latency_lowest_ms": round(min(ms), 4),
        "latency_median_ms": round(statistics.median(ms), 4),
        "latency_samples_ms": ms,
        "latency_iqr_ms": round(statistics.median(s["latency_iqr_ms"] for s in samples), 4),
        "latency_modes": [s["latency_mode"] for s in samples],
        # What one trial pays for its measurement with the space's settings.
        "latency_seconds": round(statistics.median(s["seconds"] for s in samples), 2),
        "loadavg": [s["loadavg"] for s in samples],
    }


def read_rows(out: Path, kind: str) -> list[dict[str, Any]]:
    lines = out.read_text().splitlines()[1:] if out.exists() else []
    return [r for r in (json.loads(line) for line in lines if line.strip()) if r["kind"] == kind]


def status(space: SearchSpace, todo: list[dict[str, Any]], seeds: int, out: Path) -> None:
    """What the table holds and what it still lacks."""
    train = read_rows(out, "train")
    timed = {r["network"] for r in read_rows(out, "latency")}
    have = {key_of(r) for r in train}
    missing = [
        (c, s) for s in range(seeds) for c in todo if key_of({"config": c, "seed": s}) not in have
    ]
    hours = sum(r["train_seconds"] for r in train) / 3600
    print(f"{len(train)} training rows ({hours:.2f} h of training), {len(timed)} networks timed")
    nets: dict[int, set[str]] = {c["split_factor"]: set() for c in todo}
    for r in train:
        nets[r["config"]["split_factor"]].add(r["network"])
    print("networks trained per K: " + ", ".join(f"K={k}: {len(v)}" for k, v in nets.items()))
    for c, s in missing:
        print(f"missing: {c} seed {s}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["train", "latency", "list", "status"])
    ap.add_argument("--out", type=Path, default=Path("bench/data/fashion_networks.jsonl"))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--settings", type=int, default=2, help=f"co-training settings of {SETTINGS}")
    ap.add_argument("--val-limit", type=int, default=None, help="validation images (space: all)")
    ap.add_argument("--epochs", type=int, default=None, help="fewer epochs (timing trials only)")
    ap.add_argument("--rounds", type=int, default=3, help="latency measurements per network")
    ap.add_argument("--limit", type=int, default=None, help="only this many rows (samples) now")
    ap.add_argument("--shard", default="0/1", help="i/n: train every n-th job from the i-th")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training")
    ap.add_argument(
        "--quiet-pass",
        default=None,
        metavar="NAME",
        help="latency: a new pass named NAME on a quiet machine, only its own samples, the "
        "median counts (its rows replace the earlier ones: the last row of a network counts)",
    )
    args = ap.parse_args()

    space = load_space(SPACE)
    if args.epochs is not None:
        space = dataclasses.replace(
            space, train=dataclasses.replace(space.train, epochs=args.epochs)
        )
    todo_configs = configs(space, args.settings)
    if args.what == "list":
        for c in todo_configs:
            print(c)
        print(f"{len(todo_configs)} configurations x {args.seeds} seeds")
        return
    if args.what == "status":
        status(space, todo_configs, args.seeds, args.out)
        return
    data = load_data(space, args.val_limit)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        header = {
            "table": "fashion_mnist_cpu networks",
            "space": SPACE.name,
            "epochs": space.train.epochs,
            "steps_per_epoch": space.train.max_steps_per_epoch,
            "batch_size": space.train.batch_size,
            "val_images": len(data.val),
            "test_images": len(data.test),
            "machine": machine(),
        }
        args.out.write_text(json.dumps(header) + "\n")
    done = done_rows(args.out, "train") if args.what == "train" else set()
    command = " ".join(["python", *sys.argv])
    if args.what == "train":
        # Seed-major: a table cut short has every configuration at the first seed.
        jobs = [(c, s) for s in range(args.seeds) for c in todo_configs]
        i, n = (int(v) for v in args.shard.split("/"))
        jobs = [(c, s) for c, s in jobs[i::n] if key_of({"config": c, "seed": s}) not in done]
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        print(f"{len(done)} rows done, {len(jobs)} to go; {machine()}", flush=True)
        for c, s in jobs[: args.limit]:
            row = train_row(space, c, s, data) | {"command": command, "machine": machine()}
            with args.out.open("a") as f:
                f.write(json.dumps(row, separators=(",", ":")) + "\n")
            print(f"{c} seed {s}: {row['train_seconds']} s, val {row['val_accuracy'][-1]}, "
                  f"test {row['test_accuracy']}, load {row['loadavg']}", flush=True)  # fmt: skip
        return
    nets = {network_of(space, c, data).id: c for c in todo_configs}
    samples: dict[str, list[dict[str, Any]]] = {n: [] for n in nets}
    for r in read_rows(args.out, "latency_sample"):
        if r.get("pass") == args.quiet_pass:
            samples[r["network"]].append(r)
    # More rounds asked than a network's latency row holds: it is measured again, and a new row
    # (the last one counts) takes the median of all its measurements.
    todo = [(n, c) for rnd in range(args.rounds) for n, c in nets.items() if len(samples[n]) <= rnd]
    done = {n for n in nets if len(samples[n]) >= args.rounds}
    print(f"{len(done)} networks timed, {len(todo)} measurements to go; {machine()}", flush=True)
    for net, c in todo[: args.limit]:
        sample = latency_sample(space, c, data, net) | {"command": command}
        if args.quiet_pass is not None:
            sample |= {"pass": args.quiet_pass, "machine": machine()}
        samples[net].append(sample)
        lines = [sample]
        if len(samples[net]) == args.rounds:
            counts = "lowest" if args.quiet_pass is None else "median"
            row = latency_row(net, c, samples[net], counts) | {"command": command}
            lines.append(row | ({"machine": machine()} if args.quiet_pass else {}))
        with args.out.open("a") as f:
            f.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in lines)
        print(f"{net}: {sample['latency_ms']} ms in {sample['seconds']} s", flush=True)


if __name__ == "__main__":
    main()

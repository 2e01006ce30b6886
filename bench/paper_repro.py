"""A reduced reproduction of the paper's claim on real data: WRN-16-8 on full Fashion-MNIST.

K = 1 / 2 / 4 members (widen factor 8 -> 6 -> 4 by the WRN rule), JS co-training weight 0.5,
bf16 autocast on a GPU, a fixed number of epochs or a time budget per K. Reports the test accuracy
of the ensemble and of every member (selection would use the validation split; here the last
epoch is reported, no selection), parameters and MACs, and latency per execution mode at batch 1
and 64 (``automl.measure.latency.measure``: warm-up, synchronisation, repeats, median).

    python bench/paper_repro.py                 # GPU: ~15 epochs per K, full data
    python bench/paper_repro.py --quick         # CPU: 512 images, 1 epoch, width x0.25
    python bench/paper_repro.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from automl.data import load_dataset
from automl.measure.latency import measure, supported_modes
from automl.models import create_model
from automl.models.complexity import count_macs, count_parameters
from automl.training import TrainConfig, fit
from automl.training.evaluate import evaluate

NAME = "wrn16_8"


def run(args: argparse.Namespace) -> dict[str, Any]:
    dev = torch.device("cuda:0" if torch.cuda.is_available() and not args.cpu else "cpu")
    quick = args.quick
    data = load_dataset(
        "fashion_mnist",
        val_fraction=0.1,
        train_limit=512 if quick else None,
        eval_limit=256 if quick else None,
    )
    width = 0.25 if quick else 1.0
    epochs = 1 if quick else args.epochs
    results: dict[str, Any] = {
        "model": NAME,
        "width_mult": width,
        "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "epochs": epochs,
        "quick": quick,
        "per_k": {},
    }
    for k in args.k:
        torch.manual_seed(0)
        model = create_model(
            NAME,
            num_classes=data.num_classes,
            in_chans=data.in_chans,
            split_factor=k,
            width_mult=width,
        )
        shape = (data.in_chans, data.image_size, data.image_size)
        params, macs = count_parameters(model), count_macs(model, shape)
        config = TrainConfig(
            epochs=epochs,
            batch_size=128,
            lr=0.1,
            weight_decay=5e-4,
            warmup_epochs=1.0 if epochs > 2 else 0.0,
            cot_weight=0.5,
            cot_warmup_epochs=max(1, epochs // 3),
            amp=dev.type == "cuda",  # bf16 autocast where the GPU supports it
            channels_last=dev.type == "cuda",
            max_steps_per_epoch=4 if quick else None,
            seed=0,
        )
        t0 = time.time()
        budget = args.budget_s

        def stop_at_budget(record: Any, t_start: float = t0, limit: float = budget) -> None:
            if limit > 0 and time.time() - t_start > limit:
                raise TimeoutError(f"time budget {limit:.0f} s reached after epoch {record.epoch}")

        try:
            history = fit(model, data, config, device=dev, callback=stop_at_budget).history
        except TimeoutError as e:
            print(f"K={k}: {e}")
            history = []
        train_s = time.time() - t0
        test = evaluate(model, data.test, device=dev)
        lat: dict[str, dict[str, float]] = {}
        for batch in (1, 64):
            x = torch.randn(batch, *shape)
            lat[str(batch)] = {}
            for mode in supported_modes(dev, k):
                r = measure(model, x, mode=mode, device=dev, min_run_s=0.3 if quick else 1.0)
                lat[str(batch)][str(mode)] = round(r.median_ms, 4)
        results["per_k"][str(k)] = {
            "params_m": round(params / 1e6, 3),
            "gmacs": round(macs / 1e9, 4),
            "epochs_run": len(history) if history else "budget hit during epoch 1",
            "train_s": round(train_s, 1),
            "val_accuracy": history[-1].val_accuracy if history else None,
            "test_accuracy": test.accuracy,
            "member_test_accuracies": test.member_accuracies,
            "latency_ms": lat,
        }
        print(json.dumps({f"K={k}": results["per_k"][str(k)]}), flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny subset, 1 epoch, narrow net (CPU)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--budget-s", type=float, default=0.0, help="stop a K's training after this")
    p.add_argument("--k", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args()
    results = run(args)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Train, evaluate and time every corner of a CPU search space; run as a subprocess by the tests.

    python tests/training/cpu_corners.py search_spaces/smoke.toml [more spaces ...]

A corner is one division factor K of the space, its smallest or largest width, and one training
form (divided, fused, and the space's own setting, e.g. ``auto``). Each corner trains a few real
steps with the co-training loss (the explicit forms in channels_last; the space's own setting
choosing form and layout as a trial does) and evaluates on the validation split; each network
(K and width) is timed once in the space's latency mode, after the space's own form trained it
(latency does not depend on the training form). A crash in native code kills this process, not
the test runner, which then reports the corner that was running (printed before it starts).
"""

from __future__ import annotations

import sys
from itertools import product

import torch

from automl.data import load_dataset
from automl.measure.latency import measure
from automl.models import create_model
from automl.space import Choice, load_space
from automl.training import TrainConfig, fit


def widths(param: object) -> list[float]:
    if isinstance(param, Choice):
        return sorted({min(param.choices), max(param.choices)})
    return [param.low, param.high]  # type: ignore[attr-defined]


def run_space(path: str) -> int:
    space = load_space(path)
    d = space.data
    batch = space.train.batch_size
    data = load_dataset(
        d.dataset, d.root, val_fraction=d.val_fraction, train_limit=3 * batch, eval_limit=128
    )
    kinds = list(space.search.cot_kind.choices)
    n = 0
    for k, w in product(space.search.split_factor.choices, widths(space.search.width_mult)):
        forms = ["divided"] if k == 1 else sorted({"divided", "fused", space.train.execution})
        for form in forms:
            kind = kinds[n % len(kinds)]
            n += 1
            print(f"corner {path} K={k} width={w:.3f} form={form} cot={kind}", flush=True)
            model = create_model(
                space.model.name,
                num_classes=data.num_classes,
                in_chans=data.in_chans,
                split_factor=k,
                width_mult=w,
            )
            config = TrainConfig(
                epochs=1,
                batch_size=batch,
                lr=space.train.lr,
                warmup_epochs=0.0,
                cot_weight=0.5,
                cot_kind=kind,
                cot_warmup_epochs=0,
                augment=space.train.augment,
                execution=form,
                max_steps_per_epoch=3,
                # The explicit forms train in channels_last, the layout the AVX2 defect is in;
                # the space's own setting (auto) also times the layouts, as a trial does.
                channels_last=None if form == space.train.execution else True,
            )
            result = fit(model, data, config, device="cpu")
            acc = result.val_accuracy
            if not 0.0 <= acc <= 1.0:
                print(f"bad result: accuracy {acc}", flush=True)
                return 1
            if form != space.train.execution and not (k == 1 and form == "divided"):
                print(f"  ok: val accuracy {acc:.3f}", flush=True)
                continue
            shape = (data.in_chans, data.image_size, data.image_size)
            sample = torch.randn(space.objectives.latency_batch_size, *shape)
            lat = measure(
                model,
                sample,
                mode=space.objectives.latency_mode,
                device="cpu",
                threads=space.objectives.latency_threads,
                warmup_s=0.02,
                min_run_s=0.05,
            )
            if not lat.median_ms > 0:
                print(f"bad result: latency {lat.median_ms} ms", flush=True)
                return 1
            print(f"  ok: val accuracy {acc:.3f}, latency {lat.median_ms:.3f} ms ({lat.mode})")
    return 0


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)  # one thread reproduces the worst of the AVX2 defect (hangs aside)
    for path in argv:
        if run_space(path) != 0:
            return 1
    print("all corners ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

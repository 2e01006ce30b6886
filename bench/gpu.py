"""(d) (a) and (b) on a GPU in one script, well under 10 minutes: WRN-16-8 on CIFAR-sized inputs,
bf16 autocast and channels_last, K in {1, 2, 4}, every mode the machine supports, batch 64.

    python bench/gpu.py
"""

from __future__ import annotations

import statistics
import time

import torch
from _common import machine, median_time, params_m

from automl.measure.latency import measure, supported_modes
from automl.models import create_model, fuse
from automl.training.losses import ensemble_loss

NAME = "wrn16_8"
BATCH = 64


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py needs a CUDA GPU")
    t_start = time.time()
    dev = torch.device("cuda:0")
    torch.backends.cudnn.benchmark = True
    print(f"# GPU benchmark, {NAME}, batch {BATCH}, bf16 autocast, channels_last, {machine()}")
    x = torch.randn(BATCH, 3, 32, 32)

    def build(k: int) -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(NAME, num_classes=100, split_factor=k)

    print("\n(b) inference latency")
    base = measure(build(1), x, mode="auto", device=dev)
    print(f"undivided: {base.median_ms:.3f} ms ({base.mode}), modes {base.modes}")
    for k in (2, 4):
        r = measure(build(k), x, mode="auto", device=dev)
        for mode, ms in r.modes.items():
            print(f"K={k} {mode:>10}: {ms:.3f} ms, ratio {ms / base.median_ms:.2f}")
        print(f"K={k} best ({r.mode}) / undivided: {r.median_ms / base.median_ms:.2f}")

    print("\n(a) training step (forward, CE + JS, backward, SGD), bf16 autocast")
    results: dict[str, float] = {}
    for k in (1, 2, 4):
        forms = {"loop": build(k).to(dev)}
        if k > 1:
            forms["fused"] = fuse(build(k).to(dev))
        for form, model in forms.items():
            model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            views = torch.randn(k, BATCH, 3, 32, 32, device=dev)
            y = torch.randint(0, 100, (BATCH,), device=dev)

            def step(
                model: torch.nn.Module = model,
                opt: torch.optim.Optimizer = opt,
                views: torch.Tensor = views,
                y: torch.Tensor = y,
                k: int = k,
            ) -> None:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    logits = model(views)
                loss = ensemble_loss(logits, y, cot_weight=0.5 if k > 1 else 0.0).total
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            t = statistics.median(median_time(step, dev, warmup=5, repeats=20) for _ in range(3))
            results[f"{k}-{form}"] = t
            print(
                f"K={k} {form:>5} {params_m(model):7.2f}M params: {t * 1e3:.2f} ms/step, "
                f"ratio {t / results['1-loop']:.2f}"
            )
    print(
        f"\ntotal {time.time() - t_start:.0f}s; modes available at K=2: "
        f"{[m.value for m in supported_modes(dev, 2)]}"
    )


if __name__ == "__main__":
    main()

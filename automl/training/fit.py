"""The co-training loop: one readable loop, seeded per epoch, checkpointed after every epoch.

Every random draw of epoch e (shuffling, augmentation, mixup, dropout) comes from generators seeded
by (seed, e). A run resumed from the checkpoint of epoch e therefore continues exactly the
trajectory of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from automl.data.augment import mixup
from automl.data.datasets import DataBundle
from automl.device import resolve_device
from automl.errors import ConfigError, DivergedError
from automl.models.division import divided_weight_decay
from automl.models.ensemble import DividedNet, Ensemble
from automl.models.fusion import fuse, unfuse
from automl.training.config import TrainConfig
from automl.training.evaluate import evaluate
from automl.training.execution import TrainForm, choose_form
from automl.training.losses import cot_weight_at, ensemble_loss
from automl.training.schedule import lr_at

__all__ = ["EpochRecord", "FitResult", "fit"]


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_ce: float
    train_cot: float
    cot_weight: float
    lr: float
    val_accuracy: float
    member_val_accuracies: list[float]
    seconds: float


@dataclass
class FitResult:
    history: list[EpochRecord] = field(default_factory=list)
    resumed_from_epoch: int = 0
    form: str = "divided"

    @property
    def val_accuracy(self) -> float:
        """Validation accuracy after the last epoch: what model selection uses."""
        return self.history[-1].val_accuracy if self.history else 0.0

    @property
    def member_val_accuracies(self) -> list[float]:
        return self.history[-1].member_val_accuracies if self.history else []


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % (2**62)


def _save_atomic(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def fit(
    model: Ensemble,
    data: DataBundle,
    config: TrainConfig,
    *,
    device: str | torch.device | None = None,
    callback: Callable[[EpochRecord], None] | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
    step_hook: Callable[[int], None] | None = None,
) -> FitResult:
    """Co-train the K members of ``model`` on ``data`` with ``config``.

    After every epoch the ensemble and members are evaluated on the validation split, the record
    is passed to ``callback`` (which may raise, e.g. ``optuna.TrialPruned``) and, when
    ``checkpoint_path`` is given, a checkpoint is written atomically. With ``resume`` an existing
    checkpoint from the same configuration is loaded and training continues after its epoch.
    ``step_hook`` is called with the global step after each optimisation step (profiling).
    """
    dev = resolve_device(device)
    k = model.split_factor
    model.to(dev)
    # channels_last helps oneDNN on the CPU as much as cuDNN on the GPU (see BENCHMARKS.md).
    use_cl = config.channels_last
    if use_cl:
        model.to(memory_format=torch.channels_last)
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())

    n_train = len(data.train)
    if n_train == 0:
        raise ConfigError("the training split is empty")
    drop_last = n_train >= config.batch_size
    steps = data.train.num_batches(config.batch_size, drop_last)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    total_steps = steps * config.epochs
    warmup_steps = round(config.warmup_epochs * steps)
    augment = config.augment if config.augment is not None else data.default_augment

    result = FitResult()
    start_epoch = 0
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    state: dict[str, Any] | None = None
    if ckpt is not None and resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        if state.get("fingerprint") != config.fingerprint():
            raise ConfigError(
                f"checkpoint {ckpt} was written by a different training configuration; "
                "delete it or pass resume=False"
            )

    # The form (K modules or one fused network) is the checkpoint's when resuming, so that the
    # optimizer state matches its parameters; otherwise the recipe's, "auto" timing both.
    if state is not None:
        form = TrainForm(state.get("form", TrainForm.DIVIDED))
    else:
        probe_gen = torch.Generator().manual_seed(0)
        views0, y0 = next(
            data.train.batches(
                config.batch_size,
                views=k,
                augment=augment,
                gen=probe_gen,
                shuffle=False,
                drop_last=drop_last,
                device=dev,
            )
        )
        form = choose_form(model, config.execution, views0, y0, channels_last=use_cl)
    train_model: Ensemble = model
    if form is TrainForm.FUSED and isinstance(model, DividedNet):
        train_model = fuse(model)
        if use_cl:
            train_model.to(memory_format=torch.channels_last)
    result.form = str(form)
    wd = (
        divided_weight_decay(config.weight_decay, k)
        if config.divide_weight_decay
        else config.weight_decay
    )
    optimizer = torch.optim.SGD(
        train_model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=wd,
    )
    if state is not None:
        train_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"])
        result.history = [EpochRecord(**r) for r in state["history"]]
        result.resumed_from_epoch = start_epoch

    bar = tqdm(
        total=total_steps,
        initial=start_epoch * steps,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout draws
            gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch) + 1)
            w_cot = (
                cot_weight_at(epoch, config.cot_weight, config.cot_warmup_epochs) if k > 1 else 0.0
            )
            train_model.train()
            sums = torch.zeros(3, dtype=torch.float64)
            n_steps = 0
            batches = data.train.batches(
                config.batch_size,
                views=k,
                augment=augment,
                gen=gen,
                shuffle=True,
                drop_last=drop_last,
                device=dev,
            )
            for i, (views, y) in enumerate(batches):
                if i >= steps:
                    break
                step = epoch * steps + i
                lr = lr_at(
                    step,
                    total_steps=total_steps,
                    base_lr=config.lr,
                    warmup_steps=warmup_steps,
                    min_lr=config.min_lr,
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
                perm: torch.Tensor | None = None
                lam = 1.0
                if config.mixup_alpha > 0:
                    views, perm, lam = mixup(views, config.mixup_alpha, gen)
                if use_cl:
                    views = (
                        views.contiguous(memory_format=torch.channels_last)
                        if views.dim() == 4
                        else views
                    )
                with _autocast(dev, use_amp):
                    logits = train_model(views)
                parts = ensemble_loss(
                    logits,
                    y,
                    cot_weight=w_cot,
                    cot_kind=config.cot_kind,
                    temperature=config.cot_temperature,
                    label_smoothing=config.label_smoothing,
                    mix_targets=y[perm] if perm is not None else None,
                    mix_lambda=lam,
                )
                values = torch.stack([parts.total.detach(), parts.ce.detach(), parts.cot.detach()])
                if not bool(torch.isfinite(values).all()):
                    raise DivergedError(
                        f"the loss became non-finite ({values[0].item()}) at epoch {epoch}, "
                        f"step {i}; "
                        "lower the learning rate or the co-training weight"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(parts.total).backward()
                scaler.step(optimizer)
                scaler.update()
                sums += values.double().cpu()
                n_steps += 1
                bar.update(1)
                if progress and i % 10 == 0:
                    bar.set_postfix(epoch=epoch, loss=f"{values[0].item():.3f}")
                if step_hook is not None:
                    step_hook(step)
            ev = evaluate(train_model, data.val, batch_size=config.eval_batch_size, device=dev)
            mean = (sums / max(n_steps, 1)).tolist()
            record = EpochRecord(
                epoch=epoch,
                train_loss=mean[0],
                train_ce=mean[1],
                train_cot=mean[2],
                cot_weight=w_cot,
                lr=lr_at(
                    (epoch + 1) * steps - 1,
                    total_steps=total_steps,
                    base_lr=config.lr,
                    warmup_steps=warmup_steps,
                    min_lr=config.min_lr,
                ),
                val_accuracy=ev.accuracy,
                member_val_accuracies=ev.member_accuracies,
                seconds=time.perf_counter() - t0,
            )
            if not math.isfinite(record.train_loss):
                raise DivergedError(f"the mean training loss of epoch {epoch} is not finite")
            result.history.append(record)
            if ckpt is not None:
                payload: dict[str, Any] = {
                    "model": train_model.state_dict(),
                    "form": str(form),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "history": [dataclasses.asdict(r) for r in result.history],
                    "fingerprint": config.fingerprint(),
                    "model_config": model.model_config,
                }
                if scaler.is_enabled():
                    payload["scaler"] = scaler.state_dict()
                _save_atomic(payload, ckpt)
            if callback is not None:
                callback(record)
    finally:
        bar.close()
        if train_model is not model:
            # The caller's ensemble gets the trained weights, whatever form trained them.
            model.load_state_dict(unfuse(train_model).state_dict())  # type: ignore[arg-type]
    return result

"""The co-training loop: one readable loop, seeded per epoch, checkpointed after every epoch.

Every random draw of epoch e (shuffling, augmentation, mixup, dropout) comes from generators seeded
by (seed, e). A run resumed from the checkpoint of epoch e therefore continues exactly the
trajectory of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from automl.data.augment import AugmentConfig, mixup
from automl.data.datasets import DataBundle
from automl.device import resolve_device
from automl.errors import ConfigError, DivergedError
from automl.models.division import divided_weight_decay
from automl.models.ensemble import DividedNet, Ensemble
from automl.models.fusion import fuse, unfuse
from automl.training.checkpoint import load_checkpoint, run_fingerprint, save_atomic
from automl.training.config import TrainConfig
from automl.training.evaluate import evaluate
from automl.training.execution import Layout, TrainForm, choose_layout
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


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@dataclass(frozen=True)
class _Plan:
    """How many steps an epoch takes and what the batches look like."""

    steps: int
    total_steps: int
    warmup_steps: int
    drop_last: bool
    augment: AugmentConfig | None

    @classmethod
    def of(cls, data: DataBundle, config: TrainConfig) -> _Plan:
        n_train = len(data.train)
        if n_train == 0:
            raise ConfigError("the training split is empty")
        drop_last = n_train >= config.batch_size
        steps = data.train.num_batches(config.batch_size, drop_last)
        if config.max_steps_per_epoch is not None:
            steps = min(steps, config.max_steps_per_epoch)
        return cls(
            steps=steps,
            total_steps=steps * config.epochs,
            warmup_steps=round(config.warmup_epochs * steps),
            drop_last=drop_last,
            augment=config.augment if config.augment is not None else data.default_augment,
        )

    def lr(self, step: int, config: TrainConfig) -> float:
        return lr_at(
            step,
            total_steps=self.total_steps,
            base_lr=config.lr,
            warmup_steps=self.warmup_steps,
            min_lr=config.min_lr,
        )


def _restore_or_choose_layout(
    model: Ensemble,
    data: DataBundle,
    config: TrainConfig,
    plan: _Plan,
    state: dict[str, Any] | None,
    dev: torch.device,
) -> Layout:
    """The checkpoint's form and memory format when resuming, so that the optimizer state matches
    its parameters; otherwise the recipe's, "auto" and an unset format timed on the first batch."""
    if state is not None:
        cl = state.get("channels_last", config.channels_last is not False)
        return Layout(TrainForm(state.get("form", TrainForm.DIVIDED)), bool(cl))
    probe_gen = torch.Generator().manual_seed(0)
    views0, y0 = next(
        data.train.batches(
            config.batch_size,
            views=model.split_factor,
            augment=plan.augment,
            gen=probe_gen,
            shuffle=False,
            drop_last=plan.drop_last,
            device=dev,
        )
    )
    return choose_layout(model, config.execution, views0, y0, channels_last=config.channels_last)


def _optimizer(model: Ensemble, config: TrainConfig, k: int) -> torch.optim.SGD:
    wd = (
        divided_weight_decay(config.weight_decay, k)
        if config.divide_weight_decay
        else config.weight_decay
    )
    return torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=wd,
    )


@dataclass
class _Run:
    """One training run's moving parts: the model in its training form and its optimizer."""

    model: Ensemble
    train_model: Ensemble
    data: DataBundle
    config: TrainConfig
    plan: _Plan
    form: TrainForm
    dev: torch.device
    use_cl: bool
    use_amp: bool
    optimizer: torch.optim.SGD
    scaler: torch.amp.GradScaler
    fingerprint: str

    def restore(self, state: dict[str, Any]) -> tuple[int, list[EpochRecord]]:
        """Load a checkpoint's weights and optimizer; its epoch and history."""
        self.train_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        return int(state["epoch"]), [EpochRecord(**r) for r in state["history"]]

    def _step(
        self, views: torch.Tensor, y: torch.Tensor, gen: torch.Generator, w_cot: float, where: str
    ) -> torch.Tensor:
        """One optimisation step; returns the (total, ce, cot) losses. A non-finite loss raises
        ``DivergedError`` (naming ``where``) before it can touch the weights."""
        config = self.config
        perm: torch.Tensor | None = None
        lam = 1.0
        if config.mixup_alpha > 0:
            views, perm, lam = mixup(views, config.mixup_alpha, gen)
        if self.use_cl:
            views = (
                views.contiguous(memory_format=torch.channels_last) if views.dim() == 4 else views
            )
        with _autocast(self.dev, self.use_amp):
            logits = self.train_model(views)
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
                f"the loss became non-finite ({values[0].item()}) at {where}; "
                "lower the learning rate or the co-training weight"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(parts.total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return values

    def epoch(
        self,
        epoch: int,
        bar: Any,
        progress: bool,
        step_hook: Callable[[int], None] | None,
        phase: Callable[[str], None] | None = None,
    ) -> EpochRecord:
        """Train one epoch from its own seeded generators, then evaluate on the validation split."""
        config, plan = self.config, self.plan
        k = self.model.split_factor
        t0 = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.seed, epoch))  # dropout draws
        gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch) + 1)
        w_cot = (
            cot_weight_at(
                epoch,
                config.cot_weight,
                config.cot_warmup_epochs,
                floor_after_warmup=config.cot_floor_after_warmup,
            )
            if k > 1
            else 0.0
        )
        self.train_model.train()
        sums = torch.zeros(3, dtype=torch.float64)
        n_steps = 0
        batches = self.data.train.batches(
            config.batch_size,
            views=k,
            augment=plan.augment,
            gen=gen,
            shuffle=True,
            drop_last=plan.drop_last,
            device=self.dev,
        )
        for i, (views, y) in enumerate(batches):
            if i >= plan.steps:
                break
            step = epoch * plan.steps + i
            for group in self.optimizer.param_groups:
                group["lr"] = plan.lr(step, config)
            values = self._step(views, y, gen, w_cot, where=f"epoch {epoch}, step {i}")
            sums += values.double().cpu()
            n_steps += 1
            bar.update(1)
            if progress and i % 10 == 0:
                bar.set_postfix(epoch=epoch, loss=f"{values[0].item():.3f}")
            if step_hook is not None:
                step_hook(step)
        if phase is not None:
            phase(f"epoch {epoch + 1}/{config.epochs}: evaluating")
        ev = evaluate(
            self.train_model, self.data.val, batch_size=config.eval_batch_size, device=self.dev
        )
        mean = (sums / max(n_steps, 1)).tolist()
        record = EpochRecord(
            epoch=epoch,
            train_loss=mean[0],
            train_ce=mean[1],
            train_cot=mean[2],
            cot_weight=w_cot,
            lr=plan.lr((epoch + 1) * plan.steps - 1, config),
            val_accuracy=ev.accuracy,
            member_val_accuracies=ev.member_accuracies,
            seconds=time.perf_counter() - t0,
        )
        if not math.isfinite(record.train_loss):
            raise DivergedError(f"the mean training loss of epoch {epoch} is not finite")
        return record

    def checkpoint_payload(self, history: list[EpochRecord]) -> dict[str, Any]:
        """Everything a resumed run needs to continue after the last epoch of ``history``."""
        payload: dict[str, Any] = {
            "model": self.train_model.state_dict(),
            "form": str(self.form),
            "channels_last": self.use_cl,
            "optimizer": self.optimizer.state_dict(),
            "epoch": history[-1].epoch + 1,
            "history": [dataclasses.asdict(r) for r in history],
            "fingerprint": self.fingerprint,
            "model_config": self.model.model_config,
        }
        if self.scaler.is_enabled():
            payload["scaler"] = self.scaler.state_dict()
        return payload


def _prepare(
    model: Ensemble,
    data: DataBundle,
    config: TrainConfig,
    dev: torch.device,
    state: dict[str, Any] | None,
    fingerprint: str,
) -> _Run:
    """Place the model, restore or choose its training form and build the optimizer."""
    model.to(dev)
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())
    plan = _Plan.of(data, config)
    layout = _restore_or_choose_layout(model, data, config, plan, state, dev)
    form, use_cl = layout.form, layout.channels_last
    model.to(memory_format=torch.channels_last if use_cl else torch.contiguous_format)
    train_model: Ensemble = model
    if form is TrainForm.FUSED and isinstance(model, DividedNet):
        train_model = fuse(model)
        if use_cl:
            train_model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(train_model, config, model.split_factor)
    return _Run(
        model,
        train_model,
        data,
        config,
        plan,
        form,
        dev,
        use_cl,
        use_amp,
        optimizer,
        scaler,
        fingerprint,
    )


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
    run_identity: str | None = None,
    quarantine_bad_checkpoint: bool = False,
    phase: Callable[[str], None] | None = None,
) -> FitResult:
    """Co-train the K members of ``model`` on ``data`` with ``config``.

    After every epoch the ensemble and members are evaluated on the validation split, the record
    is passed to ``callback`` (which may raise, e.g. ``optuna.TrialPruned``) and, when
    ``checkpoint_path`` is given, a checkpoint is written atomically. With ``resume`` an existing
    checkpoint from the same configuration is loaded and training continues after its epoch.
    ``step_hook`` is called with the global step after each optimisation step (profiling).
    ``phase`` is told what the run is doing ("choosing the training form", "epoch 3/27",
    "epoch 3/27: evaluating"), for a progress bar.

    ``run_identity`` binds the checkpoint to more than the recipe (a trial passes its study,
    space, data split, model and parameters): a checkpoint of any other run is not resumed. A
    foreign or unreadable checkpoint raises ``ConfigError``; with ``quarantine_bad_checkpoint``
    it is moved into ``quarantine/`` beside it with a warning and training starts from epoch 0.
    """
    dev = resolve_device(device)
    ckpt = Path(checkpoint_path) if checkpoint_path is not None else None
    fingerprint = run_fingerprint(config.fingerprint(), run_identity)
    state = (
        load_checkpoint(ckpt, fingerprint, dev, quarantine_bad=quarantine_bad_checkpoint)
        if resume
        else None
    )
    if phase is not None:
        phase("choosing the training form" if state is None else "restoring the checkpoint")
    run = _prepare(model, data, config, dev, state, fingerprint)
    result = FitResult(form=str(run.form))
    start_epoch = 0
    if state is not None:
        start_epoch, result.history = run.restore(state)
        result.resumed_from_epoch = start_epoch
    bar = tqdm(
        total=run.plan.total_steps,
        initial=start_epoch * run.plan.steps,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            if phase is not None:
                phase(f"epoch {epoch + 1}/{config.epochs}")
            record = run.epoch(epoch, bar, progress, step_hook, phase)
            result.history.append(record)
            if ckpt is not None:
                save_atomic(run.checkpoint_payload(result.history), ckpt)
            if callback is not None:
                callback(record)
    finally:
        bar.close()
        if run.train_model is not model:
            # The caller's ensemble gets the trained weights, whatever form trained them.
            model.load_state_dict(unfuse(run.train_model).state_dict())  # type: ignore[arg-type]
    return result

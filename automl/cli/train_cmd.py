"""``automl train``: co-train one configuration and print its accuracies, params and FLOPs."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from automl.cli.argtypes import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from automl.data import AugmentConfig, list_datasets, load_dataset
from automl.device import describe_device, resolve_device
from automl.errors import ConfigError
from automl.models import create_model, list_models
from automl.models.complexity import count_flops, count_parameters
from automl.training import CotKind, EpochRecord, TrainConfig, evaluate, fit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="co-train one configuration on a data set")
    p.add_argument("--model", default="convnet_s", help=f"one of: {', '.join(list_models())}")
    p.add_argument(
        "--dataset", default="fashion_mnist", help=f"one of: {', '.join(list_datasets())}"
    )
    p.add_argument("--data-root", default=None, help="folder holding the data set (no downloads)")
    p.add_argument("-k", "--split-factor", type=int, default=2, help="number of members K")
    p.add_argument("--width-mult", type=positive_float, default=1.0)
    p.add_argument(
        "--drop-rate", type=non_negative_float, default=0.0, help="undivided dropout (divided by K)"
    )
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=0.05)
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4)
    p.add_argument("--no-divide-wd", action="store_true", help="keep weight decay undivided")
    p.add_argument("--warmup-epochs", type=non_negative_float, default=0.2)
    p.add_argument("--cot-weight", type=non_negative_float, default=0.5)
    p.add_argument("--cot-kind", choices=[str(k) for k in CotKind], default=str(CotKind.JS))
    p.add_argument("--cot-warmup-epochs", type=non_negative_int, default=1)
    p.add_argument("--label-smoothing", type=non_negative_float, default=0.0)
    p.add_argument("--mixup", type=non_negative_float, default=0.0, help="mixup alpha (0 disables)")
    p.add_argument("--no-augment", action="store_true", help="train on plain images")
    p.add_argument(
        "--train-limit", type=positive_int, default=None, help="use only this many training images"
    )
    p.add_argument(
        "--eval-limit", type=positive_int, default=None, help="cap the validation and test images"
    )
    p.add_argument("--val-fraction", type=positive_float, default=0.1)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint file: written every epoch, resumed"
    )
    p.set_defaults(func=run)


def _check_checkpoint(path: str | None) -> None:
    """Refuse a checkpoint path that can never be written, before the data loads and an epoch
    trains only to fail at its first save."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(
            f"--checkpoint {path!r} is a folder; pass a file path such as {str(p / 'train.pt')!r}"
        )
    if p.exists() and not p.is_file():
        raise ConfigError(f"--checkpoint {path!r} is not a regular file; pass a file path")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"--checkpoint {path!r}: {parent} is a file, not a folder; "
                    "pass a path inside a folder"
                )
            break


def run(args: argparse.Namespace) -> int:
    _check_checkpoint(args.checkpoint)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    data = load_dataset(
        args.dataset,
        args.data_root,
        val_fraction=args.val_fraction,
        train_limit=args.train_limit,
        eval_limit=args.eval_limit,
    )
    model = create_model(
        args.model,
        num_classes=data.num_classes,
        in_chans=data.in_chans,
        split_factor=args.split_factor,
        width_mult=args.width_mult,
        drop_rate=args.drop_rate,
    )
    torch.manual_seed(args.seed)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        divide_weight_decay=not args.no_divide_wd,
        warmup_epochs=args.warmup_epochs,
        cot_weight=args.cot_weight,
        cot_kind=args.cot_kind,
        cot_warmup_epochs=args.cot_warmup_epochs,
        label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup,
        augment=AugmentConfig() if args.no_augment else None,
        seed=args.seed,
    )
    shape = (data.in_chans, data.image_size, data.image_size)
    params = count_parameters(model)
    flops = count_flops(model, shape)
    print(
        f"{args.model} K={model.split_factor} width_mult={args.width_mult} on {data.name}: "
        f"{params / 1e6:.3f}M params, {flops / 1e6:.1f} MFLOPs/image, {describe_device(dev)}; "
        f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)} images"
    )

    def show(r: EpochRecord) -> None:
        members = " ".join(f"{a:.4f}" for a in r.member_val_accuracies)
        print(
            f"epoch {r.epoch + 1}/{config.epochs}: loss {r.train_loss:.4f} (ce {r.train_ce:.4f}, "
            f"cot {r.train_cot:.4f} x {r.cot_weight:.3f}) val acc {r.val_accuracy:.4f} "
            f"members [{members}] {r.seconds:.1f}s"
        )

    result = fit(
        model,
        data,
        config,
        device=dev,
        callback=show,
        checkpoint_path=args.checkpoint,
        progress=True,
    )
    test = evaluate(model, data.test, device=dev)
    print(
        f"validation accuracy: ensemble {result.val_accuracy:.4f}, members "
        + ", ".join(f"{a:.4f}" for a in result.member_val_accuracies)
    )
    print(
        f"test accuracy:       ensemble {test.accuracy:.4f}, members "
        + ", ".join(f"{a:.4f}" for a in test.member_accuracies)
    )
    print(f"params {params} ({params / 1e6:.3f}M), FLOPs/image {flops} ({flops / 1e9:.4f} G)")
    return 0

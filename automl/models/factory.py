"""``create_model``: build the K-member ensemble of a registered model."""

from __future__ import annotations

from typing import Any

from automl.errors import ModelError
from automl.models._registry import ModelSpec, get_spec
from automl.models.division import check_division_args, divide_dropout
from automl.models.ensemble import Combine, DividedNet

__all__ = ["create_model", "model_from_config"]


def check_options(spec: ModelSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Validate family options at the public boundary; ``None`` means the family's default."""
    chosen = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(chosen) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ModelError(
            f"model {spec.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {allowed}"
        )
    return chosen


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    split_factor: int = 1,
    width_mult: float = 1.0,
    drop_rate: float = 0.0,
    combine: Combine | str = Combine.MEAN_LOGITS,
    zero_init_last_bn: bool | None = None,
    avg_down: bool | None = None,
    **options: Any,
) -> DividedNet:
    """Build model ``name`` divided into ``split_factor`` co-trainable members.

    Widths follow the paper's division rules for the family (``automl.models.division``) after
    ``width_mult`` scales the undivided widths; dropout is divided by K.

    ``zero_init_last_bn`` and ``avg_down`` (residual families) and any other family option
    (``get_spec(name).options``, e.g. ``deep_stem``, ``drop_path_rate``, ``shake``) default to
    ``None``: the paper's setting for that network. Options are kept in ``model_config`` so that
    ``fuse``/``unfuse`` and ``model_from_config`` rebuild the same network.
    """
    spec = get_spec(name)
    k, wm = check_division_args(split_factor, width_mult)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ModelError(f"in_chans must be a positive integer, got {in_chans!r}")
    chosen = check_options(
        spec, {"zero_init_last_bn": zero_init_last_bn, "avg_down": avg_down, **options}
    )
    p = divide_dropout(float(drop_rate), k)
    members = [
        spec.builder(
            members=1,
            split_factor=k,
            width_mult=wm,
            num_classes=num_classes,
            in_chans=in_chans,
            drop_rate=p,
            **chosen,
        )
        for _ in range(k)
    ]
    config: dict[str, Any] = {
        "name": name,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "split_factor": k,
        "width_mult": wm,
        "drop_rate": float(drop_rate),
    }
    if chosen:
        config["options"] = dict(chosen)
    return DividedNet(members, config, Combine(combine))


def model_from_config(
    config: dict[str, Any], combine: Combine | str = Combine.MEAN_LOGITS
) -> DividedNet:
    """Rebuild an (untrained) ensemble from its ``model_config``, e.g. to load a checkpoint."""
    return create_model(
        config["name"],
        num_classes=int(config["num_classes"]),
        in_chans=int(config["in_chans"]),
        split_factor=int(config["split_factor"]),
        width_mult=float(config["width_mult"]),
        drop_rate=float(config.get("drop_rate", 0.0)),
        combine=combine,
        **dict(config.get("options", {})),
    )

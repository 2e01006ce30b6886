"""Conversion between the divided form (K modules) and the fused form (one grouped module).

Both forms are built from the same family code (``automl.models._layers``): member i's parameters
are block i, along dimension 0, of every fused parameter. Fusing concatenates, unfusing slices.
"""

from __future__ import annotations

import torch

from automl.errors import ModelError
from automl.models._registry import get_spec
from automl.models.division import divide_dropout
from automl.models.ensemble import DividedNet, FusedNet

__all__ = ["fuse", "unfuse"]


def _build(config: dict[str, object], members: int) -> torch.nn.Module:
    spec = get_spec(str(config["name"]))
    if not spec.has_fused_form:
        raise ModelError(
            f"model {spec.name!r} has no fused form ({spec.description}); "
            "use the divided form (training form 'divided') instead"
        )
    options = dict(config.get("options", {}))  # type: ignore[call-overload]
    k = int(config["split_factor"])  # type: ignore[call-overload]
    return spec.builder(
        members=members,
        split_factor=k,
        width_mult=float(config["width_mult"]),  # type: ignore[arg-type]
        num_classes=int(config["num_classes"]),  # type: ignore[call-overload]
        in_chans=int(config["in_chans"]),  # type: ignore[call-overload]
        drop_rate=divide_dropout(float(config.get("drop_rate", 0.0)), k),  # type: ignore[arg-type]
        **options,
    )


def fuse(model: DividedNet) -> FusedNet:
    """Merge the K members into one network with grouped convolutions (same function, weights)."""
    k = model.split_factor
    devices = set(model.member_devices())
    if len(devices) > 1:
        raise ValueError("fuse() needs all members on one device; call model.to(device) first")
    device = devices.pop()
    dtype = next(model.parameters()).dtype
    fused_net = _build(model.model_config, k).to(device=device, dtype=dtype)
    member_states = [m.state_dict() for m in model.members]
    state = {}
    for key, ref in fused_net.state_dict().items():
        parts = [s[key] for s in member_states]
        # 0-d buffers (BatchNorm's num_batches_tracked) are equal across co-trained members.
        state[key] = parts[0].clone() if ref.dim() == 0 else torch.cat(parts, 0)
    fused_net.load_state_dict(state)
    fused = FusedNet(fused_net, model.model_config, model.combine)
    fused.train(model.training)
    return fused


def unfuse(model: FusedNet) -> DividedNet:
    """Split a fused network back into K member modules."""
    k = model.split_factor
    ref = next(model.parameters())
    device, dtype = ref.device, ref.dtype
    fused_state = model.net.state_dict()
    members = []
    for i in range(k):
        member = _build(model.model_config, 1).to(device=device, dtype=dtype)
        state = {}
        for key, tensor in fused_state.items():
            state[key] = tensor.clone() if tensor.dim() == 0 else tensor.chunk(k, 0)[i].clone()
        member.load_state_dict(state)
        members.append(member)
    divided = DividedNet(members, model.model_config, model.combine)
    divided.train(model.training)
    return divided

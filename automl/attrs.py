"""The documented names of what every trial stores: one place, imported by every stage.

This module imports nothing else of the package, so that the objective (which writes the
attributes), the runner, the pruner, the study API and the CLI (which read them) all depend on it
and never on each other for a name.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["TrialAttr"]


class TrialAttr(StrEnum):
    """Documented names of the user attributes every trial carries."""

    N_PARAMS = "n_params"
    # FLOPs: PyTorch's counter, 2 per multiply-add of convolutions and matrix products.
    FLOPS = "flops"
    # MACs counted the paper's way (its "GFLOPs"): multiply-adds plus 2 per BatchNorm output.
    MACS = "macs"
    MEMBER_ACCURACIES = "member_accuracies"
    TEST_ACCURACY = "test_accuracy"
    TEST_MEMBER_ACCURACIES = "test_member_accuracies"
    LATENCY_MS = "latency_ms"
    LATENCY_IQR_MS = "latency_iqr_ms"
    LATENCY_MODE = "latency_mode"
    LATENCY_MODES = "latency_modes_ms"
    LATENCY_CHANNELS_LAST = "latency_channels_last"
    LATENCY_BATCH_SIZE = "latency_batch_size"
    # Where latency was timed (describe_device), when [objectives] latency_device is not the
    # training device; DEVICE is where the trial trained.
    LATENCY_DEVICE = "latency_device"
    LATENCY_THREADS = "latency_threads"
    # Paired measurement (automl.latency): LATENCY_MS = LATENCY_RATIO x LATENCY_REFERENCE_MS, the
    # ratio to the study's baseline network timed in the same rounds and the baseline's settled
    # time on this host and device; LATENCY_RAW_MS is this measurement's own absolute median.
    LATENCY_RATIO = "latency_ratio"
    LATENCY_REFERENCE_MS = "latency_reference_ms"
    LATENCY_RAW_MS = "latency_raw_ms"
    # The target the latency was measured for (automl.latency_targets), e.g. "cpu@b1".
    LATENCY_TARGET = "latency_target"
    DEVICE = "device"
    HOST = "host"
    # host|boot|pid of the process that claimed the trial (automl.liveness).
    WORKER_PROCESS = "worker_process"
    CURVE = "val_accuracy_curve"
    EPOCH_SECONDS = "epoch_seconds"
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    FAIL_REASON = "fail_reason"
    RETRIED_AFTER = "retried_after"  # the failure of the attempt a retry continues
    PRUNED_REASON = "pruned_reason"
    # Epochs trained when an early stop ([scheduler]) ended the trial.
    STOPPED_EPOCH = "stopped_epoch"
    # [scheduler] kind = "asha": epochs at the highest rung the trial reached (passed or
    # stopped at).
    RUNG = "rung"
    TRAIN_SECONDS = "train_seconds"
    TRAIN_FORM = "train_form"

"""The documented names of what a study and its trials store: one place, read by every stage.

This module imports nothing else of the package, so that the trial pipeline (which writes the
attributes), the schedulers, the study API, the views and the CLI (which read them) all depend on
it and never on each other for a name. The values are the stored keys: renaming a member is free,
changing a value needs a migration.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["StudyAttr", "TrialAttr"]


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
    # Paired measurement (automl.measure.latency): LATENCY_MS = LATENCY_RATIO x
    # LATENCY_REFERENCE_MS, the ratio to the study's baseline network timed in the same rounds and
    # the baseline's settled time on this host and device; LATENCY_RAW_MS is this measurement's own
    # absolute median.
    LATENCY_RATIO = "latency_ratio"
    LATENCY_REFERENCE_MS = "latency_reference_ms"
    LATENCY_RAW_MS = "latency_raw_ms"
    # The target the latency was measured for (automl.measure.targets), e.g. "cpu@b1".
    LATENCY_TARGET = "latency_target"
    DEVICE = "device"
    HOST = "host"
    # host|boot|pid of the process that claimed the trial (automl.store.liveness).
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
    # K > 1: the validation accuracy and latency of the ensemble's m best members, m = 1..K-1
    # (automl.search.subsets).
    SUBSET_POINTS = "subset_points"
    # The canonical architecture (automl.space.networks.Network.id): widths that round to the
    # same channels are one network. Its first member's convolution widths, for the reader.
    NETWORK = "network"
    MEMBER_WIDTHS = "member_widths"
    # The network and every training setting that changes the result: trials with one config
    # are one piece of evidence (automl.search.dedup).
    CONFIG = "config"
    # A trial that trained nothing: the outcome of this trial number, the same config, reused.
    REUSED_FROM = "reused_from"
    # [search] repeats = n: the validation accuracy of each seed (the value is their mean).
    REPEAT_ACCURACIES = "repeat_accuracies"
    # [scheduler] mode = "promote": a PRUNED trial with this set is paused, not stopped: its
    # checkpoint is kept and a continuation ticket resumes it once it is promoted.
    PAUSED = "paused"
    # A continuation run by the final phase: {"epochs_before", "accuracy_before"}.
    FINAL_PHASE = "final_phase"
    # A continuation whose paused checkpoint was gone: why it trained from epoch 0.
    RESTARTED = "restarted"
    # The trial whose measurement of the same network on the same host and target was reused,
    # or "survey": the study's latency survey (automl.search.startup).
    LATENCY_FROM = "latency_from"
    # [sampler] startup = "latency": this trial's network was fixed by the start,
    # {"pick": i, "of": n, "surveyed_ms": latency in the survey} (the baseline is pick 1).
    STARTUP = "startup"


class StudyAttr(StrEnum):
    """Names of the user attributes automl keeps on a study (prefixed: a study is shared with
    whoever else writes attributes to it)."""

    # The search space as SearchSpace.to_dict(): everything a worker needs besides the URL.
    SPACE = "automl:space"
    ARTIFACT_DIR = "automl:artifact_dir"
    VERSION = "automl:version"
    # How many trials were asked for (the baseline included); absent for an open-ended search.
    TARGET_TRIALS = "automl:target_trials"
    # A study's own identity, stored once by the process that creates it: two studies of the same
    # name (another database, or the same file deleted and created again) never share checkpoints.
    UUID = "automl:study_uuid"
    # [num_classes, in_chans, image_size]: architectures can be rebuilt without the data set.
    MODEL_INPUT = "automl:model_input"
    # + "host|device|b<batch>|t<threads>": the settled time of the reference network there.
    LATENCY_REFERENCE_PREFIX = "automl:latency_reference:"
    # The distinct networks per K the space holds (automl.space.networks), counted once.
    NETWORKS = "automl:networks"
    # [sampler] startup = "latency" (automl.search.startup): every network of the space timed
    # before training, {"host", "target", "seconds", "points": [{split_factor, width_mult,
    # network, latency_ms, attrs}]}, and the start's picks not yet placed on a ticket.
    LATENCY_SURVEY = "automl:latency_survey"
    STARTUP_PENDING = "automl:startup_pending"

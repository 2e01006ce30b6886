"""A finished trial of a study, rebuilt as the trained ensemble it stored.

The objective stores ``weights.pt`` (``{"model_config", "state_dict"}``, plain tensors and JSON-like
values) as an Optuna artifact; it is read back with ``torch.load(weights_only=True)`` and the
ensemble rebuilt with ``automl.models.model_from_config``. Preprocessing and class names come from
the search space stored in the study.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automl.errors import AutoMLError
from automl.export.errors import BundleError, TrialSelectionError
from automl.export.forms import Form, LoadedModel, build_form, parse_form, resolve_members
from automl.export.preprocess import class_names, preprocessing_for
from automl.models import DividedNet, model_from_config
from automl.search.front import configurations, pick
from automl.search.study import AutoMLStudy, load_study
from automl.store.artifacts import (
    WEIGHTS_ARTIFACT,
    ArtifactMissing,
    download_trial_file,
    load_weights,
)
from automl.store.attrs import TrialAttr

__all__ = ["TrialModel", "load_trial", "select_trial", "trial_metrics"]


@dataclass
class TrialModel:
    """The trained K-member ensemble of one trial, with the study it came from."""

    study: AutoMLStudy
    trial: FrozenTrial
    model: DividedNet


def select_trial(
    study: optuna.Study,
    trial: int | str,
    max_latency_ms: float | None = None,
    *,
    allow_noisy: bool = False,
) -> FrozenTrial:
    """Trial number ``trial``, or with ``"best"`` the most accurate configuration of the Pareto
    front whose latency fits ``max_latency_ms`` (ties: the faster), those with a noisy latency
    left out unless ``allow_noisy`` (``automl.search.front.pick``)."""
    if str(trial) == "best":
        # Over configurations, noisy latencies left out (automl.search.front): the same pick as
        # `automl export --trial best`, which also prints its warnings.
        chosen = pick(
            configurations(study.get_trials(deepcopy=False)),
            max_latency_ms,
            allow_noisy=allow_noisy,
            at_knee=False,
        )
        if chosen.point is None:
            raise TrialSelectionError(
                f"no trial of study {study.study_name!r} "
                + (f"fits --max-latency-ms {max_latency_ms:g}" if max_latency_ms else "to export")
                + f": {chosen.reason}"
                + ("; pass --allow-noisy to consider them" if chosen.skipped_noisy else "")
            )
        return study.get_trials(deepcopy=False)[chosen.point.number]
    try:
        number = int(trial)
    except ValueError:
        raise TrialSelectionError(
            f"--trial must be a trial number or 'best', got {trial!r}"
        ) from None
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise TrialSelectionError(
            f"study {study.study_name!r} has no trial {number}; its trials are 0..{len(trials) - 1}"
        )
    t = trials[number]
    if t.state is not TrialState.COMPLETE:
        reason = t.user_attrs.get(TrialAttr.FAIL_REASON) or t.user_attrs.get(
            TrialAttr.PRUNED_REASON
        )
        raise TrialSelectionError(
            f"trial {number} of study {study.study_name!r} is {t.state.name}, not COMPLETE"
            + (f" ({reason})" if reason else "")
            + "; export a completed trial (see 'automl status')"
        )
    return t


def _read_weights(study: AutoMLStudy, trial: FrozenTrial) -> dict[str, Any]:
    source = trial.user_attrs.get(TrialAttr.REUSED_FROM)
    if source is not None:
        # The trial took the outcome of the same configuration trained as trial ``source``.
        trials = study.trials()
        if isinstance(source, int) and 0 <= source < len(trials) and source != trial.number:
            trial = trials[source]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_ARTIFACT
        try:
            download_trial_file(study.storage, study.artifact_dir, trial, WEIGHTS_ARTIFACT, path)
        except ArtifactMissing:
            raise TrialSelectionError(
                f"trial {trial.number} of study {study.study_name!r} has no {WEIGHTS_ARTIFACT} "
                "artifact; it was not trained to the end by this version of automl"
            ) from None
        except Exception as e:  # the store raises its own errors for a missing file
            raise TrialSelectionError(
                f"cannot read the {WEIGHTS_ARTIFACT} artifact of trial {trial.number} from "
                f"{study.artifact_dir} ({e.__class__.__name__}); pass --artifacts DIR"
            ) from e
        try:
            return load_weights(path)
        except ValueError as e:
            raise TrialSelectionError(
                f"the {WEIGHTS_ARTIFACT} artifact of trial {trial.number} is {e}; refusing to "
                "use it"
            ) from e


def load_trial(
    storage: str | None,
    study_name: str,
    trial: int | str,
    *,
    max_latency_ms: float | None = None,
    allow_noisy: bool = False,
    artifact_dir: str | Path | None = None,
) -> TrialModel:
    """The trained ensemble of ``trial`` (a number or ``"best"``), on the CPU, in eval mode."""
    study = load_study(study_name, storage, artifact_dir=artifact_dir)
    frozen = select_trial(study.optuna_study, trial, max_latency_ms, allow_noisy=allow_noisy)
    payload = _read_weights(study, frozen)
    try:
        model = model_from_config(dict(payload["model_config"]), combine=study.space.model.combine)
        model.load_state_dict(payload["state_dict"])
    except (AutoMLError, KeyError, RuntimeError, TypeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        raise TrialSelectionError(
            f"the weights of trial {frozen.number} do not fit its model config: {first}"
        ) from e
    return TrialModel(study, frozen, model.eval())


def trial_metrics(trial: FrozenTrial) -> dict[str, Any]:
    """Validation and test metrics and the latency record of a trial, as stored."""
    u = trial.user_attrs
    keys = [
        TrialAttr.MEMBER_ACCURACIES,
        TrialAttr.TEST_ACCURACY,
        TrialAttr.TEST_MEMBER_ACCURACIES,
        TrialAttr.LATENCY_MS,
        TrialAttr.LATENCY_IQR_MS,
        TrialAttr.LATENCY_MODE,
        TrialAttr.LATENCY_MODES,
        TrialAttr.DEVICE,
        TrialAttr.HOST,
        TrialAttr.N_PARAMS,
        TrialAttr.FLOPS,
        TrialAttr.MACS,
    ]
    out: dict[str, Any] = {
        "trial": trial.number,
        "val_accuracy": float(trial.values[0]) if trial.values else None,
    }
    out.update({str(k): u.get(k) for k in keys})
    if TrialAttr.SUBSET_POINTS in u:
        out[TrialAttr.SUBSET_POINTS] = u[TrialAttr.SUBSET_POINTS]
    return out


def to_loaded(tm: TrialModel, form: Form | str, members: int | None) -> LoadedModel:
    """``tm`` in the form asked for, with its preprocessing and class names."""
    model = tm.model
    config = dict(model.model_config)
    accs = list(tm.trial.user_attrs.get(TrialAttr.MEMBER_ACCURACIES, []))
    indices = resolve_members(members, model.split_factor, accs)
    data = tm.study.space.data
    try:
        pre = preprocessing_for(data, int(config["in_chans"]))
    except KeyError as e:
        raise BundleError(f"data set {data.dataset!r} has no known normalisation") from e
    return LoadedModel(
        model=build_form(model, form, indices),
        preprocessing=pre,
        class_names=class_names(data, int(config["num_classes"])),
        form=parse_form(form),
        members=indices,
        model_config=config,
        metrics=trial_metrics(tm.trial),
        source={"study": tm.study.study_name, "trial": tm.trial.number},
    )

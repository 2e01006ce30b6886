"""The network is the unit of evidence: widths that build one network are one network, a
configuration already trained is reused, one running is not started twice, a network is timed once
per host and target, and a search that only meets known configurations ends."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import automl
from automl.errors import SearchSpaceError
from automl.export.source import load_trial
from automl.search import runner
from automl.search.dedup import NOT_TRAINED
from automl.search.trial import claim_waiting_trial
from automl.space import Choice, load_space
from automl.space.networks import Network, describe_counts, space_networks
from automl.store.attrs import StudyAttr, TrialAttr
from tests.helpers import write_space


def _space(tmp_path: Path, search: str, extra: str = "") -> Path:
    """The tiny space with its [search] section replaced (and ``extra`` sections appended)."""
    path = write_space(tmp_path, epochs=1, steps=2)
    text = path.read_text()
    head, rest = text.split("[search]", 1)
    tail = rest[rest.index("[objectives]") :]
    path.write_text(f"{head}[search]\n{search}\n\n{tail}\n{extra}")
    return path


def _net(name: str, k: int, w: float) -> Network:
    model = automl.create_model(name, num_classes=10, in_chans=1, split_factor=k, width_mult=w)
    return Network.of(model, name, k, {})


def test_widths_that_round_to_the_same_channels_are_one_network() -> None:
    # Three widths of one network as a demo study sampled them (19,890 parameters).
    a, b, c = (_net("convnet_s", 1, w) for w in (0.512, 0.594, 0.589))
    assert a.id == b.id == c.id and a.widths == b.widths == (8, 16, 32)
    assert a.n_params == b.n_params == 19_890
    assert _net("convnet_s", 1, 1.0).n_params > a.n_params
    assert _net("convnet_s", 2, 0.512).id != a.id  # K is part of the network


def test_the_demo_width_range_holds_seventeen_networks() -> None:
    sp = load_space("search_spaces/fashion_mnist_cpu.toml")
    counts = space_networks(sp)
    assert [(c.split_factor, len(c.widths)) for c in counts] == [(1, 7), (2, 6), (4, 4)]
    assert describe_counts(counts) == "17 distinct networks (K=1: 7, K=2: 6, K=4: 4)"
    # Each counted width builds a network the others do not.
    for c in counts:
        ids = {_net("convnet_s", c.split_factor, w).id for w in c.widths}
        assert len(ids) == len(c.widths)


def test_a_width_range_declared_distinct_is_the_choice_of_its_networks(tmp_path: Path) -> None:
    rng = "split_factor = [1, 2, 4]\nwidth_mult = { low = 0.5, high = 2.0, log = true"
    as_range = load_space(_space(tmp_path, rng + " }"))
    sp = load_space(_space(tmp_path, rng + ", distinct = true }"))
    width = sp.search.width_mult
    assert isinstance(width, Choice)
    # The same networks per K as the range holds, each reached by a listed width, the baseline's
    # width among them, and no two widths that build one network at every K.
    assert [len(c.widths) for c in space_networks(sp)] == [7, 6, 4]
    ids = {k: {_net("convnet_s", k, w).id for w in width.choices} for k in (1, 2, 4)}
    assert {k: len(v) for k, v in ids.items()} == {1: 7, 2: 6, 4: 4}
    for count in space_networks(as_range):
        k = count.split_factor
        assert ids[k] == {_net("convnet_s", k, w).id for w in count.widths}
    assert 1.0 in width.choices
    assert len(width.choices) == 16  # 17 networks, one width listed at two K
    # Stored as its values: a worker that reads the study samples the same choice.
    study = automl.create_study(sp, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert automl.load_study(study.study_name, study.storage_url).space.search.width_mult == width


@pytest.mark.parametrize(
    ("search", "says"),
    [
        (
            "width_mult = { low = 0.5, high = 2.0, distinct = 1 }",
            r"\[search\.width_mult\.distinct\] must be true or false",
        ),
        (
            "width_mult = { low = 1.5, high = 2.0, distinct = true }",
            r"must hold \[model\] default_width_mult",
        ),
        (
            "lr = { low = 0.01, high = 0.1, distinct = true }",
            r"\[search\.lr\.distinct\] unknown key",
        ),
    ],
)
def test_a_bad_distinct_width_is_a_one_line_error(tmp_path: Path, search: str, says: str) -> None:
    with pytest.raises(SearchSpaceError, match=says):
        load_space(_space(tmp_path, f"split_factor = [1]\n{search}"))


def test_a_width_choice_folds_values_that_build_one_network(tmp_path: Path) -> None:
    sp = load_space(_space(tmp_path, "split_factor = [1]\nwidth_mult = [0.5, 0.52, 1.0]"))
    [count] = space_networks(sp)
    assert count.widths == (0.5, 1.0)


def test_a_configuration_trained_once_is_reused_not_trained_again(tmp_path: Path) -> None:
    # Widths 0.5 and 0.52 build one network; the learning rate is fixed: trial 2 is trial 1.
    path = _space(tmp_path, "split_factor = [1]\nwidth_mult = [0.5, 0.52, 1.0]")
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    for w in (0.5, 0.52):
        study.optuna_study.enqueue_trial({"width_mult": w})
    stats = study.optimize()
    assert stats.completed == 3 and stats.reused == 1
    baseline, first, second = study.trials()
    assert first.params["width_mult"] == 0.5 and second.params["width_mult"] == 0.52
    assert baseline.user_attrs[TrialAttr.NETWORK] != first.user_attrs[TrialAttr.NETWORK]
    assert TrialAttr.REUSED_FROM not in first.user_attrs
    assert second.user_attrs[TrialAttr.REUSED_FROM] == 1
    assert second.values == first.values
    assert second.user_attrs[TrialAttr.NETWORK] == first.user_attrs[TrialAttr.NETWORK]
    assert second.user_attrs[TrialAttr.TEST_ACCURACY] == first.user_attrs[TrialAttr.TEST_ACCURACY]
    assert TrialAttr.TRAIN_SECONDS not in second.user_attrs
    # The reused trial ships the weights its configuration was trained to.
    shipped = load_trial(study.storage_url, study.study_name, second.number)
    trained = load_trial(study.storage_url, study.study_name, first.number)
    want = trained.model.state_dict()
    for k, a in shipped.model.state_dict().items():
        assert torch.equal(a, want[k]), k


def test_a_configuration_training_elsewhere_is_not_started_twice(tmp_path: Path) -> None:
    path = _space(tmp_path, "split_factor = [1]\nwidth_mult = [0.5, 1.0]")
    url = f"sqlite:///{tmp_path / 's.db'}"
    # The baseline's configuration, as a study of the same space stores it.
    done = automl.create_study(path, url, study_name="done")
    done.optimize()
    config = done.trials()[0].user_attrs[TrialAttr.CONFIG]
    study = automl.create_study(path, url, study_name="now")
    # Trial 0 runs "elsewhere" (taken and never finished); trial 1 is its configuration again.
    elsewhere = study.optuna_study.ask()
    elsewhere.set_user_attr(TrialAttr.CONFIG, config)
    study.optuna_study.enqueue_trial({"width_mult": 1.0})
    study.optimize(max_trials_here=1)
    dup = study.trials()[1]
    assert dup.state is TrialState.FAIL
    assert dup.user_attrs[TrialAttr.FAIL_REASON] == f"{NOT_TRAINED} {elsewhere.number}"
    assert not dup.intermediate_values

    # A configuration paused at a rung is stopped there again, its curve and reason reused.
    stopped = automl.create_study(path, url, study_name="stopped")
    stopped.optuna_study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.PRUNED,
            user_attrs={
                TrialAttr.CONFIG: config,
                TrialAttr.CURVE: [0.41],
                TrialAttr.PRUNED_REASON: "paused at rung 1 of 2 (epoch 1)",
                TrialAttr.PAUSED: True,
            },
        )
    )
    stopped.optimize()
    again = stopped.trials()[0]
    assert again.state is TrialState.PRUNED and again.user_attrs[TrialAttr.REUSED_FROM] == 1
    assert again.user_attrs[TrialAttr.CURVE] == [0.41]
    assert again.user_attrs[TrialAttr.PRUNED_REASON] == (
        "the same configuration as trial 1: paused at rung 1 of 2 (epoch 1)"
    )
    # Not paused itself: the source's continuation resumes the configuration if promoted.
    assert TrialAttr.PAUSED not in again.user_attrs


def test_a_network_is_timed_once_per_host_and_target(tmp_path: Path) -> None:
    # One divided network, two learning rates: two configurations, one latency measurement of
    # the network and of its one-member subset.
    path = _space(tmp_path, "split_factor = [1, 2]\nwidth_mult = [1.0]\nlr = [0.05, 0.1]")
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    study.optuna_study.enqueue_trial({"split_factor": 2, "lr": 0.05})
    study.optimize()
    # Another run: the reference is read from the study, not settled again.
    study.optuna_study.enqueue_trial({"split_factor": 2, "lr": 0.1})
    study.optimize()
    _, first, second = study.trials()
    assert first.state is second.state is TrialState.COMPLETE
    assert first.user_attrs[TrialAttr.NETWORK] == second.user_attrs[TrialAttr.NETWORK]
    assert first.user_attrs[TrialAttr.CONFIG] != second.user_attrs[TrialAttr.CONFIG]
    assert second.user_attrs[TrialAttr.LATENCY_FROM] == first.number
    assert second.values[1] == first.values[1]
    assert TrialAttr.LATENCY_FROM not in first.user_attrs
    [sub1] = first.user_attrs[TrialAttr.SUBSET_POINTS]
    [sub2] = second.user_attrs[TrialAttr.SUBSET_POINTS]
    assert sub1["members"] == sub2["members"] == 1
    assert sub2["latency_ms"] == sub1["latency_ms"]


def test_a_network_over_the_latency_budget_is_rejected_before_training(tmp_path: Path) -> None:
    path = _space(
        tmp_path, "split_factor = [1]\nwidth_mult = [1.0]", "[constraints]\nmax_latency_ms = 1e-6\n"
    )
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    study.optimize()
    [t] = study.trials()
    assert t.state is TrialState.PRUNED
    assert t.user_attrs[TrialAttr.PRUNED_REASON].startswith("over budget: latency_ms")
    assert t.constraints and max(t.constraints.values()) > 0
    assert TrialAttr.TRAIN_SECONDS not in t.user_attrs and not t.intermediate_values


def test_a_search_that_meets_only_known_configurations_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "MAX_REPEATS_IN_A_ROW", 3)
    path = _space(tmp_path, "split_factor = [1]\nwidth_mult = [1.0]")
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    stats = study.optimize(timeout=600)  # open-ended: it would run for ten minutes
    assert stats.exhausted and stats.total == 4 and stats.reused == 3


def test_the_networks_are_counted_once_and_kept_in_the_study(tmp_path: Path) -> None:
    study = automl.create_study(write_space(tmp_path), f"sqlite:///{tmp_path / 's.db'}")
    counts = study.networks()
    assert [c.split_factor for c in counts] == [1, 2]
    assert study.optuna_study.user_attrs[StudyAttr.NETWORKS]
    again = automl.load_study(study.study_name, study.storage_url).networks()
    assert again == counts


def test_an_interrupted_trial_is_claimed_before_new_ones(tmp_path: Path) -> None:
    study = automl.create_study(write_space(tmp_path), f"sqlite:///{tmp_path / 's.db'}")
    study.add_trials(2)  # trials 0 (the baseline), 1 and 2 wait
    retry = optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={"failed_trial": 1})
    study.optuna_study.add_trial(retry)
    claimed = claim_waiting_trial(study.optuna_study, study.storage)
    assert claimed is not None and claimed.trial.number == 3 and claimed.key == 1


def test_a_resumed_search_does_not_repeat_the_first_runs_parameters(tmp_path: Path) -> None:
    path = write_space(tmp_path)
    url = f"sqlite:///{tmp_path / 's.db'}"

    def draws(study: automl.AutoMLStudy) -> list[dict[str, object]]:
        out = []
        waiting = study.optuna_study.get_trials(states=(TrialState.WAITING,))
        for _ in waiting:  # the baseline's ticket: fixed parameters, nothing drawn
            study.optuna_study.tell(study.optuna_study.ask(), state=TrialState.FAIL)
        for _ in range(3):
            t = study.optuna_study.ask()
            study.space.suggest(t)
            out.append(t.params)
            study.optuna_study.tell(t, state=TrialState.FAIL)
        return out

    first = draws(automl.create_study(path, url))
    again = draws(automl.create_study(path, url))
    assert first != again


def test_repeats_train_a_configuration_with_several_seeds_and_score_their_mean(
    tmp_path: Path,
) -> None:
    path = _space(tmp_path, "split_factor = [1]\nwidth_mult = [1.0]\nrepeats = 2")
    study = automl.create_study(path, f"sqlite:///{tmp_path / 's.db'}")
    assert study.space.search.repeats == 2
    study.optimize()
    [t] = study.trials()
    accs = t.user_attrs[TrialAttr.REPEAT_ACCURACIES]
    assert len(accs) == 2 and t.values[0] == pytest.approx(sum(accs) / 2)
    # The shipped weights are the first seed's: its curve ends at the first accuracy.
    assert t.user_attrs[TrialAttr.CURVE][-1] == accs[0]
    # Stored in the study and read back by a worker elsewhere.
    assert automl.load_study(study.study_name, study.storage_url).space.search.repeats == 2


@pytest.mark.parametrize(
    ("value", "says"), [("0", "must be >= 1"), ("2.5", "must be an integer, got 2.5")]
)
def test_a_bad_repeat_count_is_a_one_line_error(tmp_path: Path, value: str, says: str) -> None:
    path = _space(tmp_path, f"split_factor = [1]\nrepeats = {value}")
    with pytest.raises(SearchSpaceError, match=r"\[search\.repeats\] " + says):
        load_space(path)

"""Source kinds: every option reachable from its config file, a plain config round trip, and
the former flat arguments mapped onto the kinds (no data is built here)."""

import dataclasses
from pathlib import Path

import pytest
from hydra.utils import get_class, instantiate

from balanced_align.data.source_kinds import (
    EVALUATIONS,
    SOURCES,
    FolderHalvesEvaluation,
    FolderSource,
    LFWSource,
    ShardSource,
    SynthFacesSource,
    from_flat_arguments,
    source_from_config,
)
from tests.training_helpers import CONF_DIR, compose_train

DATA_CONFIGS = sorted(p.stem for p in (Path(CONF_DIR) / "data").glob("*.yaml"))
EVALUATION_CONFIGS = sorted(p.stem for p in (Path(CONF_DIR) / "data/source/evaluation").glob("*"))


def _fields(cls) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def _compose(name: str, evaluation: str | None = None, *overrides: str):
    chosen = [f"data={name}"]
    if evaluation is not None:
        chosen.append(f"data/source/evaluation={evaluation}")
    return compose_train([*chosen, *overrides]).data.source


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_each_data_config_lists_every_option_of_its_source(name):
    """So every option can be set from the command line without ``+``."""
    source = _compose(name)
    assert set(source) - {"_target_"} == _fields(get_class(source._target_))
    evaluation = source.get("evaluation")
    if evaluation is not None:
        assert set(evaluation) - {"_target_"} == _fields(get_class(evaluation._target_))


@pytest.mark.parametrize("evaluation", EVALUATION_CONFIGS)
def test_each_shard_evaluation_config_lists_every_option(evaluation):
    node = _compose("shards", evaluation).evaluation
    cls = get_class(node._target_)
    assert cls in EVALUATIONS.values() and set(node) - {"_target_"} == _fields(cls)


@pytest.mark.parametrize(
    "source",
    [
        SynthFacesSource(num_train_identities=7, eval_yaw_range=[-5, 5], synth_knobs={"blur": 1}),
        FolderSource(root="/tree", landmarks="/t.csv", min_images_per_identity=2),
        LFWSource(root="/lfw", pairs="/pairs.txt", test_set=None, val_set=3),
        ShardSource(shards="/s", evaluation=FolderHalvesEvaluation(root="/tree")),
        ShardSource(shards="/s", shuffle_buffer=5),
    ],
)
def test_a_plain_config_rebuilds_the_same_source(source):
    config = source.to_config()
    assert SOURCES[config["kind"]] is type(source)
    # plain values only (what torch.load(weights_only=True) reads back)
    leaves = [config]
    while leaves:
        value = leaves.pop()
        if isinstance(value, dict):
            leaves.extend(value.values())
        elif isinstance(value, (list, tuple)):
            leaves.extend(value)
        else:
            assert value is None or isinstance(value, (str, int, float, bool)), value
    assert source_from_config(config) == source


def test_the_hydra_config_and_the_plain_config_build_equal_sources():
    given = ["data.source.shards=/s", "data.source.evaluation.root=/tree"]
    source = instantiate(_compose("shards", "folder_halves", *given), _convert_="all")
    assert isinstance(source.evaluation, FolderHalvesEvaluation)
    assert source_from_config(source.to_config()) == source


def test_the_former_flat_arguments_map_onto_the_kinds():
    flat = dict(dataset="lfw", root="/lfw", lfw_pairs="/p.txt", lfw_test_set=None)
    flat.update(lfw_val_set=4, val_num_pairs=40, batch_size=8, shards=None, seed=3)
    arguments = from_flat_arguments(flat)
    assert arguments["batch_size"] == 8 and arguments["seed"] == 3
    assert source_from_config(arguments["source"]) == LFWSource(
        root="/lfw", pairs="/p.txt", test_set=None, val_set=4
    )
    synth = from_flat_arguments(dict(dataset="shards", shards="/s", val_identities=9))
    assert source_from_config(synth["source"]).evaluation.val_identities == 9
    assert from_flat_arguments({})["source"] == {"kind": "synthfaces"}
    with pytest.raises(ValueError, match="dataset must be one of"):
        from_flat_arguments({"dataset": "webface"})

"""Every option of every config group composes into a valid AppConfig; mistakes fail at compose time."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from agnews.config import AppConfig, ConfigError, Pooling, compose, to_app_config

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
GROUPS = {
    group: sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))
    for group in ("embedding", "model", "optimizer")
}


def compose_config(*overrides: str, return_hydra_config: bool = False):
    return compose(list(overrides), with_hydra=return_hydra_config)


def test_groups_hold_the_designed_options():
    assert GROUPS["embedding"] == [
        *("glove100", "glove100_frozen", "glove200", "glove200_frozen", "glove300", "glove300_frozen"),
        *("glove50", "glove50_frozen", "learned", "learned100"),
    ]
    assert GROUPS["model"] == ["base", "bilstm_max", "bilstm_max_dropout50", "large", "small"]
    assert GROUPS["optimizer"] == ["adam", "adamw", "sgd"]


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_option_composes_to_typed_config(group, option):
    config = OmegaConf.to_object(compose_config(f"{group}={option}"))
    assert isinstance(config, AppConfig)
    # A frozen GloVe option keeps its size's name: the report tells the two apart by embedding.freeze.
    assert getattr(config, group).name == option.removesuffix("_frozen")
    if group == "embedding":
        assert config.embedding.freeze is option.endswith("_frozen")


def test_defaults_are_the_notebook():
    config = OmegaConf.to_object(compose_config())
    assert (config.embedding.kind, config.embedding.dim) == ("learned", 32)
    assert (config.model.hidden_size, config.model.num_layers, config.model.pooling) == (64, 1, Pooling.last)
    assert (config.optimizer.name.value, config.optimizer.lr, config.optimizer.grad_clip) == ("sgd", 5.0, 0.1)
    assert (config.trainer.epochs, config.trainer.batch_size, config.seed) == (10, 64, 0)


@pytest.mark.parametrize("dim", [50, 100, 200, 300])
def test_glove_options_carry_their_dimension(dim):
    config = OmegaConf.to_object(compose_config(f"embedding=glove{dim}"))
    assert (config.embedding.kind, config.embedding.dim) == ("glove", dim)


def test_practica1_sweeps_learned_and_every_glove_size_frozen_and_fine_tuned_over_three_seeds():
    config = compose_config("+experiment=practica1", return_hydra_config=True)
    params = config.hydra.sweeper.params
    glove = [f"glove{dim}{way}" for dim in (50, 100, 200, 300) for way in ("_frozen", "")]
    assert params.embedding.split(",") == ["learned", *glove]
    assert params.seed == "0,1,2"
    assert config.hydra.mode.name == "MULTIRUN"


@pytest.mark.parametrize(
    ("experiment", "embedding", "model"),
    [
        ("bilstm_glove50", "glove50", "bilstm_max_dropout50"),
        ("bilstm_learned100", "learned100", "bilstm_max_dropout50"),
    ],
)
def test_recipe_experiments_pick_their_groups(experiment, embedding, model):
    config = OmegaConf.to_object(compose_config(f"+experiment={experiment}"))
    assert (config.embedding.name, config.model.name, config.optimizer.name.value) == (embedding, model, "adam")
    assert (config.trainer.epochs, config.trainer.patience) == (15, 3)


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("embedding.dimm=3", ConfigCompositionException, "dimm"),
        ("trainer.epochs=ten", ConfigCompositionException, "epochs"),
        ("model.pooling=average", ConfigCompositionException, "pooling"),
        ("model=huge", ConfigCompositionException, "huge"),
    ],
)
def test_mistakes_fail_at_compose_time(override, error, message):
    with pytest.raises(error, match=message):
        compose_config(override)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["embedding=glove50", "embedding.dim=64"], "GloVe comes in"),
        (["embedding.path=/x/glove.zip"], "apply to pretrained vectors, not to kind=learned"),
        (["embedding.kind=fasttext"], "embedding.kind='fasttext' is no embedding kind agnews knows: learned, glove"),
        (["data.val_fraction=0"], "val_fraction"),
        (["optimizer.lr=-1"], "optimizer.lr"),
    ],
)
def test_cross_field_rules_fail_on_conversion(overrides, message):
    config = compose_config(*overrides)
    with pytest.raises((ValueError, ValidationError), match=message):
        OmegaConf.to_object(config)


@pytest.mark.parametrize("group", ["embedding", "model", "optimizer", "logger"])
def test_an_option_without_a_name_is_refused_not_given_the_default(tmp_path, group):
    """A preset that forgets `name:` once took the schema's default (learned, small, sgd) and was labelled so."""
    values = {
        "embedding": "kind: learned\ndim: 16\n",
        "model": "hidden_size: 16\n",
        "optimizer": "lr: 0.1\n",
        "logger": "tracking_uri: null\n",
    }
    (tmp_path / group).mkdir()
    (tmp_path / group / "unnamed.yaml").write_text(f"defaults:\n  - /schema/{group}@_here_: {group}\n{values[group]}")
    config = compose_config(f"{group}=unnamed", f"hydra.searchpath=[file://{tmp_path}]")
    with pytest.raises(ConfigError, match=rf"config error: {group}.name is missing: every {group} option must say"):
        to_app_config(config)

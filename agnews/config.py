"""Typed schemas for the Hydra config. YAML under conf/ holds values; these dataclasses hold types and
the rules between fields, so a typo or a wrong type fails when Hydra composes the config.

`run.py` converts the composed DictConfig to an `AppConfig` once (`OmegaConf.to_object`); everything
below the entry point takes these plain dataclasses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from agnews.embeddings import embedding_kind
from agnews.storage import AgnewsError

AG_NEWS_BASE_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
GLOVE_6B_URLS = (
    "https://nlp.stanford.edu/data/glove.6B.zip",
    "https://huggingface.co/stanfordnlp/glove/resolve/main/glove.6B.zip",
)
MISSING = "???"  # omegaconf.MISSING (without importing it here): a value the chosen option must give
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps"
MAX_SEED = 2**32 - 1


class Validation(StrEnum):
    held_out = "held_out"  # a stratified share of train; test is evaluated once, at the end
    test = "test"  # the notebook's way: lr steps and the best epoch chosen on the test split (optimistic)


class OovInit(StrEnum):
    zeros = "zeros"  # torchtext's Vectors behaviour for words GloVe lacks
    random = "random"  # small normal noise, so fine-tuning can separate unknown words


class Pooling(StrEnum):
    last = "last"  # lstm_out[:, -1, :] as the notebook: reads past the padding of shorter texts
    last_valid = "last_valid"  # the state at each text's own last token
    mean = "mean"  # mean over each text's valid steps
    max = "max"  # max over each text's valid steps


class Precision(StrEnum):
    auto = "auto"  # float16 mixed precision on CUDA, float32 elsewhere (CPU autocast is slower there)
    fp32 = "fp32"
    bf16 = "bf16"  # bfloat16 autocast on any device
    fp16 = "fp16"  # float16 autocast, with loss scaling on CUDA


class OptimizerName(StrEnum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"


class LoggerName(StrEnum):
    none = "none"
    tensorboard = "tensorboard"  # event files in each run folder
    mlflow = "mlflow"  # a SQLite store at the sweep root, or logger.tracking_uri
    wandb = "wandb"  # Weights & Biases runs in each run folder, offline unless WANDB_MODE says otherwise


class LrDecay(StrEnum):
    never = "never"
    # The notebook's rule: StepLR.step() after an epoch whose train accuracy beats validation accuracy.
    train_beats_val = "train_beats_val"


@dataclass
class DataConfig:
    dir: str | None = None  # a folder with train.csv and test.csv: read as is, no download, no checksum
    cache_dir: str | None = None  # downloads and caches; default $AGNEWS_CACHE_DIR, then the user cache dir
    url: str = AG_NEWS_BASE_URL  # where {train,test}.csv are downloaded from (a mirror must match the md5s)
    validation: Validation = Validation.held_out
    val_fraction: float = 0.05  # stratified share of train held out for validation
    split_seed: int = 0  # which texts are held out; fixed apart from `seed` so all runs share one val set
    min_freq: int = 1  # tokens seen fewer times in train map to <unk>
    max_vocab_size: int | None = None  # cap on vocab entries, the two specials included
    # Tokens kept per text; the rest is cut (with a warning). A batch is padded to its longest text, so one
    # 100,000-token text would cost gigabytes; no AG News text comes near 1,000 (the longest has ~250).
    max_tokens: int | None = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.min_freq < 1:
            raise ValueError(f"data.min_freq must be >= 1, got {self.min_freq}")
        if self.max_vocab_size is not None and self.max_vocab_size < 3:
            raise ValueError(f"data.max_vocab_size must be >= 3 (two specials + a word), got {self.max_vocab_size}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"data.max_tokens must be positive or null, got {self.max_tokens}")


@dataclass
class EmbeddingConfig:
    name: str = MISSING  # how summary.csv and the report label this embedding: every option names itself
    kind: str = "learned"  # one of agnews.embeddings.KINDS: learned, glove
    dim: int = 32
    freeze: bool = False  # keep pretrained vectors fixed (glove) instead of fine-tuning them
    path: str | None = None  # local GloVe file: .txt, .txt.gz or a .zip holding glove.6B.<dim>d.txt
    oov: OovInit = OovInit.zeros
    urls: list[str] = field(default_factory=lambda: list(GLOVE_6B_URLS))  # tried in order

    def __post_init__(self) -> None:
        kind = embedding_kind(self.kind)
        if self.dim < 1:
            raise ValueError(f"embedding.dim must be positive, got {self.dim}")
        if kind.dims and self.dim not in kind.dims:
            dims = ", ".join(map(str, kind.dims))
            raise ValueError(f"embedding.dim={self.dim}: {kind.label} comes in {dims} dimensions")
        if not kind.pretrained and (self.path or self.freeze):
            raise ValueError(
                f"embedding.path and embedding.freeze apply to pretrained vectors, not to kind={kind.name} embeddings"
            )


@dataclass
class ModelConfig:
    name: str = MISSING  # how summary.csv and the report label this model: every option names itself
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between LSTM layers and before the classifier
    embedding_dropout: float = 0.0  # on the embedded tokens: a strong brake on overfitting learned embeddings
    pooling: Pooling = Pooling.last

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be positive, got {getattr(self, name)}")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class OptimizerConfig:
    name: OptimizerName = MISSING  # every option says which optimizer it is
    lr: float = 5.0
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    grad_clip: float | None = 0.1  # max gradient norm; null disables clipping
    lr_decay: LrDecay = LrDecay.train_beats_val
    lr_gamma: float = 0.1  # factor applied at each decay step

    def __post_init__(self) -> None:
        if self.name != MISSING:  # an enum also when built in Python from a plain string
            self.name = OptimizerName(self.name)
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be positive, got {self.lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"optimizer.grad_clip must be positive or null, got {self.grad_clip}")


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 64
    device: str = "auto"  # auto = cuda, then mps, then cpu; or any torch device string
    log_interval: int = 500  # batches between progress log lines
    bucket_by_length: bool = True  # batch texts of similar length (still shuffled) to waste less on padding
    precision: Precision = Precision.auto
    patience: int | None = None  # stop after this many epochs without a better val accuracy; null: never
    checkpoint: bool = True  # save a resumable checkpoint.pt after every epoch (removed when the run ends)
    progress_bar: bool = True
    # CPU threads for torch; null: agnews chooses (agnews/threads.py): a job's share of the cores when several
    # run at once here, what a cluster reserved, else the cores no other process keeps busy.
    num_threads: int | None = None
    # A run diverges when its training loss is not finite, or when the median loss of a stretch of
    # batches (DIVERGENCE_WINDOW in train.py) exceeds this: chance level for 4 classes is ln 4 = 1.39, so
    # 10 is far above anything a learning model shows. A saturated LSTM keeps exploded losses finite,
    # which is why finiteness alone is not enough. null: only non-finite losses count.
    divergence_threshold: float | None = 10.0

    def __post_init__(self) -> None:
        if not re.fullmatch(DEVICE_PATTERN, str(self.device)):
            raise ValueError(
                f"trainer.device={self.device!r} is not a device agnews trains on: use auto, cpu, cuda, cuda:N or mps"
            )
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"trainer.num_threads must be positive or null, got {self.num_threads}")
        for name in ("epochs", "batch_size", "log_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be positive, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"trainer.patience must be positive or null, got {self.patience}")
        if self.divergence_threshold is not None and not self.divergence_threshold > 0:
            raise ValueError(f"trainer.divergence_threshold must be positive or null, got {self.divergence_threshold}")


WANDB_PROJECT_FORBIDDEN = "/\\#?%:"


@dataclass
class LoggerConfig:
    """Live experiment tracking (agnews/tracking); results.json stays the record of every run."""

    name: LoggerName = MISSING  # every option says which tracker it is
    # mlflow: where runs go; null = sqlite:///<sweep folder>/mlflow.db (the run folder for a single run).
    # A server (http://host:5000) or any other MLflow URI works, except the deprecated file store.
    tracking_uri: str | None = None
    experiment_name: str | None = None  # mlflow: null = the sweep folder's absolute path (one experiment per sweep)
    project: str | None = None  # wandb: the W&B project; null = "agnews"

    def __post_init__(self) -> None:
        if self.name != MISSING:  # an enum also when built in Python from a plain string
            self.name = LoggerName(self.name)
        uri = self.tracking_uri or ""
        if uri.startswith("file:") or (uri and "://" not in uri and not uri.startswith("databricks")):
            raise ValueError(
                f"logger.tracking_uri={uri!r}: MLflow's file store is deprecated (MLflow 3 refuses it); "
                "use sqlite:////abs/path/mlflow.db, a server URL, or null for <sweep>/mlflow.db"
            )
        # W&B's own rule, checked by wandb.init in every job; here it fails once, before any job starts.
        if self.project is not None and (
            not self.project or len(self.project) > 128 or set(self.project) & set(WANDB_PROJECT_FORBIDDEN)
        ):
            raise ValueError(
                f"logger.project={self.project!r}: a W&B project name has 1 to 128 characters, none of "
                f"{' '.join(WANDB_PROJECT_FORBIDDEN)}"
            )


@dataclass
class AppConfig:
    # The notebook's choices, for code that builds an AppConfig itself. Hydra's base_config leaves the groups'
    # names unset instead (register_configs), so a YAML option without `name:` fails rather than taking these.
    embedding: EmbeddingConfig = field(default_factory=lambda: EmbeddingConfig(name="learned"))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(name="small"))
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(name=OptimizerName.sgd))
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logger: LoggerConfig = field(default_factory=lambda: LoggerConfig(name=LoggerName.none))
    seed: int = 0
    # Rerun into an existing run/sweep directory: skip completed runs with the same config, continue
    # killed or failed ones from their last checkpoint. Without it, an existing run is never touched.
    resume: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.seed <= MAX_SEED:  # numpy's generators take seeds of 32 bits
            raise ValueError(f"seed must be in 0 .. {MAX_SEED} (2**32 - 1), got {self.seed}")


# The config groups (conf/<group>/) and their schemas; each option's file extends `/schema/<group>`.
GROUP_SCHEMAS = {
    "embedding": EmbeddingConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "logger": LoggerConfig,
}


# Settings that do not change what a run computes: a run may resume with other values for these, and
# neither summary.csv nor the report splits runs by them.
NOT_PART_OF_THE_RUN = frozenset(
    {
        "resume",
        "trainer.progress_bar",
        "trainer.log_interval",
        "trainer.device",
        "trainer.num_threads",
        "data.cache_dir",
        "logger",
        "logger.name",
        "logger.tracking_uri",
        "logger.experiment_name",
        "logger.project",
    }
)


def config_source() -> str:
    """Where conf/ is, for Hydra: the checkout's own folder when agnews runs from a checkout (an editable
    install, or PYTHONPATH), so edits to it apply at once; else `pkg://agnews.conf`, the copy a wheel carries
    (pyproject.toml maps conf/ to the package agnews.conf)."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return str(checkout / "conf")
    return "pkg://agnews.conf"


def compose(overrides: list[str], with_hydra: bool = False) -> Any:
    """The DictConfig `python -m agnews.run` composes from conf/ with `overrides` (its `hydra` node too when
    `with_hydra`), for code that is not a Hydra app: bench, the GPU check, tests."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    register_configs()
    source = config_source()
    if source.startswith("pkg://"):
        context = initialize_config_module(config_module=source.removeprefix("pkg://"))
    else:
        context = initialize_config_dir(config_dir=source)
    with context:
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=with_hydra)


def compose_config(overrides: list[str]) -> AppConfig:
    """The typed config `python -m agnews.run` would run with these overrides, without progress bars unless
    an override turns them back on; ConfigError (one line) for a mistake in them."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return to_app_config(compose(["trainer.progress_bar=false", *overrides]))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"config error: {str(error).strip().splitlines()[0]}") from None


def config_from_record(record: dict[str, Any]) -> AppConfig:
    """The typed config of a config a run recorded (results.json's or model.pt's "config"), with today's
    defaults for settings added since; ConfigError when it no longer fits the schemas."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AppConfig), record))
    except (OmegaConfBaseException, ValueError) as error:
        raise ConfigError(f"its config does not fit this version of agnews ({error})") from None


def register_configs() -> None:
    """Store the schemas so conf/ can extend them: conf/config.yaml starts from `base_config`,
    conf/<group>/<option>.yaml from `/schema/<group>`. The schemas live outside the groups, so Hydra's
    list of a group's options (`model=huge` fails with one) shows only the real options."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    base = OmegaConf.structured(AppConfig)
    for group, schema in GROUP_SCHEMAS.items():
        base[group] = OmegaConf.structured(schema)  # its name unset: the option chosen must give it
        store.store(group=f"schema/{group}", name=group, node=schema, package=group, replace=True)
    store.store(name="base_config", node=base, replace=True)  # replace: tests and tools register again


def to_plain_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (enums as their values), for results.json."""
    from dataclasses import asdict

    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return value

    return plain(asdict(config))


def unknown_keys(raw: dict[str, Any], config: Any, prefix: str = "") -> list[str]:
    """Keys of the composed config that the schema lacks. Hydra rejects them unless added with `+key=`;
    converting to dataclasses would then drop them silently, so the entry point refuses them."""
    known = to_plain_dict(config) if prefix == "" else config
    found = []
    for key, value in raw.items():
        if key not in known:
            found.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(known[key], dict):
            found += unknown_keys(value, known[key], f"{prefix}{key}.")
    return found


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: a plain config dict as dotted keys."""
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    return {k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'key: saved -> current' for every setting that differs, ignoring NOT_PART_OF_THE_RUN. A key the
    saved config lacks (a setting added to agnews since) counts as its default."""
    defaults = flatten(to_plain_dict(AppConfig()))
    old, new = flatten(saved), flatten(current)
    differences = []
    for key in sorted(old.keys() | new.keys()):
        if key in NOT_PART_OF_THE_RUN:
            continue
        before, after = old.get(key, defaults.get(key)), new.get(key, defaults.get(key))
        if before != after:
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences


class ConfigError(AgnewsError):
    """A config that composes but cannot describe a run; the message names the key."""


def to_app_config(cfg: Any) -> AppConfig:
    """The typed config of a composed DictConfig (Hydra's `cfg`, without its `hydra` node), or
    ConfigError saying which key is wrong and why."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    try:
        config = OmegaConf.to_object(cfg)
    except ValueError as error:  # a __post_init__ rule: its message names the key
        raise ConfigError(f"config error: {error}") from None
    except MissingMandatoryValue as error:
        key = str(getattr(error, "full_key", "") or "a setting")
        group = key.partition(".")[0]
        what = f"every {group} option must say its name (name: ...)" if key.endswith(".name") else "give it a value"
        raise ConfigError(f"config error: {key} is missing: {what}") from None
    except OmegaConfBaseException as error:
        first = str(error).strip().splitlines()[0]
        key = f" (key {error.full_key})" if getattr(error, "full_key", None) else ""
        raise ConfigError(f"config error: {first}{key}") from None
    extra = unknown_keys(OmegaConf.to_container(cfg, resolve=True), config)
    if extra:
        raise ConfigError(
            f"Unknown config keys {', '.join(extra)}: agnews has no such settings "
            "(python -m agnews.run --cfg job lists them)"
        )
    return config

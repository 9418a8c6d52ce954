"""Typed schemas for the Hydra config. YAML under conf/ holds values; these dataclasses hold types and
the rules between fields, so a typo or a wrong type fails when Hydra composes the config.

`run.py` converts the composed DictConfig to an `AppConfig` once (`OmegaConf.to_object`); everything
below the entry point takes these plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

AG_NEWS_BASE_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
GLOVE_6B_URLS = (
    "https://nlp.stanford.edu/data/glove.6B.zip",
    "https://huggingface.co/stanfordnlp/glove/resolve/main/glove.6B.zip",
)
GLOVE_6B_DIMS = (50, 100, 200, 300)


class Validation(StrEnum):
    held_out = "held_out"  # a stratified share of train; test is evaluated once, at the end
    test = "test"  # the notebook's way: lr steps and the best epoch chosen on the test split (optimistic)


class EmbeddingKind(StrEnum):
    learned = "learned"  # nn.Embedding initialised at random and trained
    glove = "glove"  # nn.Embedding initialised from GloVe 6B vectors


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

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.min_freq < 1:
            raise ValueError(f"data.min_freq must be >= 1, got {self.min_freq}")
        if self.max_vocab_size is not None and self.max_vocab_size < 3:
            raise ValueError(f"data.max_vocab_size must be >= 3 (two specials + a word), got {self.max_vocab_size}")


@dataclass
class EmbeddingConfig:
    name: str = "learned"  # how the report labels this embedding
    kind: EmbeddingKind = EmbeddingKind.learned
    dim: int = 32
    freeze: bool = False  # keep pretrained vectors fixed (glove) instead of fine-tuning them
    path: str | None = None  # local GloVe file: .txt, .txt.gz or a .zip holding glove.6B.<dim>d.txt
    oov: OovInit = OovInit.zeros
    urls: list[str] = field(default_factory=lambda: list(GLOVE_6B_URLS))  # tried in order

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"embedding.dim must be positive, got {self.dim}")
        if self.kind is EmbeddingKind.glove and self.dim not in GLOVE_6B_DIMS:
            raise ValueError(f"embedding.dim={self.dim}: GloVe 6B comes in {GLOVE_6B_DIMS} dimensions")
        if self.kind is EmbeddingKind.learned and (self.path or self.freeze):
            raise ValueError("embedding.path and embedding.freeze apply to kind=glove, not to learned embeddings")


@dataclass
class ModelConfig:
    name: str = "small"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between LSTM layers and before the classifier
    embedding_dropout: float = 0.0  # on the embedded tokens: a strong brake on overfitting learned embeddings
    pooling: Pooling = Pooling.last

    def __post_init__(self) -> None:
        if self.hidden_size < 1 or self.num_layers < 1:
            raise ValueError("model.hidden_size and model.num_layers must be positive")
        for name in ("dropout", "embedding_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass
class OptimizerConfig:
    name: OptimizerName = OptimizerName.sgd
    lr: float = 5.0
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0
    grad_clip: float | None = 0.1  # max gradient norm; null disables clipping
    lr_decay: LrDecay = LrDecay.train_beats_val
    lr_gamma: float = 0.1  # factor applied at each decay step

    def __post_init__(self) -> None:
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
    # CPU threads for torch; null keeps torch's default (all cores). Set cores / n_jobs when several jobs
    # share a machine (joblib launcher): oversubscribed OpenMP threads slow the LSTM down by 10x and more.
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"trainer.num_threads must be positive or null, got {self.num_threads}")
        if self.epochs < 1 or self.batch_size < 1 or self.log_interval < 1:
            raise ValueError("trainer.epochs, trainer.batch_size and trainer.log_interval must be positive")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"trainer.patience must be positive or null, got {self.patience}")


@dataclass
class AppConfig:
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    # Rerun into an existing run/sweep directory: skip completed runs with the same config, continue
    # killed or failed ones from their last checkpoint. Without it, an existing run is never touched.
    resume: bool = False


# Settings that do not change what a run computes: a run may resume with other values for these, and
# the report does not split runs by them.
NOT_PART_OF_THE_RUN = frozenset(
    {"resume", "trainer.progress_bar", "trainer.log_interval", "trainer.device", "trainer.num_threads",
     "data.cache_dir"}
)  # fmt: skip


def register_configs() -> None:
    """Store the schemas so conf/ can extend them: conf/config.yaml starts from `base_config`,
    conf/<group>/<option>.yaml from `base_<group>`."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(name="base_config", node=AppConfig)
    store.store(group="embedding", name="base_embedding", node=EmbeddingConfig)
    store.store(group="model", name="base_model", node=ModelConfig)
    store.store(group="optimizer", name="base_optimizer", node=OptimizerConfig)


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

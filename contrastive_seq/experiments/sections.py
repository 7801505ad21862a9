"""The sections of an experiment config, each variant carrying its own builder.

``data``, ``views``, ``encoder``, ``method`` and ``evaluation`` choose a
variant by ``name``. A variant is a dataclass registered on its section
(``@DataConfig.register("my_data")``) that implements the section's
``build`` (or, for ``evaluation``, ``evaluator``); the builders run in the
order data → encoder → method → views → evaluation, and each gets the whole
config (to read the sections it depends on) and what was built before it.
A domain is one module of such variants (:mod:`contrastive_seq.experiments.vision`,
``clip``, ``audio``, ``timeseries``); its heavy dependencies, torch included,
are imported inside the builders, so that reading and checking a config
imports none of them (``tests/test_cli_startup.py``).

``train`` is the Trainer's own config.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from contrastive_seq.command_files import check_input_path
from contrastive_seq.config import ConfigError, Variants, to_mapping
from contrastive_seq.training.config import TrainerConfig

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from contrastive_seq.experiments.run import Experiment
    from contrastive_seq.methods.base import Method
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views


@dataclass
class DataSplit:
    """What a ``data`` section builds.

    Attributes:
        train: what the Trainer's views index into.
        test: the held-out part the evaluation reads (``None``: nothing held out).
        sample_shape: the shape of one encoder input sample without the batch
            dimension (an image ``(C, H, W)``, a time point ``(channels,)``,
            a waveform sample ``()``): an exported encoder is rebuilt from it.
    """

    train: Any
    test: Any
    sample_shape: tuple[int, ...]


class DataConfig(Variants, abc.ABC):
    """Which data to train on and what is held out; ``evaluation`` names the evaluator run by default."""

    evaluation: ClassVar[str] = "none"

    @abc.abstractmethod
    def build(self, config: ExperimentConfig) -> DataSplit:
        """Read or generate the data; errors name the file and the setting."""

    def samples(self, part: Any) -> Any:
        """The encoder inputs ``(n, *sample_shape)`` of a built part (``train`` or ``test``), for ``embed``."""
        return part.inputs

    def read_samples(self, path: str) -> Any:
        """The encoder inputs of a whole other file or folder of this variant's kind (for ``embed RUN PATH``),
        read with this section's settings, nothing held out; read lazily where the variant reads lazily."""
        raise ConfigError(
            f"data {self.name!r} reads no other files: embed a .npy / .npz array, or 'train' / 'test'"
        )

    def check_samples_path(self, path: str, argument: str) -> None:
        """Check, without torch, that :meth:`read_samples` finds something at ``path`` (default: a file or
        folder is there); :class:`ConfigError` names ``argument``."""
        check_input_path(path, argument)

    @classmethod
    def reads_files(cls) -> bool:
        """Whether :meth:`read_samples` is implemented (``embed`` then reads DATA paths with it)."""
        return cls.read_samples is not DataConfig.read_samples


class EncoderConfig(Variants, abc.ABC):
    """The network that maps inputs to representations (what ``contrastive-seq export`` saves).

    ``weight_files`` names the fields that only set the initial weights (a
    local pretrained file): a trained encoder is rebuilt without reading them.
    """

    weight_files: ClassVar[tuple[str, ...]] = ()

    def kept_files(self) -> dict[str, Path]:
        """Files besides the config and the checkpoint that rebuilding this encoder reads, each by its path in the
        run folder (``text_tower/config.json``): a run copies them there when it trains (default: none)."""
        return {}

    def rebuilt_from(self, folder: Path, initial_weights: bool = False) -> EncoderConfig:
        """This section as rebuilt from ``folder`` (a run folder, or an export's files) to receive trained weights.

        ``folder`` holds the :meth:`kept_files`. ``initial_weights=False``:
        nothing outside it is read (the ``weight_files`` are dropped);
        ``True``: the weights the run started from are read where they still
        exist (``evaluate``'s untrained baseline).

        Raises:
            ConfigError: what the rebuild needs is neither in ``folder`` nor where the config says.
        """
        if initial_weights:
            return self
        return replace(self, **{name: None for name in self.weight_files})

    @abc.abstractmethod
    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        """The encoder for samples of ``sample_shape`` (no data needed: an exported encoder is rebuilt this way)."""

    def embed(self, encoder: nn.Module, inputs: Any, batch_size: int) -> Iterator[np.ndarray]:
        """Embeddings of ``inputs (n, *sample_shape)`` (an array or a lazily read array), batch after batch.

        Each yielded block is ``(rows, dim)`` float32; default: ``encoder(inputs[i : i + batch_size])``.
        """
        import torch

        device = next(encoder.parameters(), torch.empty(0)).device
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                batch = as_float_tensor(inputs[start : start + batch_size]).to(device)
                yield encoder(batch).float().cpu().numpy()


    def frames(self, encoder: nn.Module, inputs: Any) -> Iterator[np.ndarray]:
        """Every frame of each sequence of ``inputs``, one block ``(frames, dim)`` per sequence (audio encoders)."""
        raise ConfigError(f"encoder {self.name!r} gives one row per sample: per-file frames apply to audio "
                          "encoders (cpc_waveform)")


def as_float_tensor(values: Any) -> torch.Tensor:
    """A float32 tensor of a tensor, an array or a lazily read array slice (copied: memory maps are read-only)."""
    import numpy as np
    import torch

    if isinstance(values, torch.Tensor):
        return values.float()
    return torch.from_numpy(np.array(values, dtype=np.float32))


class MethodConfig(Variants, abc.ABC):
    """The method: heads, loss and what it pairs.

    An exported encoder offers the encoder's own output, named
    ``encoder_features``, and one representation per network of
    :meth:`feature_networks` (CPC: ``frame`` and ``context``); ``embed``
    gives ``default_features`` unless asked for another.
    """

    encoder_features: ClassVar[str] = "encoder"
    default_features: ClassVar[str] = "encoder"
    feature_names: ClassVar[tuple[str, ...]] = ()  # the names :meth:`feature_networks` gives, known without torch

    def check_features(
        self, features: str | None, offered: tuple[str, ...] | None = None, argument: str = "features"
    ) -> str:
        """``features`` (``None``: ``default_features``) when ``offered`` holds it (default: the encoder's
        output and :attr:`feature_names`); else :class:`ConfigError` naming ``argument`` and what is offered."""
        offered = (self.encoder_features, *self.feature_names) if offered is None else offered
        chosen = self.default_features if features is None else features
        if chosen not in offered:
            raise ConfigError(f"{argument}={chosen!r}: the encoder of method {self.name!r} offers {list(offered)}")
        return chosen

    def feature_networks(self, config: ExperimentConfig, encoder: nn.Module) -> dict[str, nn.Module]:
        """Fresh networks that map the encoder's output to the other representations, by name (default: none).

        The method holds trained copies of them (:meth:`Method.feature_networks`), which an export keeps.
        """
        return {}

    @abc.abstractmethod
    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        """The method around ``encoder`` and the sampler that draws its pairs from ``train``."""


class ViewsConfig(Variants, abc.ABC):
    """How sampled indices become model inputs."""

    @abc.abstractmethod
    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        """The views step for ``train``, fitted to ``method`` (its receptive field, its tokenizer)."""


class MissingLabels(ConfigError):
    """The data lacks what an evaluation needs (labels, a held-out part); the message says what."""


class Evaluator(abc.ABC):
    """An evaluation prepared for one experiment (built before training, so its errors come first).

    The Trainer calls :meth:`during_training` on every rank. :meth:`results` is
    called on rank 0 alone, or on every rank when :attr:`across_ranks` is set
    (the evaluator then shares its work among the ranks, and every rank gets
    the same table).
    """

    #: whether :meth:`results` shares its work among the ranks (then every rank must call it)
    across_ranks: bool = False

    def during_training(self, method: Method) -> dict[str, float]:
        """Scores logged every ``train.eval_every`` steps; default: none."""
        return {}

    @property
    def online(self) -> bool:
        """Whether :meth:`during_training` is overridden (the Trainer calls it only then)."""
        return type(self).during_training is not Evaluator.during_training

    @abc.abstractmethod
    def results(self, trained: Method, untrained: Method) -> dict[str, dict[str, float]]:
        """The table ``{representation: {score: value}}``: the trained method against baselines."""

    def figures(self, trained: Method, output: Path) -> list[Path]:
        """Figures written into ``output`` after the results; default: none."""
        return []


class EvaluationConfig(Variants, abc.ABC):
    """What the trained representation is measured by; one registered variant per evaluation."""

    @abc.abstractmethod
    def evaluator(self, experiment: Experiment) -> Evaluator | None:
        """The evaluator for ``experiment`` (``None``: nothing to evaluate); raises :class:`MissingLabels`
        when the data cannot support it."""


@EvaluationConfig.register("none")
@dataclass
class NoEvaluation(EvaluationConfig):
    """Train and save only."""

    name: str = "none"

    def evaluator(self, experiment: Experiment) -> None:
        return None


@dataclass
class ExperimentConfig:
    """A whole run: what data, presented how, encoded by what, trained how, evaluated how.

    ``evaluation`` ``None`` (the section left out) runs the data's default
    evaluation when the data has what it needs (labels, a held-out part) and
    otherwise only trains and saves; a given section must be satisfiable.
    """

    data: DataConfig
    views: ViewsConfig
    encoder: EncoderConfig
    method: MethodConfig
    train: TrainerConfig = field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig | None = None

    def run_settings(self) -> dict[str, Any]:
        """The sections that define the trained model besides ``train`` (data, views, encoder, method), as plain values.

        The Trainer keeps them in each checkpoint and refuses to resume one
        written with other values (see :class:`~contrastive_seq.training.trainer.Trainer`).
        """
        return {name: to_mapping(getattr(self, name)) for name in ("data", "views", "encoder", "method")}


def require_section(config: ExperimentConfig, section: str, *kinds: type, needed_by: str) -> None:
    """Refuse ``config.<section>`` unless it is one of ``kinds``: a :class:`ConfigError` naming the section and the choices."""
    value = getattr(config, section)
    if not isinstance(value, kinds):
        names = [kind.__dataclass_fields__["name"].default for kind in kinds]
        raise ConfigError(f"{needed_by} needs {section}.name in {names}, got {getattr(value, 'name', value)!r}")


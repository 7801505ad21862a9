"""A trained encoder on its own: export it from a run, load it anywhere, embed new data with it.

An export file holds the encoder's weights, the run's config, the shape
of one input sample and the files the encoder's config keeps (a Hugging
Face text tower's config and tokenizer), as plain tensors, bytes and containers: it loads with
``torch.load(weights_only=True)`` and never runs code. The encoder is rebuilt
by its config section's builder (no data, no sampler, no optimiser)::

    from contrastive_seq import export_encoder, load_encoder

    export_encoder("runs/simclr_digits", "digits_encoder.pt")
    encoder = load_encoder("digits_encoder.pt")
    z = encoder.embed(images)                  # (n, dim) numpy array

Exporting a run, or embedding with it, needs only the run's folder (its
config, checkpoint and kept files), not its training data nor a text
tower's model directory. A CPC export also keeps the
context model: ``encoder.embed(waveform)`` gives the context vectors c_t
``(frames, context_dim)``, ``features="frame"`` the frames z_t.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from contrastive_seq.command_files import EXPORT_SUFFIXES, check_output_path
from contrastive_seq.config import ConfigError, to_mapping
from contrastive_seq.experiments.run import ENCODER_RECORD, config_from_mapping, load_run, run_config
from contrastive_seq.experiments.sections import ExperimentConfig
from contrastive_seq.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from contrastive_seq.training.config import CHECKPOINT_NAME

EXPORT_FORMAT = "contrastive_seq.encoder"
EXPORT_VERSION = 1


@dataclass
class ExportedEncoder:
    """A trained encoder with the config that built it, and the networks after it that give other representations.

    Attributes:
        module: the encoder network, in eval mode.
        config: the run's resolved config (``config.encoder`` built ``module``).
        sample_shape: the shape of one input sample (``(C, H, W)``, ``(channels,)``, ...).
        networks: the method's feature networks by name (CPC: ``context``), in eval mode.
    """

    module: nn.Module
    config: ExperimentConfig
    sample_shape: tuple[int, ...]
    networks: dict[str, nn.Module] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        """The representations offered: the encoder's own output (``frame`` for CPC, else ``encoder``), then
        one per feature network (``context``)."""
        return (type(self.config.method).encoder_features, *self.networks)

    def network(self, features: str | None = None) -> nn.Module:
        """The network that computes ``features`` (``None``: the method's default, ``context`` for CPC).

        Raises:
            ConfigError: naming ``features`` and the representations this encoder offers.
        """
        features = self.config.method.check_features(features, self.features)
        if features == self.config.method.encoder_features:
            return self.module.eval()
        return nn.Sequential(self.module, self.networks[features]).eval()

    def embed_batches(self, inputs: Any, batch_size: int = 1024, features: str | None = None) -> Iterator[np.ndarray]:
        """Embeddings of ``inputs`` block after block (see :meth:`EncoderConfig.embed`), reading as it goes."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        return self.config.encoder.embed(self.network(features), inputs, batch_size)

    def frames(self, inputs: Any, features: str | None = None) -> Iterator[np.ndarray]:
        """Audio encoders: one array ``(frames, dim)`` per waveform of ``inputs`` (a waveform ``(time,)`` or
        an audio folder read with the run's settings), in order, reading as it goes (see ``EncoderConfig.frames``)."""
        return self.config.encoder.frames(self.network(features), inputs)

    def embed(self, inputs: Any, batch_size: int = 1024, features: str | None = None) -> np.ndarray:
        """Embeddings ``(rows, dim)`` float32 of ``inputs``: images ``(n, C, H, W)``, a recording ``(T, channels)``,
        a waveform ``(time,)`` (one row per frame: CPC's context vectors c_t, or with ``features="frame"``
        the frames z_t), captions (a list of ``str``: a CLIP run's text-tower rows), in the layout and scale the
        run trained on."""
        return np.concatenate(list(self.embed_batches(inputs, batch_size, features)))


def _build(
    config: ExperimentConfig, sample_shape: tuple[int, ...], folder: Path
) -> tuple[nn.Module, dict[str, nn.Module]]:
    """The encoder and feature networks ``config`` builds, untrained, from the files kept in ``folder`` (see
    :meth:`~contrastive_seq.experiments.sections.EncoderConfig.rebuilt_from`), without reading initial weight files."""
    module = config.encoder.rebuilt_from(folder).build(config, sample_shape)
    return module, config.method.feature_networks(config, module)


def _load(modules: dict[str, nn.Module], states: dict[str, Any], source: str | os.PathLike) -> None:
    for name, module in modules.items():
        if name not in states:
            raise CheckpointError(f"{source} holds no weights of the {name}")
        try:
            module.load_state_dict(states[name])
        except RuntimeError as error:
            raise CheckpointError(f"{source}: the weights do not fit the {name} its config builds: {error}") from error
        module.eval()


def encoder_from_run(run: str | os.PathLike, overrides: Sequence[str] = ()) -> ExportedEncoder:
    """The trained encoder (and feature networks) of the run in directory ``run``, from its config, checkpoint and
    kept files only.

    The training data is not read: the checkpoint records the input shape
    and where the encoder's weights are (:func:`~contrastive_seq.experiments.run.encoder_record`);
    nor is a Hugging Face text tower's model directory (the run keeps its config and tokenizer files).
    A run trained before checkpoints kept that record is rebuilt from its data section.

    Raises:
        ConfigError: naming the run, when it lacks a config or checkpoint, or is an older run whose data cannot be read.
    """
    config = run_config(run, overrides)
    checkpoint = Path(run) / CHECKPOINT_NAME
    state = load_checkpoint(checkpoint)
    record = (state.get("run_settings") or {}).get(ENCODER_RECORD)
    if record is None:
        try:
            experiment, _ = load_run(run, overrides)
        except (OSError, ValueError, ConfigError) as error:
            raise ConfigError(
                f"run {run} was trained before checkpoints recorded the encoder's input shape ({checkpoint} has no "
                f"run_settings.{ENCODER_RECORD}.sample_shape), so its training data must be read to rebuild the "
                f"encoder, and that failed: {error}"
            ) from error
        networks = {name: module.eval() for name, module in experiment.method.feature_networks().items()}
        return ExportedEncoder(experiment.encoder.eval(), experiment.config, experiment.data.sample_shape, networks)
    sample_shape = tuple(int(size) for size in record["sample_shape"])
    try:
        module, networks = _build(config, sample_shape, Path(run))
    except ConfigError as error:
        raise ConfigError(f"run {run}: {error}") from error
    model = state["model"]
    try:
        states = {name: {key: model[owner] for key, owner in keys.items()}
                  for name, keys in record["state_keys"].items()}
    except KeyError as error:
        raise CheckpointError(f"{checkpoint} lacks the weight {error} its record names") from error
    _load({"encoder": module, **networks}, states, checkpoint)
    return ExportedEncoder(module, config, sample_shape, networks)


def export_encoder(run: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write the encoder (and feature networks) of the training run in directory ``run`` to ``path`` (atomically).

    Needs only the run's folder (config, checkpoint, kept files), not its training data; the file carries the kept
    files (a Hugging Face text tower's config and tokenizer). Returns ``path``.

    Raises:
        ConfigError: naming ``path`` unless it ends in ``.pt`` or ``.pth``, or the run lacks a config or checkpoint.
    """
    check_output_path(path, EXPORT_SUFFIXES, "path", folder_must_exist=False)
    encoder = encoder_from_run(run)
    kept = encoder.config.encoder.rebuilt_from(Path(run)).kept_files()
    state = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "config": to_mapping(encoder.config),
        "sample_shape": list(encoder.sample_shape),
        "encoder": _plain_state(encoder.module),
        "features": {name: _plain_state(network) for name, network in encoder.networks.items()},
        "files": {name: source.read_bytes() for name, source in kept.items()},
    }
    save_checkpoint(path, state)
    return Path(path)


def _plain_state(module: nn.Module) -> dict[str, Any]:
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def load_encoder(path: str | os.PathLike) -> ExportedEncoder:
    """Load an encoder written by :func:`export_encoder` (weights-only: the file cannot run code).

    Raises:
        FileNotFoundError: naming ``path`` when there is no file.
        CheckpointError: naming ``path`` when it is unreadable or not an export file.
    """
    state = load_checkpoint(path)
    if state.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path} is not an exported encoder (its 'format' is {state.get('format')!r}); "
                              "write one with contrastive-seq export RUN -o FILE")
    if state.get("format_version") != EXPORT_VERSION:
        raise CheckpointError(f"{path} has export format version {state.get('format_version')!r}, "
                              f"this library reads {EXPORT_VERSION}")
    config = config_from_mapping(state["config"])
    sample_shape = tuple(int(size) for size in state["sample_shape"])
    with tempfile.TemporaryDirectory() as folder:  # the kept files, read while the encoder is built
        for name, content in (state.get("files") or {}).items():
            _unpack(Path(folder), name, content, path)
        try:
            module, networks = _build(config, sample_shape, Path(folder))
        except ConfigError as error:
            raise ConfigError(f"exported encoder {path}: {error}") from error
    saved = state.get("features") or {}  # files exported before feature networks were kept hold the encoder only
    networks = {name: network for name, network in networks.items() if name in saved}
    _load({"encoder": module, **networks}, {"encoder": state["encoder"], **saved}, path)
    return ExportedEncoder(module, config, sample_shape, networks)


def _unpack(folder: Path, name: str, content: bytes, source: str | os.PathLike) -> None:
    """Write the kept file ``name`` (a relative path: ``text_tower/config.json``) of export file ``source`` into ``folder``."""
    target = folder / name
    if not isinstance(content, bytes) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CheckpointError(f"{source} holds a kept file {name!r} that is not bytes under a relative path")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content)


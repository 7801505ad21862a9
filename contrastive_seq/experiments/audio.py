"""The speech domain (CPC): a speech corpus, crops, CPC_audio's encoder, CPC, and the ``speech_probes`` evaluation.

Registered variants: data ``speech_corpus``, views ``crops``, encoder
``cpc_waveform``, method ``cpc``, evaluation ``speech_probes`` (linear
speaker and phone probes on held-out utterances, against MFCC and the
random-init CPC).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from contrastive_seq.config import ConfigError
from contrastive_seq.experiments.sections import (
    DataConfig,
    DataSplit,
    EncoderConfig,
    EvaluationConfig,
    Evaluator,
    ExperimentConfig,
    MethodConfig,
    MissingLabels,
    ViewsConfig,
    as_float_tensor,
    require_section,
)
from contrastive_seq.models.names import CONTEXT_MODELS, PREDICTORS

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from contrastive_seq.data.audio import SpeechCorpus
    from contrastive_seq.experiments.run import Experiment
    from contrastive_seq.methods.base import Method
    from contrastive_seq.sampling.base import Sampler
    from contrastive_seq.views.base import Views


@dataclass
class HeldOutUtterances:
    """The whole corpus and which utterances train and which are held out (indices into ``corpus.audio``)."""

    corpus: SpeechCorpus
    train: list[int]
    test: list[int]


@DataConfig.register("speech_corpus")
@dataclass
class SpeechCorpusData(DataConfig):
    """A corpus in the layout of :mod:`contrastive_seq.data.audio`; every 4th utterance per speaker held out by default.

    Utterances shorter than the views' crop are refused, naming the utterance.
    """

    evaluation: ClassVar[str] = "speech_probes"
    name: str = "speech_corpus"
    path: str = "data/espeak_speech.h5"
    sample_rate: int = 16000
    test_every: int = 4

    def build(self, config: ExperimentConfig) -> DataSplit:
        from contrastive_seq.data.audio import load_speech_corpus

        require_section(config, "views", CropViewsConfig, needed_by="data 'speech_corpus'")
        corpus = load_speech_corpus(self.path, min_length=config.views.crop_length, sample_rate=self.sample_rate)
        train, test = corpus.split_utterances(self.test_every)
        return DataSplit(corpus.audio.subset(train), HeldOutUtterances(corpus, train, test), (1,))

    def samples(self, part: Any) -> Any:
        raise ConfigError("embed reads one waveform at a time: give it as a .npy file (time,)")


@DataConfig.register("audio_folder")
@dataclass
class AudioFolderData(DataConfig):
    """A folder of audio files of one's own (WAV / FLAC / OGG, recursive; see
    :func:`~contrastive_seq.data.audio_folder.load_audio_folder`), read from disk as crops ask.

    Files are resampled to ``sample_rate``. ``speakers``: ``parent`` (the
    file's folder), ``top`` (the first folder under ``path``) or ``null``; a
    ``manifest`` CSV (``file``, ``speaker``) and phone ``alignments`` CSV
    (``file``, ``start``, ``end``, ``phone``) are optional. With speakers,
    every ``test_every``-th file of each speaker is held out and probed after
    training; without, every file trains and the run only saves.
    """

    evaluation: ClassVar[str] = "speech_probes"
    name: str = "audio_folder"
    path: str = ""
    sample_rate: int = 16000
    speakers: Literal["parent", "top"] | None = "parent"
    manifest: str | None = None
    alignments: str | None = None
    test_every: int = 4

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.path must name the folder of audio files")
        if isinstance(self.test_every, bool) or self.test_every < 2:
            raise ConfigError(f"data.test_every must be an int >= 2, got {self.test_every!r}")

    def read(self, path: str, min_length: int | None = None) -> SpeechCorpus:
        """The folder ``path`` read with this section's settings (lazily: headers only)."""
        from contrastive_seq.data.audio_folder import load_audio_folder

        return load_audio_folder(path, self.sample_rate, self.speakers, self.manifest, self.alignments,
                                 min_length=min_length)

    def build(self, config: ExperimentConfig) -> DataSplit:
        require_section(config, "views", CropViewsConfig, needed_by="data 'audio_folder'")
        corpus = self.read(self.path, min_length=config.views.crop_length)
        if corpus.audio.speakers is None:
            return DataSplit(corpus.audio, None, (1,))
        train, test = corpus.split_utterances(self.test_every)
        return DataSplit(corpus.audio.subset(train), HeldOutUtterances(corpus, train, test), (1,))

    def samples(self, part: Any) -> Any:
        """The training files (``embed RUN train``: one row per file); the held-out part is embedded from its folder."""
        if isinstance(part, HeldOutUtterances):
            return part.corpus.audio.subset(part.test)
        return part

    def read_samples(self, path: str) -> Any:
        """Every audio file under folder ``path`` (sorted path order, or the manifest's), read as embedding asks."""
        return self.read(path).audio


@ViewsConfig.register("crops")
@dataclass
class CropViewsConfig(ViewsConfig):
    """Crops of ``crop_length`` samples (CPC_audio: 20480 = 128 frames of 160 samples)."""

    name: str = "crops"
    crop_length: int = 20480

    def build(self, config: ExperimentConfig, train: Any, method: Method) -> Views:
        from contrastive_seq.views.audio import CropViews

        return CropViews(self.crop_length)


@EncoderConfig.register("cpc_waveform")
@dataclass
class CPCWaveformEncoderConfig(EncoderConfig):
    """CPC_audio's five-layer strided encoder (total stride 160) of width ``hidden_dim``.

    An exported encoder embeds one waveform ``(time,)`` into one row per
    frame, ``(frames, dim)``: the context vectors c_t (``features="context"``,
    CPC's default) or the encoder's frames z_t (``features="frame"``).
    """

    name: str = "cpc_waveform"
    hidden_dim: int = 256

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        from contrastive_seq.models.cpc import waveform_encoder

        if tuple(sample_shape) != (1,):
            raise ConfigError(f"encoder 'cpc_waveform' reads mono waveforms (one channel), got samples of shape {sample_shape}")
        return waveform_encoder(self.hidden_dim)

    def frames(self, encoder: nn.Module, inputs: Any) -> Iterator[np.ndarray]:
        """One block ``(frames, dim)`` per waveform: of one waveform ``(time,)``, or of each audio file
        (:class:`~contrastive_seq.data.audio.IndexedSequences`) in order, each file read when it is embedded.

        ``encoder`` maps ``(1, time, 1)`` to ``(1, frames, dim)``: the frame encoder (z_t), or it followed
        by the context model (c_t; see :class:`~contrastive_seq.export.ExportedEncoder`). Frame t covers
        samples ``[160 t, 160 t + 465)`` (stride 160, receptive field 465).
        """
        import torch

        from contrastive_seq.data.audio import IndexedSequences

        device = next(encoder.parameters()).device
        with torch.no_grad():
            if not isinstance(inputs, IndexedSequences):
                yield encoder(as_float_tensor(inputs).to(device).reshape(1, -1, 1))[0].float().cpu().numpy()
                return
            for i in range(len(inputs)):
                yield encoder(inputs.sequence(i)[:, 0].to(device).view(1, -1, 1))[0].float().cpu().numpy()

    def embed(self, encoder: nn.Module, inputs: Any, batch_size: int) -> Iterator[np.ndarray]:
        """The rows ``(frames, dim)`` of one waveform ``(time,)``, in one pass; or, for audio files
        (:class:`~contrastive_seq.data.audio.IndexedSequences`), one row per file: its frames' mean
        ``(files, dim)``, ``batch_size`` files per block (every frame of each file: :meth:`frames`)."""
        import numpy as np

        from contrastive_seq.data.audio import IndexedSequences

        if not isinstance(inputs, IndexedSequences):
            yield from self.frames(encoder, inputs)
            return
        block = []
        for frames in self.frames(encoder, inputs):
            block.append(frames.mean(0))
            if len(block) == batch_size:
                yield np.stack(block)
                block = []
        if block:
            yield np.stack(block)


@MethodConfig.register("cpc")
@dataclass
class CPCMethodConfig(MethodConfig):
    """Context model by name, K predictors, per-step InfoNCE and where its negatives come from."""

    name: str = "cpc"
    context: str = "gru"
    context_dim: int = 256
    context_layers: int = 1
    num_steps: int = 12
    predictor: str = "bilinear"
    num_negatives: int = 128
    negatives: Literal["batch", "sequence", "speaker"] = "batch"
    speaker_group_size: int = 4

    encoder_features: ClassVar[str] = "frame"
    default_features: ClassVar[str] = "context"
    feature_names: ClassVar[tuple[str, ...]] = ("context",)

    def feature_networks(self, config: ExperimentConfig, encoder: nn.Module) -> dict[str, nn.Module]:
        """``context``: the autoregressive model over the encoder's frames, ``(batch, frames, context_dim)``."""
        from contrastive_seq.models.cpc import make_context_model

        return {"context": make_context_model(self.context, encoder.output_dim, self.context_dim, self.context_layers)}

    def __post_init__(self) -> None:
        for setting, names in (("context", CONTEXT_MODELS), ("predictor", PREDICTORS)):
            value = getattr(self, setting)
            if value not in names:
                raise ValueError(f"{type(self).__name__}.{setting} must be one of {list(names)}, got {value!r}")

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.cpc import CPCLoss
        from contrastive_seq.methods.cpc import CPC
        from contrastive_seq.models.cpc import StepPredictors
        from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler

        require_section(config, "views", CropViewsConfig, needed_by="method 'cpc'")
        require_section(config, "encoder", CPCWaveformEncoderConfig, needed_by="method 'cpc'")
        method = CPC(
            encoder,
            self.feature_networks(config, encoder)["context"],
            StepPredictors(self.context_dim, encoder.output_dim, self.num_steps, self.predictor),
            CPCLoss(self.num_negatives, self.negatives),
        )
        crop = config.views.crop_length
        method.check_crop_length(crop)
        if self.negatives == "speaker":
            sampler = SpeakerGroupedSampler(train.lengths, crop, train.speakers, self.speaker_group_size, train.names)
        else:
            sampler = SequenceCropSampler(train.lengths, crop, train.speakers, train.names)
        return method, sampler


@EvaluationConfig.register("speech_probes")
@dataclass
class SpeechProbesEvaluation(EvaluationConfig):
    """Linear speaker and frame-level phone probes on held-out utterances (at most ``max_phone_frames`` training frames)."""

    name: str = "speech_probes"
    max_phone_frames: int = 20000

    def evaluator(self, experiment: Experiment) -> Evaluator:
        held_out = experiment.data.test
        if not isinstance(held_out, HeldOutUtterances) or not held_out.test:
            raise MissingLabels("evaluation 'speech_probes' needs held-out utterances of speakers (data.speakers)")
        return SpeechProbesEvaluator(self.max_phone_frames, held_out)


class SpeechProbesEvaluator(Evaluator):
    """:class:`SpeechProbesEvaluation` of one corpus split."""

    def __init__(self, max_phone_frames: int, held_out: HeldOutUtterances):
        self.max_phone_frames, self.held_out = max_phone_frames, held_out

    def results(self, trained: Method, untrained: Method) -> dict[str, dict[str, float]]:
        from contrastive_seq.evaluation.speech import cpc_frame_features, mfcc_frame_features, speech_probe_scores

        held_out = self.held_out
        representations = {
            "cpc (trained)": cpc_frame_features(trained),
            "mfcc + deltas": mfcc_frame_features(held_out.corpus.sample_rate),
            "cpc (random init)": cpc_frame_features(untrained),
        }
        return {
            name: speech_probe_scores(features, held_out.corpus, held_out.train, held_out.test, self.max_phone_frames)
            for name, features in representations.items()
        }

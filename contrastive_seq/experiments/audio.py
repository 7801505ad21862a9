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

import numpy as np
import torch
from torch import nn

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

if TYPE_CHECKING:
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

    An exported encoder embeds one waveform ``(time,)`` into frames ``(frames, hidden_dim)``.
    """

    name: str = "cpc_waveform"
    hidden_dim: int = 256

    def build(self, config: ExperimentConfig, sample_shape: tuple[int, ...]) -> nn.Module:
        from contrastive_seq.models.cpc import waveform_encoder

        if tuple(sample_shape) != (1,):
            raise ConfigError(f"encoder 'cpc_waveform' reads mono waveforms (one channel), got samples of shape {sample_shape}")
        return waveform_encoder(self.hidden_dim)

    def embed(self, encoder: nn.Module, inputs: Any, batch_size: int) -> Iterator[np.ndarray]:
        """The frames ``(frames, hidden_dim)`` of one waveform ``(time,)``, in one pass."""
        device = next(encoder.parameters()).device
        waveform = as_float_tensor(inputs).to(device).reshape(1, -1, 1)
        with torch.no_grad():
            yield encoder(waveform)[0].float().cpu().numpy()


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

    def build(self, config: ExperimentConfig, encoder: nn.Module, train: Any) -> tuple[Method, Sampler]:
        from contrastive_seq.losses.cpc import CPCLoss
        from contrastive_seq.methods.cpc import CPC
        from contrastive_seq.models.cpc import StepPredictors, make_context_model
        from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler

        require_section(config, "views", CropViewsConfig, needed_by="method 'cpc'")
        require_section(config, "encoder", CPCWaveformEncoderConfig, needed_by="method 'cpc'")
        method = CPC(
            encoder,
            make_context_model(self.context, encoder.output_dim, self.context_dim, self.context_layers),
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
            raise MissingLabels("evaluation 'speech_probes' needs held-out utterances of a speech corpus")
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

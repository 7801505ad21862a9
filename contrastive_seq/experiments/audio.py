"""CPC on speech: config variants, the builder and the run (train, then speaker / phone probes vs MFCC and random).

Registered variants: data ``speech_corpus``, views ``crops``, encoder
``cpc_waveform``, method ``cpc``. ``contrastive-seq train configs/cpc_espeak.yaml``
reaches :func:`run_cpc_experiment` through :func:`~contrastive_seq.experiments.run.experiment_runner`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from contrastive_seq import distributed
from contrastive_seq.data.audio import SequenceDataset, SpeechCorpus, load_speech_corpus
from contrastive_seq.evaluation.speech import cpc_frame_features, mfcc_frame_features, speech_probe_scores
from contrastive_seq.experiments.run import experiment_runner, report_results
from contrastive_seq.experiments.sections import DataConfig, EncoderConfig, ExperimentConfig, MethodConfig, ViewsConfig
from contrastive_seq.losses.cpc import CPCLoss
from contrastive_seq.methods.cpc import CPC
from contrastive_seq.models.cpc import StepPredictors, make_context_model, waveform_encoder
from contrastive_seq.sampling.base import Sampler
from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler
from contrastive_seq.training.trainer import Trainer
from contrastive_seq.views.audio import CropViews


@DataConfig.register("speech_corpus")
@dataclass
class SpeechCorpusData(DataConfig):
    """A corpus in the layout of :mod:`contrastive_seq.data.audio`; every 4th utterance per speaker held out by default."""

    name: str = "speech_corpus"
    path: str = "data/espeak_speech.h5"
    sample_rate: int = 16000
    test_every: int = 4


@ViewsConfig.register("crops")
@dataclass
class CropViewsConfig(ViewsConfig):
    """Crops of ``crop_length`` samples (CPC_audio: 20480 = 128 frames of 160 samples)."""

    name: str = "crops"
    crop_length: int = 20480


@EncoderConfig.register("cpc_waveform")
@dataclass
class CPCWaveformEncoderConfig(EncoderConfig):
    """CPC_audio's five-layer strided encoder (total stride 160) of width ``hidden_dim``."""

    name: str = "cpc_waveform"
    hidden_dim: int = 256


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
    negatives: str = "batch"
    speaker_group_size: int = 4
    max_phone_frames: int = 20000


@dataclass
class CPCExperiment:
    """What the CPC run needs: the method, its sampler and views, the corpus and its split."""

    method: CPC
    sampler: Sampler
    views: CropViews
    corpus: SpeechCorpus
    train_audio: SequenceDataset
    train: list[int]
    test: list[int]


def build_cpc_experiment(config: ExperimentConfig) -> CPCExperiment:
    """Load the corpus, build CPC and check the crop length against the encoder before any training."""
    data, views, encoder_config, method_config = config.data, config.views, config.encoder, config.method
    expected = ((data, SpeechCorpusData), (views, CropViewsConfig), (encoder_config, CPCWaveformEncoderConfig))
    for section, kind in expected:
        if not isinstance(section, kind):
            raise TypeError(f"method 'cpc' needs a {kind.__name__} section, got {type(section).__name__}")
    encoder = waveform_encoder(encoder_config.hidden_dim)
    method = CPC(
        encoder,
        make_context_model(
            method_config.context, encoder.output_dim, method_config.context_dim, method_config.context_layers
        ),
        StepPredictors(method_config.context_dim, encoder.output_dim, method_config.num_steps, method_config.predictor),
        CPCLoss(method_config.num_negatives, method_config.negatives),
    )
    method.check_crop_length(views.crop_length)
    corpus = load_speech_corpus(data.path, min_length=views.crop_length, sample_rate=data.sample_rate)
    train, test = corpus.split_utterances(data.test_every)
    audio = corpus.audio.subset(train)
    if method_config.negatives == "speaker":
        sampler = SpeakerGroupedSampler(
            audio.lengths, views.crop_length, audio.speakers, method_config.speaker_group_size, audio.names
        )
    else:
        sampler = SequenceCropSampler(audio.lengths, views.crop_length, audio.speakers, audio.names)
    return CPCExperiment(method, sampler, CropViews(views.crop_length), corpus, audio, train, test)


@experiment_runner.register
def _(method_config: CPCMethodConfig):
    return run_cpc_experiment


def run_cpc_experiment(config: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Train CPC, then probe speakers and phones on held-out utterances for CPC, MFCC and the random-init CPC.

    Returns ``{representation: {"speaker_accuracy", "phone_accuracy"}}``; on rank 0
    prints the table and writes ``train.output_dir/results.json``.
    """
    torch.manual_seed(config.train.seed)
    experiment = build_cpc_experiment(config)
    untrained = copy.deepcopy(experiment.method)
    Trainer(
        experiment.method,
        config.train,
        experiment.train_audio,
        experiment.sampler,
        experiment.views,
        run_settings=config.run_settings(),
    ).fit()
    if distributed.rank() != 0:
        return {}
    rate, frames = config.data.sample_rate, config.method.max_phone_frames
    representations = {
        "cpc (trained)": cpc_frame_features(experiment.method),
        "mfcc + deltas": mfcc_frame_features(rate),
        "cpc (random init)": cpc_frame_features(untrained),
    }
    results = {
        name: speech_probe_scores(features, experiment.corpus, experiment.train, experiment.test, frames)
        for name, features in representations.items()
    }
    report_results(config, results)
    return results

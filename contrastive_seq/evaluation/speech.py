"""The CPC paper's speech probes: linear speaker identity and linear frame-level phone classification.

A :class:`FrameFeatures` turns one waveform ``(time,)`` into frames
``(frames, dim)`` and says where each frame sits (its centre sample), so that
phone labels can be read at the frame centres whatever the framing (CPC's
valid convolutions or MFCC's centred windows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from contrastive_seq.data.audio import SpeechCorpus, mfcc_features
from contrastive_seq.evaluation.probes import linear_probe_accuracy
from contrastive_seq.methods.cpc import CPC


@dataclass
class FrameFeatures:
    """``features(waveform (time,)) -> (frames, dim)``; frame j is centred on sample ``first_centre + j * hop``."""

    features: Callable[[torch.Tensor], torch.Tensor]
    first_centre: int
    hop: int

    def centres(self, frames: int) -> torch.Tensor:
        """Centre sample of each of ``frames`` frames, ``(frames,)`` int64."""
        return self.first_centre + self.hop * torch.arange(frames)


def cpc_frame_features(method: CPC) -> FrameFeatures:
    """Context vectors of a :class:`CPC` method (eval mode, no gradients), centred on each frame's receptive field."""
    encoder = method.encoder

    @torch.no_grad()
    def features(waveform: torch.Tensor) -> torch.Tensor:
        was_training = method.training
        method.eval()
        device = next(method.parameters()).device
        try:
            return method.embed_frames(waveform.view(1, -1, 1).to(device))[0].float().cpu()
        finally:
            method.train(was_training)

    return FrameFeatures(features, encoder.receptive_field // 2, encoder.stride)


def mfcc_frame_features(sample_rate: int = 16000, hop_length: int = 160) -> FrameFeatures:
    """MFCC + deltas + delta-deltas (39-d), 25 ms windows every 10 ms (see :func:`mfcc_features`)."""
    return FrameFeatures(lambda w: mfcc_features(w, sample_rate, hop_length=hop_length), 0, hop_length)


def utterance_frames(frames: FrameFeatures, corpus: SpeechCorpus, indices: Sequence[int]) -> list[torch.Tensor]:
    """Features of each utterance in ``indices``: a list of ``(frames_u, dim)`` (compute once, probe twice)."""
    return [frames.features(corpus.audio.sequence(u)[:, 0]) for u in indices]


def speaker_probe_accuracy(
    train_features: Sequence[torch.Tensor],
    train_speakers: torch.Tensor,
    test_features: Sequence[torch.Tensor],
    test_speakers: torch.Tensor,
) -> float:
    """Linear speaker classifier on utterance-averaged features.

    Features are one ``(frames_u, dim)`` per utterance (:func:`utterance_frames`),
    speakers ``(utterances,)``; returns the accuracy on the test utterances.
    """
    train_x = torch.stack([x.mean(0) for x in train_features])
    test_x = torch.stack([x.mean(0) for x in test_features])
    return linear_probe_accuracy(train_x, train_speakers, test_x, test_speakers)


def frame_phone_labels(
    frames: FrameFeatures, features: Sequence[torch.Tensor], corpus: SpeechCorpus, indices: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of utterances ``indices`` (their ``features``) with the phone at each centre: ``(n, dim), (n,)``.

    Frames whose centre lies outside the utterance are dropped; samples no
    phone covers get phone 0 (silence).
    """
    if not corpus.phones:
        raise ValueError("corpus has no phone segments: phone probing needs a corpus built with phone labels")
    kept, labels = [], []
    for u, x in zip(indices, features):
        centres = frames.centres(len(x))
        keep = centres < corpus.audio.lengths[u]
        kept.append(x[keep])
        labels.append(corpus.phones[u].labels_at(centres[keep], silence=0))
    return torch.cat(kept), torch.cat(labels)


def phone_probe_accuracy(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    max_train_frames: int = 20000,
    seed: int = 0,
) -> float:
    """Linear frame-level phone classifier on ``(frames (n, dim), phones (n,))`` pairs from :func:`frame_phone_labels`.

    At most ``max_train_frames`` training frames are used (a seeded random
    subset); returns the accuracy on every test frame.
    """
    train_x, train_y = train
    if len(train_x) > max_train_frames:
        keep = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:max_train_frames]
        train_x, train_y = train_x[keep], train_y[keep]
    return linear_probe_accuracy(train_x, train_y, test[0], test[1], max_iter=300)


def speech_probe_scores(
    frames: FrameFeatures,
    corpus: SpeechCorpus,
    train: Sequence[int],
    test: Sequence[int],
    max_train_frames: int = 20000,
) -> dict[str, float]:
    """``{"speaker_accuracy", "phone_accuracy"}`` of one representation on held-out utterances ``test``.

    Phone accuracy is left out when the corpus has no phone segments.
    """
    train_features, test_features = utterance_frames(frames, corpus, train), utterance_frames(frames, corpus, test)
    speakers = corpus.audio.speakers
    scores = {
        "speaker_accuracy": speaker_probe_accuracy(
            train_features, speakers[list(train)], test_features, speakers[list(test)]
        )
    }
    if corpus.phones:
        scores["phone_accuracy"] = phone_probe_accuracy(
            frame_phone_labels(frames, train_features, corpus, train),
            frame_phone_labels(frames, test_features, corpus, test),
            max_train_frames,
        )
    return scores

"""Audio and other sequences: soundfile I/O, resampling, MFCC / log-mel baselines, a sequence container, HDF5 corpora.

A :class:`SequenceDataset` holds many variable-length sequences (utterances,
sessions) in one ``(total_time, channels)`` tensor plus offsets, so that a
crop sampler works in a flat index space: index ``i`` is time point ``i`` of
the concatenation, and a crop starting at ``i`` never crosses into the next
sequence.

Speech corpus layout in HDF5 (format ``contrastive_seq.speech``, version 1)::

    /                      attrs: format, format_version, sample_rate, phone_names, speaker_names
    /audio                 (total_samples,) float32, the utterances concatenated
    /offsets               (utterances + 1,) int64, utterance u is audio[offsets[u]:offsets[u+1]]
    /speaker               (utterances,) int64, index into speaker_names
    /utterance/bytes, /utterance/offsets   utterance ids, UTF-8 (see ``write_strings``; older files: a str dataset)
    /phones/start, /phones/end, /phones/id   (segments,) int64, sample positions inside the utterance
    /phones/offsets        (utterances + 1,) int64, utterance u owns segments offsets[u]:offsets[u+1]

Every dataset carries a Fletcher-32 checksum (files written before it still
load); a damaged member is a ``ValueError`` naming the file and member.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import soundfile
import torch
import torchaudio

from contrastive_seq.data.hdf5 import (
    create_checked_dataset,
    member,
    open_for_reading,
    read_dataset,
    read_strings,
    write_hdf5_atomically,
    write_strings,
)

SPEECH_FORMAT = "contrastive_seq.speech"
SPEECH_FORMAT_VERSION = 1


def read_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    resample: bool = False,
    start: int = 0,
    stop: int | None = None,
) -> torch.Tensor:
    """Read a WAV / FLAC / OGG file with soundfile as mono float32 ``(time,)`` in [-1, 1].

    Args:
        path: the audio file.
        sample_rate: the rate the caller expects; ``None`` accepts the file's rate.
        resample: convert a file of another rate to ``sample_rate`` (torchaudio's
            band-limited sinc resampling) instead of raising.
        start, stop: the frames to read, at the file's own rate (default: all).

    Multichannel files are averaged to mono.

    Raises:
        FileNotFoundError naming a missing file; ValueError naming the file:
        unreadable (soundfile's reason given), no samples, NaN or infinite
        samples, or a rate other than ``sample_rate`` when ``resample`` is False.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not an audio file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"audio file {path} {what}")
    try:
        data, file_rate = soundfile.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"audio file {path} cannot be read (damaged or not WAV / FLAC / OGG): {error}") from error
    if data.size == 0:
        raise ValueError(f"audio file {path} is empty (no samples)")
    if not np.isfinite(data).all():
        raise ValueError(f"audio file {path} contains NaN or infinite samples")
    waveform = torch.from_numpy(data.mean(axis=1))
    if sample_rate is None or file_rate == sample_rate:
        return waveform
    if not resample:
        raise ValueError(
            f"audio file {path} has sample rate {file_rate} Hz, expected sample_rate={sample_rate}; "
            "pass resample=True to convert it"
        )
    return resample_waveform(waveform, file_rate, sample_rate)


def resample_waveform(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """``(..., time) -> (..., time * new_rate / orig_rate)`` with :func:`torchaudio.functional.resample`."""
    for name, value in (("orig_rate", orig_rate), ("new_rate", new_rate)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int (Hz), got {value!r}")
    return torchaudio.functional.resample(waveform, orig_rate, new_rate)


def mfcc_features(
    waveform: torch.Tensor, sample_rate: int = 16000, n_mfcc: int = 13, hop_length: int = 160, deltas: bool = True
) -> torch.Tensor:
    """MFCCs (plus deltas and delta-deltas) of a mono waveform ``(time,)`` -> ``(frames, n_mfcc * 3 or n_mfcc)``.

    25 ms windows every ``hop_length`` samples (10 ms at 16 kHz), centred:
    frame j is centred on sample ``j * hop_length``.
    """
    check_waveform("waveform", waveform)
    transform = torchaudio.transforms.MFCC(
        sample_rate=sample_rate,
        n_mfcc=n_mfcc,
        melkwargs={"n_fft": 512, "win_length": sample_rate // 40, "hop_length": hop_length, "n_mels": 40},
    )
    coefficients = transform(waveform)  # (n_mfcc, frames)
    if deltas:
        first = torchaudio.functional.compute_deltas(coefficients)
        coefficients = torch.cat([coefficients, first, torchaudio.functional.compute_deltas(first)])
    return coefficients.T.contiguous()


def log_mel_features(
    waveform: torch.Tensor, sample_rate: int = 16000, n_mels: int = 40, hop_length: int = 160
) -> torch.Tensor:
    """Log mel energies of a mono waveform ``(time,)`` -> ``(frames, n_mels)``, framed as :func:`mfcc_features`."""
    check_waveform("waveform", waveform)
    transform = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=512, win_length=sample_rate // 40, hop_length=hop_length, n_mels=n_mels
    )
    return torch.log(transform(waveform) + 1e-6).T.contiguous()


def check_waveform(name: str, waveform: object) -> torch.Tensor:
    """Require a non-empty finite floating ``(time,)`` tensor."""
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got {type(waveform).__name__}")
    if waveform.dim() != 1 or waveform.numel() == 0:
        raise ValueError(f"{name} must have shape (time,) with time > 0, got {tuple(waveform.shape)}")
    if not torch.isfinite(waveform).all():
        raise ValueError(f"{name} contains NaN or infinite samples")
    return waveform


class IndexedSequences(abc.ABC):
    """Variable-length sequences numbered by one flat index: what the crop samplers and views read.

    Index ``offsets[i] + t`` is time ``t`` of sequence ``i``. Subclasses hold
    the values (in memory, :class:`SequenceDataset`; on disk,
    :class:`~contrastive_seq.data.audio_folder.AudioFiles`) and implement
    :meth:`sequence`, :meth:`crops` and :meth:`subset`.

    Attributes:
        lengths: ``(n,)`` int64.
        offsets: ``(n + 1,)`` int64.
        speakers: ``(n,)`` int64 or ``None``.
        names: the sequences' names (file paths, utterance ids), used in errors.
    """

    lengths: torch.Tensor
    offsets: torch.Tensor
    speakers: torch.Tensor | None
    names: list[str]

    def _set_index(self, lengths: torch.Tensor, speakers: torch.Tensor | Sequence[int] | None) -> None:
        self.lengths = lengths
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        self.speakers = None
        if speakers is not None:
            speakers = torch.as_tensor(speakers)
            if speakers.shape != (len(lengths),) or speakers.dtype.is_floating_point:
                raise ValueError(
                    f"speakers must be ({len(lengths)},) integers, got {tuple(speakers.shape)} {speakers.dtype}"
                )
            self.speakers = speakers.long()

    def __len__(self) -> int:
        return self.lengths.shape[0]

    @property
    @abc.abstractmethod
    def num_channels(self) -> int:
        """Channels C of every sequence."""

    @abc.abstractmethod
    def sequence(self, i: int) -> torch.Tensor:
        """Sequence ``i`` as ``(time, channels)``."""

    @abc.abstractmethod
    def crops(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """``(N,)`` flat start indices -> ``(N, length, channels)`` crops."""

    @abc.abstractmethod
    def subset(self, indices: Sequence[int]) -> IndexedSequences:
        """The sequences at ``indices`` (with their speakers and names) as a new dataset of the same kind."""

    def check_min_length(self, min_length: int, what: str) -> None:
        """Raise naming the first sequence shorter than ``min_length`` (``what`` says why it is needed)."""
        short = torch.nonzero(self.lengths < min_length).flatten()
        if len(short):
            i = int(short[0])
            raise ValueError(
                f"{self.names[i]} has {int(self.lengths[i])} time points, fewer than {min_length} = {what} "
                f"({len(short)} of {len(self)} sequences are too short)"
            )


class SequenceDataset(IndexedSequences):
    """Variable-length sequences ``(time_i, channels)`` held as one flat tensor with offsets.

    Args:
        sequences: each ``(time,)`` (a waveform, one channel) or ``(time, channels)``;
            all with the same number of channels.
        speakers: optional ``(n,)`` integer speaker / session / subject of each sequence.
        names: optional ids of the sequences (file paths, utterance ids) used in errors.

    Attributes:
        values: ``(total_time, channels)`` float32.
        offsets: ``(n + 1,)`` int64; sequence i is ``values[offsets[i]:offsets[i + 1]]``.
        lengths: ``(n,)`` int64.
        speakers: ``(n,)`` int64 or ``None``.
    """

    def __init__(
        self,
        sequences: Sequence[torch.Tensor],
        speakers: torch.Tensor | Sequence[int] | None = None,
        names: Sequence[str] | None = None,
    ):
        if len(sequences) == 0:
            raise ValueError("sequences must hold at least one sequence, got none")
        self.names = [f"sequence {i}" for i in range(len(sequences))] if names is None else list(names)
        if len(self.names) != len(sequences):
            raise ValueError(f"names must have one entry per sequence ({len(sequences)}), got {len(self.names)}")
        columns = []
        for i, sequence in enumerate(sequences):
            if not isinstance(sequence, torch.Tensor) or not sequence.is_floating_point():
                raise TypeError(f"sequences[{i}] ({self.names[i]}) must be a floating-point tensor")
            sequence = sequence.unsqueeze(1) if sequence.dim() == 1 else sequence
            if sequence.dim() != 2 or sequence.shape[0] == 0:
                raise ValueError(
                    f"sequences[{i}] ({self.names[i]}) must have shape (time,) or (time, channels) with time > 0, "
                    f"got {tuple(sequence.shape)}"
                )
            if not torch.isfinite(sequence).all():
                raise ValueError(f"sequences[{i}] ({self.names[i]}) contains NaN or infinite values")
            columns.append(sequence.float())
        if len({c.shape[1] for c in columns}) != 1:
            raise ValueError(f"sequences must share their channel count, got {sorted({c.shape[1] for c in columns})}")
        self._set_index(torch.tensor([c.shape[0] for c in columns], dtype=torch.long), speakers)
        self.values = torch.cat(columns)

    @classmethod
    def from_recordings(cls, recordings: Sequence[object]) -> SequenceDataset:
        """One sequence ``(time, channels)`` per in-memory :class:`~contrastive_seq.data.recording.Recording`
        (session), its speaker label being the session's position and its name the session's name."""
        return cls([r.neural for r in recordings], torch.arange(len(recordings)), [r.name for r in recordings])

    @property
    def num_channels(self) -> int:
        """Channels C of every sequence."""
        return self.values.shape[1]

    def sequence(self, i: int) -> torch.Tensor:
        """Sequence ``i`` as ``(time, channels)`` (a view)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def crops(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """``(N,)`` flat start indices -> ``(N, length, channels)`` crops (one gather)."""
        return self.values[starts.unsqueeze(1) + torch.arange(length)]

    def subset(self, indices: Sequence[int]) -> SequenceDataset:
        """The sequences at ``indices`` (with their speakers and names) as a new dataset."""
        indices = list(indices)
        speakers = None if self.speakers is None else self.speakers[indices]
        return SequenceDataset([self.sequence(i) for i in indices], speakers, [self.names[i] for i in indices])


@dataclass
class PhoneSegments:
    """Phone segments of one utterance: ``start``, ``end`` (samples) and ``id``, each ``(segments,)`` int64."""

    start: torch.Tensor
    end: torch.Tensor
    id: torch.Tensor

    def labels_at(self, positions: torch.Tensor, silence: int) -> torch.Tensor:
        """Phone id at each sample position ``(frames,)``; ``silence`` where no segment covers it."""
        segment = torch.searchsorted(self.start, positions, right=True) - 1
        inside = (segment >= 0) & (positions < self.end[segment.clamp(min=0)])
        return torch.where(inside, self.id[segment.clamp(min=0)], torch.full_like(positions, silence))


@dataclass
class SpeechCorpus:
    """A speech corpus in memory: waveforms with speakers, phone segments and names.

    Attributes:
        audio: mono waveforms (channels = 1), speakers set: a :class:`SequenceDataset` in
            memory, or :class:`~contrastive_seq.data.audio_folder.AudioFiles` read from disk.
        sample_rate: Hz.
        phones: one :class:`PhoneSegments` per utterance (empty list without labels).
        phone_names, speaker_names: the label vocabularies.
    """

    audio: IndexedSequences
    sample_rate: int
    phones: list[PhoneSegments]
    phone_names: list[str]
    speaker_names: list[str]

    def split_utterances(self, test_every: int = 4) -> tuple[list[int], list[int]]:
        """Held-out utterances: every ``test_every``-th utterance of each speaker is a test one.

        Returns ``(train indices, test indices)``; every speaker appears in both when it has enough utterances.
        """
        train, test = [], []
        seen: dict[int, int] = {}
        for u, speaker in enumerate(self.audio.speakers.tolist()):
            seen[speaker] = seen.get(speaker, 0) + 1
            (test if seen[speaker] % test_every == 0 else train).append(u)
        return train, test


def save_speech_corpus(
    path: str | os.PathLike,
    waveforms: Sequence[torch.Tensor],
    speakers: Sequence[int],
    utterance_ids: Sequence[str],
    sample_rate: int,
    speaker_names: Sequence[str],
    phones: Sequence[PhoneSegments] | None = None,
    phone_names: Sequence[str] = (),
) -> Path:
    """Write a corpus in the layout of this module's docstring, atomically (see ``write_hdf5_atomically``)."""
    dataset = SequenceDataset(list(waveforms), torch.as_tensor(list(speakers)), list(utterance_ids))
    if dataset.num_channels != 1:
        raise ValueError(f"waveforms must be mono (time,), got {dataset.num_channels} channels")
    phones = list(phones) if phones is not None else []
    if phones and len(phones) != len(dataset):
        raise ValueError(f"phones must have one entry per utterance ({len(dataset)}), got {len(phones)}")

    def fill(file: h5py.File) -> None:
        file.attrs.update(
            format=SPEECH_FORMAT,
            format_version=SPEECH_FORMAT_VERSION,
            sample_rate=sample_rate,
            speaker_names=list(speaker_names),
            phone_names=list(phone_names),
        )
        create_checked_dataset(file, "audio", data=dataset.values[:, 0].numpy())
        create_checked_dataset(file, "offsets", data=dataset.offsets.numpy())
        create_checked_dataset(file, "speaker", data=dataset.speakers.numpy())
        write_strings(file, "utterance", list(utterance_ids))
        counts = [len(p.id) for p in phones]
        group = file.create_group("phones")
        phone_offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)
        create_checked_dataset(group, "offsets", data=phone_offsets)
        for field in ("start", "end", "id"):
            values = [getattr(p, field) for p in phones]
            create_checked_dataset(group, field, data=torch.cat(values).numpy() if values else np.zeros(0, np.int64))

    return write_hdf5_atomically(path, fill)


def load_speech_corpus(
    path: str | os.PathLike, min_length: int | None = None, sample_rate: int | None = None
) -> SpeechCorpus:
    """Read a corpus written by :func:`save_speech_corpus`.

    Args:
        path: the HDF5 file.
        min_length: raise naming the file and utterance when one is shorter (in samples).
        sample_rate: raise when the corpus has another rate.
    """
    path = Path(path)
    with open_for_reading(path) as file:
        if file.attrs.get("format") != SPEECH_FORMAT:
            found = file.attrs.get("format")
            raise ValueError(f"{path} is not a {SPEECH_FORMAT} file (attribute 'format' is {found!r})")
        rate = int(file.attrs["sample_rate"])
        if sample_rate is not None and rate != sample_rate:
            raise ValueError(f"{path} has sample rate {rate} Hz, expected sample_rate={sample_rate}")
        audio = torch.from_numpy(read_dataset(file, "audio", str(path), ndim=1, kinds="f"))
        offsets = read_dataset(file, "offsets", str(path), ndim=1, kinds="iu")
        utterances = read_strings(file, "utterance", str(path))
        names = [f"{path}:{u}" for u in utterances]
        if len(offsets) != len(utterances) + 1 or offsets[-1] != len(audio) or (np.diff(offsets) < 0).any():
            raise ValueError(f"{path}:offsets must hold {len(utterances) + 1} rising offsets ending at {len(audio)}")
        waveforms = [audio[offsets[u] : offsets[u + 1]] for u in range(len(utterances))]
        speakers = torch.from_numpy(read_dataset(file, "speaker", str(path), ndim=1, kinds="iu"))
        dataset = SequenceDataset(waveforms, speakers, names)
        group = member(file, "phones", str(path))
        if not isinstance(group, h5py.Group):
            raise ValueError(f"{path} has no group 'phones' (phone segments per utterance)")
        where = f"{path}:/phones"
        phone_offsets = read_dataset(group, "offsets", where, ndim=1, kinds="iu")
        columns = {
            field: torch.from_numpy(read_dataset(group, field, where, ndim=1, kinds="iu")).long()
            for field in ("start", "end", "id")
        }
        phones = [
            PhoneSegments(*(columns[f][phone_offsets[u] : phone_offsets[u + 1]] for f in ("start", "end", "id")))
            for u in range(len(phone_offsets) - 1)
        ]
        phone_names = [str(p) for p in file.attrs["phone_names"]]
        corpus = SpeechCorpus(dataset, rate, phones, phone_names, [str(s) for s in file.attrs["speaker_names"]])
    if min_length is not None:
        dataset.check_min_length(min_length, "the shortest utterance this run needs")
    return corpus

"""A folder of audio files as a speech corpus read from disk: an index up front, samples on demand.

:func:`load_audio_folder` walks a folder recursively for WAV / FLAC / OGG
files (any sample rate, mono or not), reads only their headers
(``soundfile.info``: frames and rate) and returns a
:class:`~contrastive_seq.data.audio.SpeechCorpus` whose ``audio`` is an
:class:`AudioFiles`: the lengths, offsets, speakers and names the CPC crop
samplers read, and crops read from the files when a batch asks for them (in
the DataLoader workers, where the views run). The corpus is never held in
memory; a file at another rate is read whole and resampled with
:func:`torchaudio.functional.resample`, a file at the target rate is read
only over the frames its crops need.

Speakers come from the folders (``speakers="parent"``: the file's own
folder, ``"top"``: the first folder under the root, as in LibriSpeech's
``speaker/chapter/file.flac``) or from a manifest CSV with columns ``file``
(relative to the root) and ``speaker``; then only the files it lists are
used. Phone alignments, optional, are a CSV with columns
``file, start, end, phone`` (times in seconds).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path

import soundfile
import torch

from contrastive_seq.data.audio import IndexedSequences, PhoneSegments, SpeechCorpus, read_audio

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SPEAKER_SOURCES = ("parent", "top")


def resampled_length(frames: int, file_rate: int, sample_rate: int) -> int:
    """Samples of ``frames`` at ``file_rate`` once resampled to ``sample_rate`` (torchaudio's ``ceil``)."""
    return -(-frames * sample_rate // file_rate)


class AudioFiles(IndexedSequences):
    """Mono audio files at one sample rate, indexed up front and read on demand.

    Args:
        paths: the audio files, in order.
        sample_rate: the rate every file is read at (resampled where it differs).
        speakers: optional ``(n,)`` integer speaker of each file.
        frames, file_rates: the files' frame counts and rates (from
            ``soundfile.info``); read from the headers when omitted.

    Attributes:
        paths, sample_rate, file_rates, and the :class:`IndexedSequences`
        index (``lengths`` at ``sample_rate``, ``offsets``, ``speakers``, ``names``).

    Raises:
        FileNotFoundError naming a missing file; ValueError naming a file
        soundfile cannot read.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        sample_rate: int,
        speakers: torch.Tensor | Sequence[int] | None = None,
        frames: Sequence[int] | None = None,
        file_rates: Sequence[int] | None = None,
    ):
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ValueError(f"sample_rate must be a positive int (Hz), got {sample_rate!r}")
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("paths must name at least one audio file, got none")
        if frames is None or file_rates is None:
            headers = [audio_header(p) for p in self.paths]
            frames, file_rates = [h[0] for h in headers], [h[1] for h in headers]
        self.sample_rate = sample_rate
        self.file_rates = list(file_rates)
        self.frames = list(frames)
        self.names = [str(p) for p in self.paths]
        lengths = [resampled_length(f, r, sample_rate) for f, r in zip(self.frames, self.file_rates)]
        self._set_index(torch.tensor(lengths, dtype=torch.long), speakers)

    def __repr__(self) -> str:
        return f"AudioFiles({len(self)} files, {int(self.lengths.sum())} samples at {self.sample_rate} Hz)"

    @property
    def num_channels(self) -> int:
        """1: files are read as mono."""
        return 1

    def sequence(self, i: int) -> torch.Tensor:
        """File ``i`` read whole at :attr:`sample_rate`: ``(time, 1)`` float32."""
        return self._read(i, 0, int(self.lengths[i])).unsqueeze(1)

    def _read(self, i: int, start: int, stop: int) -> torch.Tensor:
        """Samples ``start .. stop - 1`` of file ``i`` at :attr:`sample_rate`, ``(stop - start,)``."""
        if self.file_rates[i] == self.sample_rate:
            return read_audio(self.paths[i], start=start, stop=stop)
        waveform = read_audio(self.paths[i], self.sample_rate, resample=True)
        return waveform[start:stop]

    def crops(self, starts: torch.Tensor, length: int) -> torch.Tensor:
        """``(N,)`` flat start indices -> ``(N, length, 1)`` crops, each file read once per call."""
        file = torch.searchsorted(self.offsets, starts, right=True) - 1
        local = starts - self.offsets[file]
        out = torch.empty(starts.shape[0], length)
        for i in file.unique().tolist():
            rows = (file == i).nonzero().flatten()
            first, last = int(local[rows].min()), int(local[rows].max()) + length
            if last > int(self.lengths[i]):
                raise ValueError(f"a crop of {length} samples at {last - length} runs past the end of {self.names[i]}")
            span = self._read(i, first, last)
            out[rows] = span[(local[rows] - first).unsqueeze(1) + torch.arange(length)]
        return out.unsqueeze(2)

    def subset(self, indices: Sequence[int]) -> AudioFiles:
        """The files at ``indices`` (with their speakers) as a new :class:`AudioFiles`, headers not re-read."""
        indices = list(indices)
        speakers = None if self.speakers is None else self.speakers[indices]
        return AudioFiles(
            [self.paths[i] for i in indices],
            self.sample_rate,
            speakers,
            [self.frames[i] for i in indices],
            [self.file_rates[i] for i in indices],
        )


def audio_header(path: Path) -> tuple[int, int]:
    """``(frames, sample_rate)`` of an audio file from its header.

    Raises:
        FileNotFoundError naming a missing file; ValueError naming a file soundfile cannot read or an empty one.
    """
    if not path.is_file():
        raise FileNotFoundError(f"audio file {path} does not exist")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"audio file {path} cannot be read (damaged or not WAV / FLAC / OGG): {error}") from error
    if info.frames < 1:
        raise ValueError(f"audio file {path} is empty (no samples)")
    return int(info.frames), int(info.samplerate)


def _read_table(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        what = "is a directory, not a CSV file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"{path} {what}")
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    header = list(rows[0]) if rows else []
    missing = [c for c in columns if c not in header]
    if not rows or missing:
        raise ValueError(f"{path} must be a CSV with a header and columns {list(columns)}; it has {header}")
    for number, row in enumerate(rows, start=2):
        if any(not row.get(c) for c in columns):
            raise ValueError(f"{path} line {number} has an empty field among {list(columns)}: {row}")
    return rows


def _phones(path: Path, root: Path, files: list[Path], sample_rate: int) -> tuple[list[PhoneSegments], list[str]]:
    """Phone segments per file (in samples at ``sample_rate``) from an alignment CSV, and the phone names."""
    rows = _read_table(path, ("file", "start", "end", "phone"))
    position = {file.resolve(): i for i, file in enumerate(files)}
    names = sorted({row["phone"] for row in rows})
    ids = {name: i for i, name in enumerate(names)}
    per_file: list[list[tuple[int, int, int]]] = [[] for _ in files]
    for number, row in enumerate(rows, start=2):
        target = (root / row["file"]).resolve()
        if target not in position:
            raise ValueError(f"{path} line {number}: {row['file']!r} is not one of the audio files under {root}")
        try:
            start, end = float(row["start"]), float(row["end"])
        except ValueError:
            raise ValueError(f"{path} line {number}: start and end must be times in seconds, got {row}") from None
        if not 0 <= start < end or not math.isfinite(end):
            raise ValueError(f"{path} line {number}: need 0 <= start < end (seconds), got {start}, {end}")
        samples = (round(start * sample_rate), round(end * sample_rate))
        per_file[position[target]].append((*samples, ids[row["phone"]]))
    phones = []
    for segments in per_file:
        segments.sort()
        columns = torch.tensor(segments, dtype=torch.long).reshape(-1, 3)
        phones.append(PhoneSegments(columns[:, 0], columns[:, 1], columns[:, 2]))
    return phones, names


def load_audio_folder(
    path: str | os.PathLike,
    sample_rate: int = 16000,
    speakers: str | None = "parent",
    manifest: str | os.PathLike | None = None,
    alignments: str | os.PathLike | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
    min_length: int | None = None,
) -> SpeechCorpus:
    """A folder of audio files (recursive) as a :class:`SpeechCorpus` read from disk on demand.

    Args:
        path: the folder.
        sample_rate: the rate every file is read at (Hz); others are resampled.
        speakers: ``"parent"`` (the file's folder), ``"top"`` (the first
            folder under ``path``) or ``None`` (no speakers); ignored with a manifest.
        manifest: optional CSV with columns ``file`` (relative to ``path``) and
            ``speaker``: only its files are used, in its order.
        alignments: optional CSV with columns ``file``, ``start``, ``end``,
            ``phone`` (seconds); files without rows get no segments.
        extensions: the audio suffixes looked for (case-insensitive).
        min_length: raise naming the first file shorter than this (samples at ``sample_rate``).

    Returns:
        a :class:`SpeechCorpus`: ``audio`` an :class:`AudioFiles`,
        ``speaker_names`` sorted (empty without speakers), ``phones`` one
        :class:`PhoneSegments` per file with alignments (else empty).

    Raises:
        FileNotFoundError naming a missing folder, file or table;
        NotADirectoryError when ``path`` is a file; ValueError naming the file
        (and line) for an unreadable audio file, a bad table row, or a folder without audio.
    """
    root = Path(path)
    if root.is_file():
        raise NotADirectoryError(f"{root} is a file; load_audio_folder expects a folder of audio files")
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} does not exist")
    if speakers not in SPEAKER_SOURCES + (None,):
        raise ValueError(f"speakers must be one of {SPEAKER_SOURCES} or None, got {speakers!r}")
    if manifest is not None:
        rows = _read_table(Path(manifest), ("file", "speaker"))
        files = [root / row["file"] for row in rows]
        speaker_of_file = [row["speaker"] for row in rows]
    else:
        suffixes = {e.lower() for e in extensions}
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        if not files:
            raise ValueError(f"audio folder {root} holds no file ending in {sorted(suffixes)} (searched recursively)")
        speaker_of_file = None if speakers is None else [_folder_speaker(root, p, speakers) for p in files]
    speaker_names = [] if speaker_of_file is None else sorted(set(speaker_of_file))
    speaker_ids = None if speaker_of_file is None else [speaker_names.index(s) for s in speaker_of_file]
    audio = AudioFiles(files, sample_rate, speaker_ids)
    phones, phone_names = ([], []) if alignments is None else _phones(Path(alignments), root, files, sample_rate)
    if min_length is not None:
        audio.check_min_length(min_length, "the shortest file this run needs")
    return SpeechCorpus(audio, sample_rate, phones, phone_names, speaker_names)


def _folder_speaker(root: Path, file: Path, speakers: str) -> str:
    parts = file.relative_to(root).parts
    if len(parts) < 2:
        raise ValueError(
            f"{file} lies directly in {root}, so it has no speaker folder; put each speaker's files in a folder "
            "of their own, give a manifest, or pass speakers=None"
        )
    return parts[-2] if speakers == "parent" else parts[0]

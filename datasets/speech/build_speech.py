"""Build a synthetic multi-speaker speech corpus with frame-level phone labels from espeak-ng and flite.

Speakers are espeak-ng voice variant x pitch x speed combinations of its
English voice, and flite voice x F0 shift x duration stretch combinations; each
speaker reads the same sentences. Phone boundaries come from the synthesisers
themselves: libespeak-ng's phoneme events (``espeak_synth.py``) and flite's
``-psdur`` segment end times (``flite_synth.py``). Both are mapped onto one
CMU / ARPAbet phone inventory (``phone_sets.py``); ``--phones ipa`` keeps
espeak-ng's IPA names instead (espeak-ng speakers only). Audio is resampled to
16 kHz and written with :func:`contrastive_seq.data.audio.save_speech_corpus`.

Usage (needs Debian's ``espeak-ng`` and ``flite``: ``apt-get install -y espeak-ng flite``)::

    python datasets/speech/build_speech.py --out data/espeak_speech.h5
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from contrastive_seq.data.audio import PhoneSegments, resample_waveform, save_speech_corpus

from espeak_synth import EspeakSynthesizer  # these three modules sit next to this script
from flite_synth import FliteSynthesizer
from phone_sets import CMU_PHONES, ESPEAK_IPA_TO_CMU, FLITE_TO_CMU, SILENCE, to_cmu

SAMPLE_RATE = 16000
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
PITCHES = (25, 50, 75)
RATES = (140, 185)
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
FLITE_F0_SHIFTS = (0.85, 1.0, 1.2)
FLITE_STRETCHES = (0.85, 1.15)
FLITE_FIXED_F0 = ("rms",)  # flite 2.2 ignores f0_shift for these voices (identical audio): one pitch, 1.0
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore every summer.",
    "A good decision is based on knowledge and not on numbers.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "Four hours of steady work faced us.",
    "The box was thrown beside the parked truck.",
)


def phone_segments(
    events: list[tuple[int, str]], num_samples: int, phone_ids: dict[str, int], ratio: float
) -> PhoneSegments:
    """Segments from phone events ``[(start sample, phone), ...]``: phone i runs from its event to the next one.

    Events with an empty name mark the end of speech; positions are scaled by
    ``ratio`` (new rate / the synthesiser's rate) and clipped to ``num_samples``.
    Phones missing from ``phone_ids`` are added with the next id.
    """
    starts, ends, ids = [], [], []
    for (start, phone), (stop, _) in zip(events, events[1:] + [(num_samples / ratio, "")]):
        begin, end = min(round(start * ratio), num_samples), min(round(stop * ratio), num_samples)
        if phone and end > begin:
            starts.append(begin)
            ends.append(end)
            ids.append(phone_ids.setdefault(phone, len(phone_ids)))
    return PhoneSegments(*(torch.tensor(column, dtype=torch.long) for column in (starts, ends, ids)))


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    ``synthesiser`` "espeak": ``voice`` an espeak-ng voice (``en-us+m1``), ``pitch``
    its ``-p`` (0-99), ``speed`` words per minute. "flite": ``voice`` a flite voice,
    ``pitch`` the F0 factor ``f0_shift``, ``speed`` the duration factor
    ``duration_stretch`` (above 1 is slower).
    """

    synthesiser: str
    voice: str
    pitch: float
    speed: float

    @property
    def name(self) -> str:
        """``en-us+m1_p25_s140`` (espeak-ng) or ``flite-slt_f1.20_d0.85``."""
        if self.synthesiser == "espeak":
            return f"{self.voice}_p{self.pitch:g}_s{self.speed:g}"
        return f"flite-{self.voice}_f{self.pitch:.2f}_d{self.speed:.2f}"


def first(name: str, values: Sequence, count: int) -> Sequence:
    """``values[:count]``; raises ValueError naming ``name`` unless 0 <= count <= len(values)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(values):
        raise ValueError(f"{name} must be an int in [0, {len(values)}], got {count!r}")
    return values[:count]


def espeak_speakers(variants: int, pitches: int, rates: int) -> list[Speaker]:
    """espeak-ng's ``en-us`` voice: the first ``variants`` x ``pitches`` x ``rates`` of the module's tables."""
    combos = itertools.product(
        first("variants", VARIANTS, variants), first("pitches", PITCHES, pitches), first("rates", RATES, rates)
    )
    return [Speaker("espeak", f"en-us+{variant}", pitch, rate) for variant, pitch, rate in combos]


def flite_speakers(voices: Sequence[str], f0_shifts: int, stretches: int) -> list[Speaker]:
    """Each flite voice x the first ``f0_shifts`` F0 factors x the first ``stretches`` duration factors.

    Voices in ``FLITE_FIXED_F0`` get F0 factor 1.0 only (flite leaves their F0 unchanged).
    """
    shifts = first("flite_pitches", FLITE_F0_SHIFTS, f0_shifts)
    durations = first("flite_stretches", FLITE_STRETCHES, stretches)
    if len(set(voices)) != len(voices):
        raise ValueError(f"flite voices must not repeat, got {list(voices)}")
    speakers = []
    for voice in voices:
        voice_shifts = (1.0,) if voice in FLITE_FIXED_F0 and shifts else shifts
        speakers += [Speaker("flite", voice, f0, stretch) for f0 in voice_shifts for stretch in durations]
    return speakers


class Synthesisers:
    """The synthesisers ``speakers`` need, each loaded once; phones mapped onto the corpus inventory.

    Args:
        speakers: who will speak; flite voices are checked against flite's list here.
        phones: "cmu" (map onto ``phone_sets.CMU_PHONES``) or "ipa" (espeak-ng's names; espeak speakers only).
    """

    def __init__(self, speakers: Sequence[Speaker], phones: str):
        if phones not in ("cmu", "ipa"):
            raise ValueError(f"phones must be 'cmu' or 'ipa', got {phones!r}")
        kinds = {speaker.synthesiser for speaker in speakers}
        if kinds - {"espeak", "flite"}:
            raise ValueError(f"speaker synthesisers must be 'espeak' or 'flite', got {sorted(kinds)}")
        if phones == "ipa" and "flite" in kinds:
            raise ValueError("phones='ipa' keeps espeak-ng's IPA names: use it without flite voices, or phones='cmu'")
        self.phones = phones
        self.espeak = EspeakSynthesizer() if "espeak" in kinds else None
        self.flite = FliteSynthesizer() if "flite" in kinds else None
        for speaker in speakers:
            if speaker.synthesiser == "flite":
                self.flite.check_voice(speaker.voice)

    def speak(self, speaker: Speaker, text: str) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
        """``(waveform (time,) float32, its sample rate, [(start sample, phone), ...])`` in the corpus's phone names."""
        if speaker.synthesiser == "espeak":
            samples, events = self.espeak.synthesize(text, speaker.voice, int(speaker.pitch), int(speaker.speed))
            rate, table = self.espeak.sample_rate, ESPEAK_IPA_TO_CMU
        else:
            samples, rate, events = self.flite.synthesize(text, speaker.voice, speaker.pitch, speaker.speed)
            table = FLITE_TO_CMU
        if self.phones == "cmu":
            events = [(position, to_cmu(phone, table, speaker.synthesiser)) for position, phone in events]
        return samples, rate, events


def build(out: Path, speakers: Sequence[Speaker], sentences: int, phones: str = "cmu") -> Path:
    """Synthesise every speaker x the first ``sentences`` sentences and write the corpus; returns ``out``.

    Phone ids: with "cmu" the fixed order of ``CMU_PHONES`` (``sil`` = 0, every phone
    listed even when unused, so ids agree across builds); with "ipa" ``sil`` = 0, then
    order of first appearance.
    """
    texts = first("sentences", SENTENCES, sentences)
    if not speakers or not texts:
        raise ValueError(f"need at least one speaker and one sentence, got {len(speakers)} and {len(texts)}")
    synthesisers = Synthesisers(speakers, phones)
    phone_ids = {name: i for i, name in enumerate(CMU_PHONES)} if phones == "cmu" else {SILENCE: 0}
    waveforms, speaker_ids, utterances, segments = [], [], [], []
    for index, speaker in enumerate(speakers):
        for u, text in enumerate(texts):
            samples, rate, events = synthesisers.speak(speaker, text)
            waveform = resample_waveform(torch.from_numpy(samples), rate, SAMPLE_RATE)
            waveforms.append(waveform)
            speaker_ids.append(index)
            utterances.append(f"{speaker.name}/{u:02d}")
            segments.append(phone_segments(events, len(waveform), phone_ids, SAMPLE_RATE / rate))
    out.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(phone_ids, key=phone_ids.get)
    speaker_names = [speaker.name for speaker in speakers]
    return save_speech_corpus(out, waveforms, speaker_ids, utterances, SAMPLE_RATE, speaker_names, segments, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/espeak_speech.h5"))
    parser.add_argument("--variants", type=int, default=8, help=f"espeak-ng voice variants (at most {len(VARIANTS)})")
    parser.add_argument("--pitches", type=int, default=3, help=f"espeak-ng pitch levels (at most {len(PITCHES)})")
    parser.add_argument("--rates", type=int, default=2, help=f"espeak-ng speaking rates (at most {len(RATES)})")
    parser.add_argument(
        "--flite-voices", nargs="*", default=list(FLITE_VOICES), help="flite voices (none: espeak-ng only)"
    )
    parser.add_argument(
        "--flite-pitches", type=int, default=3, help=f"flite F0 factors from {FLITE_F0_SHIFTS} (first N)"
    )
    parser.add_argument(
        "--flite-stretches", type=int, default=2, help=f"flite duration factors from {FLITE_STRETCHES} (first N)"
    )
    parser.add_argument("--sentences", type=int, default=8, help=f"sentences per speaker (at most {len(SENTENCES)})")
    parser.add_argument(
        "--phones", choices=("cmu", "ipa"), default="cmu", help="phone inventory (ipa: espeak-ng speakers only)"
    )
    args = parser.parse_args()
    speakers = espeak_speakers(args.variants, args.pitches, args.rates)
    speakers += flite_speakers(args.flite_voices, args.flite_pitches, args.flite_stretches)
    began = time.perf_counter()
    path = build(args.out, speakers, args.sentences, args.phones)
    seconds = time.perf_counter() - began
    print(f"wrote {path}: {len(speakers)} speakers x {args.sentences} sentences in {seconds:.1f} s")


if __name__ == "__main__":
    main()

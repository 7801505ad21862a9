"""Build a synthetic multi-speaker speech corpus with frame-level phone labels from espeak-ng.

Speakers are voice variant x pitch x speed combinations of espeak-ng's
English voice; each speaker reads the same sentences. Phone boundaries come
from libespeak-ng's phoneme events (see ``espeak_synth.py``). Audio is
resampled to 16 kHz and written with
:func:`contrastive_seq.data.audio.save_speech_corpus`.

Usage (needs Debian's ``espeak-ng``: ``apt-get install -y espeak-ng``)::

    python datasets/speech/build_speech.py --out data/espeak_speech.h5
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from contrastive_seq.data.audio import PhoneSegments, resample_waveform, save_speech_corpus

SAMPLE_RATE = 16000
SILENCE = "sil"
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
PITCHES = (25, 50, 75)
RATES = (140, 185)
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
    """Segments from espeak's phoneme events: phone i runs from its event to the next one (any phone).

    Events with an empty name mark the end of speech; positions are scaled by
    ``ratio`` (new rate / espeak's rate) and clipped to ``num_samples``.
    """
    starts, ends, ids = [], [], []
    for (start, phone), (stop, _) in zip(events, events[1:] + [(num_samples / ratio, "")]):
        begin, end = min(round(start * ratio), num_samples), min(round(stop * ratio), num_samples)
        if phone and end > begin:
            starts.append(begin)
            ends.append(end)
            ids.append(phone_ids.setdefault(phone, len(phone_ids)))
    return PhoneSegments(*(torch.tensor(column, dtype=torch.long) for column in (starts, ends, ids)))


def build(out: Path, variants: int, pitches: int, rates: int, sentences: int) -> Path:
    """Synthesise every speaker x sentence and write the corpus; returns ``out``."""
    from espeak_synth import EspeakSynthesizer  # next to this script

    synth = EspeakSynthesizer()
    ratio = SAMPLE_RATE / synth.sample_rate
    phone_ids = {SILENCE: 0}
    waveforms, speakers, utterances, phones, speaker_names = [], [], [], [], []
    combos = itertools.product(VARIANTS[:variants], PITCHES[:pitches], RATES[:rates])
    for speaker, (variant, pitch, rate) in enumerate(combos):
        speaker_names.append(f"en-us+{variant}_p{pitch}_s{rate}")
        for u, text in enumerate(SENTENCES[:sentences]):
            samples, events = synth.synthesize(text, f"en-us+{variant}", pitch, rate)
            waveform = resample_waveform(torch.from_numpy(samples), synth.sample_rate, SAMPLE_RATE)
            waveforms.append(waveform)
            speakers.append(speaker)
            utterances.append(f"{speaker_names[-1]}/{u:02d}")
            phones.append(phone_segments(events, len(waveform), phone_ids, ratio))
    out.parent.mkdir(parents=True, exist_ok=True)
    names = sorted(phone_ids, key=phone_ids.get)
    return save_speech_corpus(out, waveforms, speakers, utterances, SAMPLE_RATE, speaker_names, phones, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/espeak_speech.h5"))
    parser.add_argument("--variants", type=int, default=8, help=f"voice variants (at most {len(VARIANTS)})")
    parser.add_argument("--pitches", type=int, default=3, help=f"pitch levels (at most {len(PITCHES)})")
    parser.add_argument("--rates", type=int, default=2, help=f"speaking rates (at most {len(RATES)})")
    parser.add_argument("--sentences", type=int, default=8, help=f"sentences per speaker (at most {len(SENTENCES)})")
    args = parser.parse_args()
    path = build(args.out, args.variants, args.pitches, args.rates, args.sentences)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

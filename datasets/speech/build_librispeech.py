"""Turn a LibriSpeech split (already downloaded) into the library's speech HDF5 layout.

Expected layout (as in the openslr.org/12 archives)::

    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Usage::

    python datasets/speech/build_librispeech.py --root LibriSpeech --split train-clean-100 --out data/librispeech.h5

Every file must be 16 kHz (the LibriSpeech rate); ``--resample`` converts other rates.
LibriSpeech has no phone alignments, so the corpus has no phone segments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from contrastive_seq.data.audio import read_audio, save_speech_corpus

SAMPLE_RATE = 16000


def librispeech_files(root: Path, split: str) -> list[Path]:
    """The split's ``.flac`` files in sorted order; raises naming the folder when there are none."""
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(f"LibriSpeech split folder {folder} does not exist")
    files = sorted(folder.glob("*/*/*.flac"))
    if not files:
        raise ValueError(f"no <speaker>/<chapter>/*.flac files under {folder}")
    return files


def build(root: Path, split: str, out: Path, resample: bool = False, max_files: int | None = None) -> Path:
    """Read the split (speaker = the first folder level) and write the corpus to ``out``."""
    files = librispeech_files(root, split)[:max_files]
    speaker_names = sorted({f.parent.parent.name for f in files})
    speaker_index = {name: i for i, name in enumerate(speaker_names)}
    waveforms = [read_audio(f, SAMPLE_RATE, resample=resample) for f in files]
    speakers = [speaker_index[f.parent.parent.name] for f in files]
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_speech_corpus(out, waveforms, speakers, [f.stem for f in files], SAMPLE_RATE, speaker_names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the LibriSpeech folder")
    parser.add_argument("--split", default="train-clean-100")
    parser.add_argument("--out", type=Path, default=Path("data/librispeech.h5"))
    parser.add_argument("--resample", action="store_true")
    parser.add_argument("--max-files", type=int, default=None)
    args = parser.parse_args()
    print(f"wrote {build(args.root, args.split, args.out, args.resample, args.max_files)}")


if __name__ == "__main__":
    main()

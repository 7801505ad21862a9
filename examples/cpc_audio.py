"""CPC on synthetic speech: build a small espeak-ng corpus, train CPC, probe speakers and phones.

Compares CPC context vectors with MFCCs and with a randomly initialised CPC
on held-out utterances (every 4th utterance of each speaker):

    python examples/cpc_audio.py --corpus data/espeak_speech.h5 --steps 300

The corpus is built first when the file does not exist (needs Debian's espeak-ng).
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from pathlib import Path

import torch

from contrastive_seq.data.audio import load_speech_corpus
from contrastive_seq.evaluation.speech import (
    cpc_frame_features,
    mfcc_frame_features,
    speech_probe_scores,
)
from contrastive_seq.losses.cpc import CPCLoss
from contrastive_seq.methods.cpc import CPC
from contrastive_seq.models.cpc import StepPredictors, make_context_model, waveform_encoder
from contrastive_seq.sampling.sequences import SequenceCropSampler, SpeakerGroupedSampler
from contrastive_seq.training import Trainer, TrainerConfig
from contrastive_seq.views.audio import CropViews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/espeak_speech.h5"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128, help="encoder and context width (CPC_audio: 256)")
    parser.add_argument("--context", default="gru", choices=("gru", "lstm", "transformer"))
    parser.add_argument("--steps-ahead", type=int, default=12, help="K")
    parser.add_argument("--frames", type=int, default=64, help="frames per training crop")
    parser.add_argument("--negatives", default="batch", choices=("batch", "sequence", "speaker"))
    parser.add_argument("--num-negatives", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4, help="CPC_audio uses 2e-4; 2e-3 collapsed the encoder here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-phone-frames", type=int, default=10000, help="training frames of the phone probe")
    args = parser.parse_args()

    if not args.corpus.exists():
        builder = Path(__file__).resolve().parents[1] / "datasets" / "speech" / "build_speech.py"
        subprocess.run([sys.executable, str(builder), "--out", str(args.corpus)], check=True)
    corpus = load_speech_corpus(args.corpus, sample_rate=16000)
    train, test = corpus.split_utterances(test_every=4)
    train_audio = corpus.audio.subset(train)

    torch.manual_seed(args.seed)
    encoder = waveform_encoder(args.hidden)
    method = CPC(
        encoder,
        make_context_model(args.context, args.hidden, args.hidden),
        StepPredictors(args.hidden, args.hidden, args.steps_ahead),
        CPCLoss(args.num_negatives, args.negatives),
    )
    random_method = copy.deepcopy(method)
    crop_length = encoder.receptive_field + (args.frames - 1) * encoder.stride
    method.check_crop_length(crop_length)
    if args.negatives == "speaker":
        sampler = SpeakerGroupedSampler(train_audio.lengths, crop_length, train_audio.speakers, 4, train_audio.names)
    else:
        sampler = SequenceCropSampler(train_audio.lengths, crop_length, train_audio.speakers, train_audio.names)
    config = TrainerConfig(
        max_steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=min(20, args.steps),
        checkpoint_every=None, log_every=25, seed=args.seed, device="cpu",
    )
    final = Trainer(method, config, train_audio, sampler, CropViews(crop_length)).fit()
    shown = ("loss", "parts/accuracy", "parts/accuracy_k1", f"parts/accuracy_k{args.steps_ahead}")
    print("final training metrics:", {k: round(final[k], 4) for k in shown}, flush=True)

    rows = {
        "CPC (trained)": cpc_frame_features(method),
        "MFCC + deltas": mfcc_frame_features(),
        "CPC (random init)": cpc_frame_features(random_method),
    }
    print(f"{'representation':20s} speaker_acc  phone_acc   ({len(train)} train / {len(test)} test utterances, "
          f"{len(corpus.speaker_names)} speakers, {len(corpus.phone_names)} phones)")
    for name, frames in rows.items():
        scores = speech_probe_scores(frames, corpus, train, test, args.max_phone_frames)
        print(f"{name:20s} {scores['speaker_accuracy']:.4f}       {scores['phone_accuracy']:.4f}", flush=True)


if __name__ == "__main__":
    main()

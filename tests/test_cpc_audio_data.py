"""Audio I/O, features, the speech HDF5 corpus and the LibriSpeech recipe on a tiny fixture; bad input named."""

import importlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from contrastive_seq.data.audio import (
    PhoneSegments,
    SequenceDataset,
    load_speech_corpus,
    log_mel_features,
    mfcc_features,
    read_audio,
    save_speech_corpus,
)
from contrastive_seq.evaluation.speech import frame_phone_labels, mfcc_frame_features, utterance_frames
from contrastive_seq.losses.cpc import CPCLoss
from contrastive_seq.methods.cpc import CPC
from contrastive_seq.models.cpc import StepPredictors, make_context_model, waveform_encoder

ROOT = Path(__file__).resolve().parents[1]


def tone(seconds=0.5, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_read_audio_checks_and_resamples(tmp_path):
    path = tmp_path / "a.wav"
    soundfile.write(path, tone(rate=8000), 8000)
    with pytest.raises(ValueError, match=r"a\.wav has sample rate 8000 Hz, expected sample_rate=16000"):
        read_audio(path, 16000)
    resampled = read_audio(path, 16000, resample=True)
    assert resampled.shape == (8000,)
    # a resampled tone keeps its frequency: the spectrum peaks at 440 Hz
    spectrum = torch.fft.rfft(resampled).abs()
    assert abs(int(spectrum.argmax()) * 16000 / 8000 - 440) <= 2
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(ValueError, match=r"empty\.wav is empty"):
        read_audio(empty)
    bad = tmp_path / "nan.wav"
    samples = tone()
    samples[10] = np.nan
    soundfile.write(bad, samples, 16000, subtype="FLOAT")
    with pytest.raises(ValueError, match=r"nan\.wav contains NaN"):
        read_audio(bad)


def test_features_frame_every_10_ms():
    waveform = torch.from_numpy(tone(1.0))
    assert mfcc_features(waveform).shape == (101, 39)
    assert log_mel_features(waveform).shape == (101, 40)
    with pytest.raises(ValueError, match="waveform contains NaN"):
        mfcc_features(torch.tensor([0.0, float("nan")]))


def test_corpus_round_trip_and_phone_labels(tmp_path):
    waveforms = [torch.from_numpy(tone(0.3)), torch.from_numpy(tone(0.2, freq=300))]
    phones = [
        PhoneSegments(torch.tensor([0, 1600]), torch.tensor([1600, 4000]), torch.tensor([1, 2])),
        PhoneSegments(torch.tensor([800]), torch.tensor([2400]), torch.tensor([2])),
    ]
    path = save_speech_corpus(tmp_path / "c.h5", waveforms, [0, 1], ["u0", "u1"], 16000, ["s0", "s1"], phones, ["sil", "a", "b"])
    corpus = load_speech_corpus(path, sample_rate=16000)
    assert torch.equal(corpus.audio.sequence(1)[:, 0], waveforms[1])
    assert corpus.phone_names == ["sil", "a", "b"] and corpus.speaker_names == ["s0", "s1"]
    frames = mfcc_frame_features()
    _, labels = frame_phone_labels(frames, utterance_frames(frames, corpus, [1]), corpus, [1])
    centres = frames.centres(len(labels))
    expected = torch.where((centres >= 800) & (centres < 2400), 2, 0)
    assert torch.equal(labels, expected)
    with pytest.raises(ValueError, match=r"c\.h5:u1 has 3200 time points"):
        load_speech_corpus(path, min_length=4000)
    with pytest.raises(ValueError, match="expected sample_rate=8000"):
        load_speech_corpus(path, sample_rate=8000)


def test_librispeech_recipe_on_a_tiny_fixture(tmp_path):
    recipe = load_recipe("build_librispeech")
    for speaker, chapter, count in (("19", "198", 2), ("26", "495", 1)):
        folder = tmp_path / "LibriSpeech" / "dev-clean" / speaker / chapter
        folder.mkdir(parents=True)
        for u in range(count):
            soundfile.write(folder / f"{speaker}-{chapter}-{u:04d}.flac", tone(0.1 * (u + 1)), 16000)
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("")
    out = recipe.build(tmp_path / "LibriSpeech", "dev-clean", tmp_path / "libri.h5")
    corpus = load_speech_corpus(out)
    assert corpus.speaker_names == ["19", "26"]
    assert corpus.audio.speakers.tolist() == [0, 0, 1]
    assert corpus.audio.lengths.tolist() == [1600, 3200, 1600]
    with pytest.raises(FileNotFoundError, match="test-other"):
        recipe.build(tmp_path / "LibriSpeech", "test-other", tmp_path / "x.h5")


def test_crops_shorter_than_receptive_field_plus_k_steps_are_refused():
    method = CPC(waveform_encoder(8), make_context_model("gru", 8, 8), StepPredictors(8, 8, 12), CPCLoss(4))
    assert method.min_crop_length() == 465 + 12 * 160
    with pytest.raises(ValueError, match="crop_length=2000 is shorter than the encoder's receptive field"):
        method.check_crop_length(2000)
    with pytest.raises(ValueError, match=r"sequences\[1\] \(b\.wav\) contains NaN"):
        SequenceDataset([torch.zeros(5), torch.tensor([0.0, float("inf")])], names=["a.wav", "b.wav"])


def test_cpc_experiment_from_config_runs_end_to_end(tmp_path):
    from contrastive_seq.experiments import load_experiment_config, run_experiment

    rng = np.random.default_rng(0)
    waveforms, speakers, phones = [], [], []
    for speaker in range(3):
        for _ in range(4):
            waveforms.append(torch.from_numpy(tone(0.4, freq=200 + 150 * speaker) + 0.01 * rng.standard_normal(6400).astype(np.float32)))
            speakers.append(speaker)
            phones.append(PhoneSegments(torch.tensor([0, 3200]), torch.tensor([3200, 6400]), torch.tensor([1, 2])))
    corpus = save_speech_corpus(
        tmp_path / "tiny.h5", waveforms, speakers, [f"u{i}" for i in range(12)], 16000, ["a", "b", "c"], phones, ["sil", "x", "y"]
    )
    overrides = [
        f"data.path={corpus}", "views.crop_length=1425", "encoder.hidden_dim=8", "method.context_dim=8",
        "method.num_steps=3", "method.num_negatives=4", "train.max_steps=2", "train.warmup_steps=0", "train.batch_size=4",
        f"train.output_dir={tmp_path / 'run'}", "train.progress=false",
    ]
    config = load_experiment_config(ROOT / "configs/cpc_espeak.yaml", overrides)
    results = run_experiment(config)
    assert set(results) == {"cpc (trained)", "mfcc + deltas", "cpc (random init)"}
    assert all(0 <= r["speaker_accuracy"] <= 1 and 0 <= r["phone_accuracy"] <= 1 for r in results.values())
    assert (tmp_path / "run" / "results.json").exists()
    assert run_experiment(config) == results  # a finished run trains nothing and returns its stored results
    from contrastive_seq.export import export_encoder, load_encoder

    encoder = load_encoder(export_encoder(tmp_path / "run", tmp_path / "cpc.pt"))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    trained = CPC(waveform_encoder(8), make_context_model("gru", 8, 8), StepPredictors(8, 8, 3), CPCLoss(4))
    trained.load_state_dict(state)  # the run's own model, loaded by hand from its checkpoint
    with torch.no_grad():
        frames = trained.eval().encoder(waveforms[0].view(1, -1, 1))[0].numpy()  # z_t (frames, 8)
        context = trained.embed_frames(waveforms[0].view(1, -1, 1))[0].numpy()  # c_t (frames, 8)
    assert encoder.features == ("frame", "context")
    np.testing.assert_allclose(encoder.embed(waveforms[0].numpy()), context, atol=1e-5)  # CPC's default: context
    np.testing.assert_allclose(encoder.embed(waveforms[0].numpy(), features="frame"), frames, atol=1e-5)
    assert np.abs(context - frames).max() > 1e-3  # two different representations
    with pytest.raises(ValueError, match=r"features='contxt': the encoder of method 'cpc' offers \['frame', 'context'\]"):
        encoder.embed(waveforms[0].numpy(), features="contxt")
    too_short = load_experiment_config(ROOT / "configs/cpc_espeak.yaml", overrides[:1] + ["views.crop_length=1000"])
    with pytest.raises(ValueError, match="crop_length=1000 is shorter"):
        run_experiment(too_short)


def load_recipe(name):
    recipes = str(ROOT / "datasets/speech")
    if recipes not in sys.path:
        sys.path.insert(0, recipes)  # the recipes import their sibling modules by name, as when run as scripts
    return importlib.import_module(name)


def test_phone_segments_run_from_one_event_to_the_next():
    recipe = load_recipe("build_speech")
    ids = {"sil": 0}
    events = [(100, "a"), (300, "b"), (500, ""), (520, "")]
    segments = recipe.phone_segments(events, num_samples=400, phone_ids=ids, ratio=0.5)
    assert segments.start.tolist() == [50, 150] and segments.end.tolist() == [150, 250]
    assert segments.id.tolist() == [1, 2] and ids == {"sil": 0, "a": 1, "b": 2}


def test_espeak_phoneme_events_cover_the_utterance():
    import ctypes.util

    if ctypes.util.find_library("espeak-ng") is None:
        pytest.skip("libespeak-ng is not installed (apt-get install -y espeak-ng)")
    synth = load_recipe("espeak_synth").EspeakSynthesizer()
    samples, events = synth.synthesize("A cat sat.", "en-us+m3", 50, 175)
    phones = [phone for _, phone in events if phone]
    positions = [position for position, _ in events]
    assert len(samples) > 0.3 * synth.sample_rate and np.isfinite(samples).all()
    assert len(phones) >= 5 and positions == sorted(positions) and positions[-1] <= len(samples)


needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install -y flite)")


def test_parse_psdur_turns_end_times_into_start_events():
    flite = load_recipe("flite_synth")
    phones, ends = ["pau", "dh", "ax"], [0.220, 0.254, 0.304]
    starts = [0.0] + ends[:-1]
    expected = [(round(start * 16000), phone) for start, phone in zip(starts, phones)] + [(round(ends[-1] * 16000), "")]
    assert flite.parse_psdur("pau:0.220 dh:0.254\nax:0.304\n", 16000) == expected
    assert flite.parse_psdur("", 16000) == []
    with pytest.raises(ValueError, match="'dh:abc' is not phone:seconds"):
        flite.parse_psdur("pau:0.2 dh:abc", 16000)
    with pytest.raises(ValueError, match="'dh:0.1' has no phone or ends before"):
        flite.parse_psdur("pau:0.2 dh:0.1", 16000)


def test_both_phone_maps_cover_the_cmu_inventory():
    sets = load_recipe("phone_sets")
    phones = set(sets.CMU_PHONES)
    assert sets.CMU_PHONES[0] == sets.SILENCE and len(phones) == len(sets.CMU_PHONES) == 41
    assert set(sets.ESPEAK_IPA_TO_CMU.values()) == phones - {sets.SILENCE}
    assert set(sets.FLITE_TO_CMU.values()) == phones
    assert sets.to_cmu("ɾ", sets.ESPEAK_IPA_TO_CMU, "espeak") == "t" and sets.to_cmu("", {}, "flite") == ""
    with pytest.raises(ValueError, match="flite phone 'brth' has no entry"):
        sets.to_cmu("brth", sets.FLITE_TO_CMU, "flite")


def test_flite_speaker_grid():
    recipe = load_recipe("build_speech")
    speakers = recipe.flite_speakers(["kal16", "rms"], f0_shifts=3, stretches=2)
    grid = [(s.voice, s.pitch, s.speed) for s in speakers]
    expected = [("kal16", f, d) for f in recipe.FLITE_F0_SHIFTS for d in recipe.FLITE_STRETCHES]
    assert grid == expected + [("rms", 1.0, d) for d in recipe.FLITE_STRETCHES]
    assert len({s.name for s in speakers}) == len(speakers) and speakers[0].name == "flite-kal16_f0.85_d0.85"
    with pytest.raises(ValueError, match=r"flite_pitches must be an int in \[0, 3\], got 4"):
        recipe.flite_speakers(["slt"], 4, 1)
    with pytest.raises(ValueError, match="must not repeat"):
        recipe.flite_speakers(["slt", "slt"], 1, 1)


@needs_flite
def test_flite_phone_timings_follow_the_audio():
    synth = load_recipe("flite_synth").FliteSynthesizer()
    samples, rate, events = synth.synthesize("A cat sat.", "slt")
    stretched, _, stretched_events = synth.synthesize("A cat sat.", "slt", duration_stretch=1.5)
    higher, _, _ = synth.synthesize("A cat sat.", "slt", f0_shift=1.3)
    positions, phones = [p for p, _ in events], [phone for _, phone in events]
    assert rate == 16000 and np.isfinite(samples).all() and positions == sorted(positions)
    assert phones[0] == phones[-2] == "pau" and phones[-1] == "" and len(phones) >= 7
    assert abs(positions[-1] - len(samples)) <= 0.01 * rate  # the last phone ends with the audio (10 ms)
    assert [phone for _, phone in stretched_events] == phones
    assert abs(stretched_events[-1][0] / positions[-1] - 1.5) < 0.05
    assert abs(len(stretched) / len(samples) - 1.5) < 0.05
    assert len(higher) != len(samples) or not np.array_equal(higher, samples)
    with pytest.raises(ValueError, match="voice must be one of flite's voices"):
        synth.synthesize("A cat sat.", "nosuch")


@needs_flite
def test_build_puts_espeak_and_flite_speakers_in_one_phone_set(tmp_path):
    import ctypes.util

    if ctypes.util.find_library("espeak-ng") is None:
        pytest.skip("libespeak-ng is not installed (apt-get install -y espeak-ng)")
    recipe = load_recipe("build_speech")
    speakers = recipe.espeak_speakers(1, 1, 1) + recipe.flite_speakers(["slt"], 1, 1)
    corpus = load_speech_corpus(recipe.build(tmp_path / "s.h5", speakers, sentences=1), sample_rate=16000)
    assert corpus.speaker_names == ["en-us+m1_p25_s140", "flite-slt_f0.85_d0.85"]
    assert corpus.phone_names == list(load_recipe("phone_sets").CMU_PHONES)
    sequences = []
    for u in range(2):
        segments, length = corpus.phones[u], int(corpus.audio.lengths[u])
        assert (segments.start < segments.end).all() and int(segments.end.max()) <= length
        assert (segments.start[1:] >= segments.end[:-1]).all()
        sequences.append([corpus.phone_names[i] for i in segments.id.tolist() if i != 0])
    assert sequences[0][:4] == sequences[1][:4] == ["dh", "ax", "k", "w"]  # "The quick", one inventory
    with pytest.raises(ValueError, match="phones='ipa' keeps espeak-ng's IPA names"):
        recipe.build(tmp_path / "x.h5", speakers, sentences=1, phones="ipa")

"""load_audio_folder: a folder of WAV / FLAC / OGG files of two speakers, read on demand, plugged into CPC sampling."""

import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from contrastive_seq.data.audio import read_audio
from contrastive_seq.data.audio_folder import AudioFiles, load_audio_folder
from contrastive_seq.sampling.sequences import SpeakerGroupedSampler
from contrastive_seq.views.audio import CropViews


def tone(frequency, seconds, rate):
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    """Two speakers: alice (16 kHz WAV, 22.05 kHz stereo WAV), bob (16 kHz FLAC in a chapter folder, 8 kHz OGG)."""
    root = tmp_path / "wavs"
    (root / "alice").mkdir(parents=True)
    (root / "bob" / "ch1").mkdir(parents=True)
    soundfile.write(root / "alice" / "a1.wav", tone(220, 0.30, 16000), 16000)
    soundfile.write(root / "alice" / "a2.WAV", np.stack([tone(330, 0.25, 22050)] * 2, axis=1), 22050)
    soundfile.write(root / "bob" / "ch1" / "b1.flac", tone(440, 0.20, 16000), 16000)
    soundfile.write(root / "bob" / "b2.ogg", tone(550, 0.40, 8000), 8000)
    (root / "notes.txt").write_text("not audio")
    return root


def test_index_holds_lengths_at_the_target_rate_and_crops_equal_the_whole_file_read(folder):
    corpus = load_audio_folder(folder, sample_rate=16000, speakers="top")
    audio = corpus.audio
    assert isinstance(audio, AudioFiles) and not hasattr(audio, "values")  # nothing held in memory
    assert [p.name for p in audio.paths] == ["a1.wav", "a2.WAV", "b2.ogg", "b1.flac"]
    assert corpus.speaker_names == ["alice", "bob"] and audio.speakers.tolist() == [0, 0, 1, 1]
    for i, path in enumerate(audio.paths):
        data, rate = soundfile.read(path, dtype="float32", always_2d=True)
        whole = torchaudio.functional.resample(torch.from_numpy(data.mean(1)), rate, 16000)
        assert int(audio.lengths[i]) == whole.numel()  # the index needs no decoding
        starts = audio.offsets[i] + torch.tensor([0, 7, int(audio.lengths[i]) - 100])
        crops = audio.crops(starts, 100)
        expected = torch.stack([whole[s : s + 100] for s in (starts - audio.offsets[i]).tolist()])
        assert torch.allclose(crops[:, :, 0], expected, atol=1e-6)


def test_speaker_grouped_cpc_batches_from_the_folder(folder):
    audio = load_audio_folder(folder, sample_rate=16000, speakers="top").audio
    sampler = SpeakerGroupedSampler(audio.lengths, 1000, audio.speakers, group_size=2, names=audio.names)
    pairs = sampler.sample(8, torch.Generator().manual_seed(0))
    batch = CropViews(1000)(audio.subset(range(len(audio))), pairs, torch.Generator().manual_seed(0))
    assert batch["crops"].shape == (8, 1000, 1) and batch["labels"].view(4, 2).diff(dim=1).abs().sum() == 0


def test_parent_folder_speakers_manifest_and_alignments(folder, tmp_path):
    assert load_audio_folder(folder, speakers="parent").speaker_names == ["alice", "bob", "ch1"]
    manifest = tmp_path / "speakers.csv"
    manifest.write_text("file,speaker\nbob/b2.ogg,carol\nalice/a1.wav,dave\n")
    corpus = load_audio_folder(folder, manifest=manifest)
    assert [p.name for p in corpus.audio.paths] == ["b2.ogg", "a1.wav"] and corpus.speaker_names == ["carol", "dave"]
    alignments = tmp_path / "phones.csv"
    alignments.write_text("file,start,end,phone\nalice/a1.wav,0.1,0.2,ah\nalice/a1.wav,0.0,0.1,s\n")
    corpus = load_audio_folder(folder, speakers=None, alignments=alignments)
    assert corpus.audio.speakers is None and corpus.phone_names == ["ah", "s"]
    a1 = corpus.phones[0]
    assert a1.start.tolist() == [0, 1600] and a1.end.tolist() == [1600, 3200] and a1.id.tolist() == [1, 0]
    assert all(p.id.numel() == 0 for p in corpus.phones[1:])


def test_missing_and_unreadable_files_are_named(folder, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,speaker\nalice/gone.wav,x\n")
    with pytest.raises(FileNotFoundError, match=r"audio file .*gone.wav does not exist"):
        load_audio_folder(folder, manifest=manifest)
    (folder / "alice" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(ValueError, match=r"audio file .*broken.wav cannot be read"):
        load_audio_folder(folder)
    with pytest.raises(FileNotFoundError, match="nowhere.wav does not exist"):
        read_audio(tmp_path / "nowhere.wav")
    with pytest.raises(NotADirectoryError, match="is a file; load_audio_folder expects a folder"):
        load_audio_folder(manifest)
    with pytest.raises(ValueError, match="holds no file ending in"):
        load_audio_folder(_empty(tmp_path))
    (folder / "alice" / "broken.wav").unlink()
    (folder / "loose.wav").write_bytes((folder / "alice" / "a1.wav").read_bytes())
    with pytest.raises(ValueError, match="loose.wav lies directly in .* no speaker folder"):
        load_audio_folder(folder)


def _empty(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_cpc_trains_from_the_folder_through_the_trainer(folder):
    from contrastive_seq.losses.cpc import CPCLoss
    from contrastive_seq.methods.cpc import CPC
    from contrastive_seq.models.cpc import StepPredictors, make_context_model, series_encoder
    from contrastive_seq.training import Trainer, TrainerConfig

    audio = load_audio_folder(folder, sample_rate=16000, speakers="top").audio
    encoder = series_encoder(1, hidden_dim=8, kernel_size=3, num_layers=2)
    method = CPC(encoder, make_context_model("gru", 8, 8), StepPredictors(8, 8, 2), CPCLoss(7, "batch"))
    sampler = SpeakerGroupedSampler(audio.lengths, 64, audio.speakers, group_size=2, names=audio.names)
    config = TrainerConfig(max_steps=2, batch_size=8, checkpoint_every=None, progress=False, device="cpu")
    final = Trainer(method, config, audio, sampler, CropViews(64)).fit()
    assert np.isfinite(final["loss"])

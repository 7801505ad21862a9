"""Speech with phone timings from the flite command-line synthesiser (Debian ``flite`` 2.2).

``FliteSynthesizer().synthesize(text, voice, f0_shift, duration_stretch)`` runs
``flite -voice VOICE --setf f0_shift=F --setf duration_stretch=D -psdur -t TEXT -o FILE``
and returns the waveform (float32, the voice's rate), that rate, and the phone
events ``[(start sample, phone), ..., (end sample, "")]`` in flite's CMU phone
set (``pau`` for pauses): ``-psdur`` prints ``phone:end time`` (seconds) for
every segment, so phone i starts where phone i - 1 ends and the last entry
marks where the last phone ends.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile


def parse_psdur(printed: str, sample_rate: int) -> list[tuple[int, str]]:
    """``"pau:0.220 dh:0.254"`` -> ``[(0, "pau"), (3520, "dh"), (4064, "")]`` at ``sample_rate``.

    Raises:
        ValueError quoting ``printed`` when a token is not ``phone:seconds`` or the end times decrease.
    """
    events, start = [], 0
    for token in printed.split():
        phone, _, seconds = token.rpartition(":")
        try:
            end = round(float(seconds) * sample_rate)
        except ValueError:
            raise ValueError(f"flite -psdur token {token!r} is not phone:seconds (output {printed!r})") from None
        if not phone or end < start:
            raise ValueError(f"flite -psdur token {token!r} has no phone or ends before {start} (output {printed!r})")
        events.append((start, phone))
        start = end
    return events + [(start, "")] if events else []


class FliteSynthesizer:
    """The ``flite`` binary with its list of voices.

    Raises:
        OSError: when ``binary`` is not found (install Debian's ``flite``).
    """

    def __init__(self, binary: str = "flite"):
        path = shutil.which(binary)
        if path is None:
            raise OSError(f"flite binary {binary!r} not found (apt-get install -y flite)")
        self.binary = path
        listing = subprocess.run([path, "-lv"], capture_output=True, text=True, check=True).stdout
        self.voices = listing.split(":", 1)[1].split() if ":" in listing else []

    def check_voice(self, voice: str) -> None:
        """Raise ValueError unless ``voice`` is one of ``self.voices`` (flite itself falls back to ``kal`` silently)."""
        if voice not in self.voices:
            raise ValueError(f"voice must be one of flite's voices {self.voices}, got {voice!r}")

    def synthesize(
        self, text: str, voice: str, f0_shift: float = 1.0, duration_stretch: float = 1.0
    ) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
        """``(waveform (time,) float32 in [-1, 1], sample rate, [(start sample, phone), ..., (end, "")])``.

        Args:
            text: what to say.
            voice: one of ``self.voices``.
            f0_shift: factor on the voice's F0 contour (flite feature ``f0_shift``).
            duration_stretch: factor on every phone's duration (flite feature ``duration_stretch``).
        """
        self.check_voice(voice)
        for name, value in (("f0_shift", f0_shift), ("duration_stretch", duration_stretch)):
            if not 0.25 <= value <= 4.0:
                raise ValueError(f"{name} must be a factor in [0.25, 4], got {value!r}")
        with tempfile.TemporaryDirectory() as folder:
            wav = Path(folder) / "out.wav"
            command = [self.binary, "-voice", voice, "--setf", f"f0_shift={f0_shift}"]
            command += ["--setf", f"duration_stretch={duration_stretch}", "-psdur", "-t", text, "-o", str(wav)]
            printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            samples, rate = soundfile.read(wav, dtype="float32")
        return samples, int(rate), parse_psdur(printed, int(rate))

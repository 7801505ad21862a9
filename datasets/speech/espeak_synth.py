"""Speech with phoneme timings from libespeak-ng, through ctypes (synchronous synthesis with phoneme events).

``EspeakSynthesizer().synthesize(text, voice, pitch, rate)`` returns the
waveform (float32, ``sample_rate`` Hz, from 16-bit samples) and the phoneme
events ``[(sample position, IPA phone), ...]`` that espeak-ng reported while
synthesising it.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_PHONEME_IPA = 0x0002
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAMETER_RATE = 1
PARAMETER_PITCH = 3


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    # espeak_EVENT of speak_lib.h
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakSynthesizer:
    """One libespeak-ng instance in synchronous mode with IPA phoneme events.

    Raises:
        OSError: when ``libespeak-ng.so.1`` cannot be loaded (install Debian's ``espeak-ng``).
    """

    def __init__(self, library: str | None = None):
        name = library or ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self.lib = ctypes.CDLL(name)
        rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_PHONEME_IPA
        )
        if rate <= 0:
            raise OSError(f"espeak_Initialize failed (returned {rate})")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._collect)  # kept alive for the library's sake
        self.lib.espeak_SetSynthCallback(self._callback)
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), count: int, events: ctypes.POINTER(_Event)) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == EVENT_PHONEME:
                phone = event.id.string.decode("utf-8", errors="replace")
                self._events.append((int(event.audio_position) * self.sample_rate // 1000, phone))
            i += 1
        return 0

    def synthesize(
        self, text: str, voice: str, pitch: int = 50, rate: int = 175
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """``(waveform (time,) float32 in [-1, 1], [(start sample, phone), ...])`` for ``text``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng does not know voice {voice!r}")
        self.lib.espeak_SetParameter(PARAMETER_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(PARAMETER_RATE, int(rate), 0)
        self._chunks, self._events = [], []
        encoded = text.encode() + b"\0"
        status = self.lib.espeak_Synth(encoded, len(encoded), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} for text {text!r}")
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return samples.astype(np.float32) / 32768.0, list(self._events)

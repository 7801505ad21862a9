"""The corpus's shared phone inventory (CMU / ARPAbet, as flite's US English voices emit it) and the maps onto it.

``CMU_PHONES`` is flite's ``cmulex`` phone set without stress: the 39 phones of
CMUdict plus ``ax`` (schwa), and ``sil`` (id 0) for silence (flite's ``pau``
and any sample no phone covers). ``ESPEAK_IPA_TO_CMU`` maps the IPA names that
espeak-ng's ``en-us`` voice reports in its phoneme events onto that set,
following CMUdict / flite's transcriptions of the same words:

* the flap ``ɾ`` and the glottal stop ``ʔ`` become ``t`` (CMUdict writes the
  underlying stop: "city" S IH T IY, "button" B AH T AX N);
* reduced vowels: ``ə`` and ``ɐ`` become ``ax``, ``ᵻ`` becomes ``ih``; happy-tensing
  ``i`` becomes ``iy``; the LOT vowel ``ɔ`` becomes ``aa``;
* espeak reports some vowel + r sequences and syllabic consonants as one phone
  with one start time, so one label covers the whole segment: r-coloured vowels
  (``ɑːɹ``, ``ɪɹ``, ``ʊɹ``, ``ɛɹ``, ``oːɹ``, ``ɔːɹ``, ``aɪɚ``) keep their vowel,
  syllabic consonants (``əl``, ``n̩``) keep their consonant;
* ``x`` (as in "loch") becomes ``k``.
"""

from __future__ import annotations

SILENCE = "sil"
CMU_PHONES = (SILENCE,) + tuple(
    "aa ae ah ao aw ax ay b ch d dh eh er ey f g hh ih iy jh k l m n ng ow oy p r s sh t th uh uw v w y z zh".split()
)
FLITE_TO_CMU = {**{phone: phone for phone in CMU_PHONES[1:]}, "pau": SILENCE}
ESPEAK_IPA_TO_CMU = {
    # consonants
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "ɡ": "g", "ɾ": "t", "ʔ": "t", "x": "k",
    "f": "f", "v": "v", "θ": "th", "ð": "dh", "s": "s", "z": "z", "ʃ": "sh", "ʒ": "zh", "h": "hh",
    "tʃ": "ch", "dʒ": "jh", "m": "m", "n": "n", "ŋ": "ng", "n̩": "n", "l": "l", "əl": "l",
    "ɹ": "r", "w": "w", "j": "y",
    # monophthongs
    "iː": "iy", "i": "iy", "ɪ": "ih", "ᵻ": "ih", "ɛ": "eh", "æ": "ae", "ʌ": "ah", "ə": "ax", "ɐ": "ax",
    "ɑː": "aa", "ɑ": "aa", "ɔ": "aa", "ɔː": "ao", "oː": "ao", "ʊ": "uh", "uː": "uw", "u": "uw",
    "ɜː": "er", "ɚ": "er",
    # diphthongs
    "eɪ": "ey", "aɪ": "ay", "aʊ": "aw", "ɔɪ": "oy", "oʊ": "ow",
    # one event for vowel + r: the vowel
    "ɑːɹ": "aa", "ɪɹ": "ih", "ʊɹ": "uh", "ɛɹ": "eh", "oːɹ": "ao", "ɔːɹ": "ao", "aɪɚ": "ay",
}  # fmt: skip


def to_cmu(phone: str, table: dict[str, str], source: str) -> str:
    """The CMU phone for ``phone`` (``""``, the end-of-speech marker, stays ``""``).

    Raises:
        ValueError naming the phone and ``source`` (the synthesiser) when ``table`` has no entry for it.
    """
    if phone == "":
        return ""
    if phone not in table:
        raise ValueError(
            f"{source} phone {phone!r} has no entry in the CMU phone map; add it to datasets/speech/phone_sets.py"
        )
    return table[phone]

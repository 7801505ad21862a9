"""Multi-session behaviour sampling: positives in another session, matched through the shared behaviour.

Sessions (animals, days) have their own neurons but continuous auxiliary
variables of one meaning. A batch takes its references from every session
and finds each reference's positive in *another* session, at the time point
whose label is nearest the reference's target label (drawn as in
:class:`~contrastive_seq.sampling.behaviour.BehaviourTargets`), so that one
encoder per session learns embeddings that agree across sessions.

Indices are *global*: session ``s`` holds ``offsets[s] .. offsets[s + 1] - 1``
(as :class:`~contrastive_seq.data.recording.MultiSessionRecording`). A draw of
``batch_size = S * B`` pairs has this block layout, with S sessions and
``B = batch_size / S``:

- rows ``s*B .. (s+1)*B - 1`` (block ``s``): ``reference`` uniform over the
  valid time points of session ``s``;
- ``positive[s*B:(s+1)*B, 0]``: all in session ``σ(s)``, where ``σ`` is a
  uniformly random derangement of the sessions drawn per batch (``σ(s) != s``;
  with two sessions the blocks swap);
- ``negative`` ``(S * K,)``: block ``s`` (entries ``s*K .. (s+1)*K - 1``)
  holds ``K`` negatives uniform over the valid time points of session ``s``.

A method with one encoder per session embeds reference block ``s`` and
negative block ``s`` with encoder ``s``, and positive block ``s`` with
encoder ``σ(s)``. :class:`~contrastive_seq.views.windows.MultiSessionWindowViews`
returns the windows already split this way. The layout assumes the whole
batch: :meth:`PairIndex.shard` for several ranks splits it row-wise.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from contrastive_seq.data.recording import ArrayLike, as_continuous
from contrastive_seq.sampling.base import PairIndex, Sampler
from contrastive_seq.sampling.behaviour import BehaviourTargets, NearestTimeIndex
from contrastive_seq.sampling.time import check_context, check_int, uniform_times, valid_range


def random_derangement(num: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of ``range(num)`` with no fixed point (``num >= 2``).

    Rejection from uniform permutations: about e tries on average, each O(num).
    """
    if num < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {num}")
    while True:
        permutation = torch.randperm(num, generator=generator)
        if not bool((permutation == torch.arange(num)).any()):
            return permutation


class MultiSessionSampler(Sampler):
    """References from every session; each positive in another session, nearest the reference's target label.

    See the module docstring for the block layout of a draw. Setup
    O(T log T) (a KD-tree per session over its valid time points); a draw
    O(batch log T). ``batch_size`` must be a multiple of the number of sessions.

    Args:
        continuous: one ``(T_s, k)`` (or ``(T_s,)``) array of continuous
            variables per session, at least two sessions, one k.
        mode, delta, time_delta: the target label, see
            :class:`~contrastive_seq.sampling.behaviour.BehaviourTargets`;
            ``time_delta`` label changes are pooled over all sessions.
        left_context, right_context: the encoders' margins (shared by the sessions).
        num_negatives: K, negatives per session; ``None``: B = batch_size / S.

    Attributes:
        offsets: ``(S + 1,)`` int64 global start of each session (and the total).
        valid: per session, the ``range`` of valid local time points.
    """

    def __init__(
        self,
        continuous: Sequence[ArrayLike],
        mode: str = "time_delta",
        delta: float = 0.1,
        time_delta: int = 1,
        left_context: int = 0,
        right_context: int = 0,
        num_negatives: int | None = None,
    ):
        if isinstance(continuous, torch.Tensor) or not isinstance(continuous, Sequence) or len(continuous) < 2:
            raise ValueError("continuous must be a sequence of at least two per-session label arrays")
        sessions = [as_continuous(f"continuous[{s}]", labels) for s, labels in enumerate(continuous)]
        widths = [labels.shape[1] for labels in sessions]
        if len(set(widths)) != 1:
            raise ValueError(f"continuous must have the same k in every session (shared behaviour), got k = {widths}")
        self.left_context, self.right_context = check_context(left_context, right_context)
        self.num_negatives = None if num_negatives is None else check_int("num_negatives", num_negatives, 1)
        lengths = [labels.shape[0] for labels in sessions]
        self.valid = [
            valid_range(length, self.left_context, self.right_context, f"continuous[{s}]")
            for s, length in enumerate(lengths)
        ]
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.tensor(lengths), 0)])
        self.num_items = int(self.offsets[-1])
        self.num_sessions = len(sessions)
        self.targets = BehaviourTargets(torch.cat(sessions), mode, delta, time_delta, session_lengths=lengths)
        self._indexes = [NearestTimeIndex(labels, valid) for labels, valid in zip(sessions, self.valid)]

    def draw(self, batch_size: int, generator: torch.Generator) -> PairIndex:  # noqa: D102
        sessions = self.num_sessions
        if batch_size % sessions:
            raise ValueError(f"batch_size={batch_size} must be a multiple of the number of sessions ({sessions})")
        block = batch_size // sessions
        negatives = self.num_negatives or block
        reference = torch.cat(
            [self.offsets[s] + uniform_times(self.valid[s], block, generator) for s in range(sessions)]
        )
        targets = self.targets.draw(reference, generator).split(block)
        target_session = random_derangement(sessions, generator)
        positive = torch.cat(
            [
                self.offsets[j] + self._indexes[j].nearest(targets[s])
                for s, j in enumerate(target_session.tolist())
            ]
        )
        negative = torch.cat(
            [self.offsets[s] + uniform_times(self.valid[s], negatives, generator) for s in range(sessions)]
        )
        return PairIndex(reference, positive.unsqueeze(1), negative)

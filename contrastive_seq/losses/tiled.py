"""Tiled InfoNCE: the loss core's terms without materialising the logit matrix.

The core's per-row loss (see :mod:`contrastive_seq.losses.infonce`),

    loss_i = log sum_{j in D(i)} exp(L_ij) - (1/|P(i)|) sum_{p in P(i)} L_ip,

needs two things of the logits ``L = left @ right.T`` (N, M), whose factors
:meth:`ContrastiveCore.logit_factors` gives (similarity and temperature
folded in):

- the mean positive logit, a row-wise dot product with the positives' (mean)
  factor: O((N + M) · D), computed with ordinary autograd;
- the log-sum-exp over the denominator set, computed here tile by tile
  (``block_size`` rows by ``block_size`` columns) with a running
  log-sum-exp, inside a :class:`torch.autograd.Function` whose backward
  recomputes each tile's logits and forms ``softmax * grad`` from them.

So the memory beyond the inputs and their gradients is two
``block_size x block_size`` tiles instead of several (N, M) matrices, and the
time is that of four matrix products (forward, its recomputation in the
backward pass, two gradient products) plus a few passes over tiles small
enough to stay in cache. The running argmax
that gives the logged accuracy comes out of the same pass. For CLIP in one
process, the log-sum-exp over the columns (text -> image) comes out of the
same tiles as that over the rows. Negatives gathered across ranks are gathered
before the factors reach this module, so ``gather_with_grad``'s backward
still sends every rank its rows' gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.autograd.function import once_differentiable

from contrastive_seq.losses.terms import InfoNCETerms, check_block_size
from contrastive_seq.losses.validation import check_embeddings, check_has_negative, check_same_dim

NEG_INF = float("-inf")


@dataclass(frozen=True)
class LabelPositives:
    """Positives by label: column j is a positive of row i when ``column[j] == row[i]`` (and j is not excluded).

    The ``(N, M)`` positive mask of the plain path in O(N + M) memory: sample
    ids for NT-Xent with several views, class labels for SupCon.

    Attributes:
        row: ``(N,)`` integer label of each query row.
        column: ``(M,)`` integer label of each candidate column.
    """

    row: torch.Tensor
    column: torch.Tensor

    def mask(self) -> torch.Tensor:
        """The ``(N, M)`` bool positive mask (before exclusion), for the plain path."""
        return self.row.unsqueeze(1) == self.column.unsqueeze(0)


@dataclass(frozen=True)
class _Dropped:
    """What leaves row i's log-sum-exp: its excluded column, and (decoupled) its positives.

    ``exclude`` ``(N,)`` is also left out of the argmax; positives are dropped
    by index ``(N,)`` or by :class:`LabelPositives`.
    """

    exclude: torch.Tensor | None = None
    positive_index: torch.Tensor | None = None
    positive_labels: LabelPositives | None = None

    @property
    def positives(self) -> bool:
        return self.positive_index is not None or self.positive_labels is not None

    def exclude_(self, tile: torch.Tensor, rows: slice, first_column: int) -> None:
        if self.exclude is not None:
            _fill_one_column_(tile, self.exclude[rows], first_column)

    def positives_(self, tile: torch.Tensor, rows: slice, columns: slice) -> None:
        if self.positive_index is not None:
            _fill_one_column_(tile, self.positive_index[rows], columns.start)
        elif self.positive_labels is not None:
            labels = self.positive_labels
            tile.masked_fill_(labels.row[rows].unsqueeze(1) == labels.column[columns].unsqueeze(0), NEG_INF)


def _fill_one_column_(tile: torch.Tensor, column: torch.Tensor, first_column: int) -> None:
    """Set ``tile[i, column[i] - first_column] = -inf`` in place for the rows whose column falls in the tile.

    ``tile`` is ``(n, m)``, ``column`` ``(n,)`` global column indices. No
    host-device synchronisation: rows outside the tile write back their own value.
    """
    local = column - first_column
    inside = ((local >= 0) & (local < tile.shape[1])).unsqueeze(1)
    local = local.clamp(0, tile.shape[1] - 1).unsqueeze(1)
    tile.scatter_(1, local, torch.where(inside, NEG_INF, tile.gather(1, local)))


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its ``-inf`` entries (empty sets) replaced by 0, a safe shift for ``exp``."""
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


def _sum_exp_log_(shifted: torch.Tensor, shift: torch.Tensor, dim: int) -> torch.Tensor:
    """``log sum exp(shifted)`` along ``dim`` plus ``shift``; ``shifted`` is overwritten by its exp."""
    return shifted.exp_().sum(dim).log_().add_(shift)


def _update_best(
    best_value: torch.Tensor, best_index: torch.Tensor, value: torch.Tensor, index: torch.Tensor, offset: int
) -> None:
    """Running (max, argmax) in place; an earlier tile keeps ties, so the first maximum wins, as in ``argmax``."""
    better = value > best_value
    best_value.copy_(torch.where(better, value, best_value))
    best_index.copy_(torch.where(better, index + offset, best_index))


class _TiledLogSumExp(torch.autograd.Function):
    """Per-row (and optionally per-column) log-sum-exp of ``left @ right.T``, tile by tile.

    Forward returns ``row_lse, row_max, row_argmax`` ``(N,)`` and, with
    ``columns=True``, ``column_lse, column_max, column_argmax`` ``(M,)``
    (empty otherwise). Row i's log-sum-exp leaves out ``dropped``'s
    entries; its max and argmax leave out only the excluded column. Columns
    take every row (CLIP's text -> image direction, nothing dropped).
    Only the log-sum-exps are differentiable.
    """

    @staticmethod
    @torch.autocast("cuda", enabled=False)
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, left, right, dropped, columns, block_size):  # noqa: D102
        rows_n, columns_m = left.shape[0], right.shape[0]
        row_lse = left.new_full((rows_n,), NEG_INF)
        row_max = left.new_full((rows_n,), NEG_INF)
        row_best = torch.zeros(rows_n, dtype=torch.long, device=left.device)
        column_lse = left.new_full((columns_m if columns else 0,), NEG_INF)
        column_max = left.new_full((columns_m if columns else 0,), NEG_INF)
        column_best = torch.zeros(columns_m if columns else 0, dtype=torch.long, device=left.device)
        for rows, cols, tile, spare in _Tiles(left, right, block_size, columns):
            dropped.exclude_(tile, rows, cols.start)
            if columns:
                value, index = tile.max(0)
                _update_best(column_max[cols], column_best[cols], value, index, rows.start)
                shift = _finite_or_zero(value)
                part = _sum_exp_log_(torch.sub(tile, shift, out=spare), shift, 0)
                column_lse[cols] = torch.logaddexp(column_lse[cols], part)
            value, index = tile.max(1)
            _update_best(row_max[rows], row_best[rows], value, index, cols.start)
            if dropped.positives:
                dropped.positives_(tile, rows, cols)
                value = tile.amax(1)
            shift = _finite_or_zero(value)
            part = _sum_exp_log_(tile.sub_(shift.unsqueeze(1)), shift, 1)
            row_lse[rows] = torch.logaddexp(row_lse[rows], part)
        ctx.save_for_backward(left, right, row_lse, column_lse)
        ctx.dropped, ctx.columns, ctx.block_size = dropped, columns, block_size
        ctx.mark_non_differentiable(row_max, row_best, column_max, column_best)
        return row_lse, row_max, row_best, column_lse, column_max, column_best

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_row_lse, _row_max, _row_best, grad_column_lse, _column_max, _column_best):  # noqa: D102
        left, right, row_lse, column_lse = ctx.saved_tensors
        need_left, need_right = ctx.needs_input_grad[:2]
        if not (need_left or need_right):
            return None, None, None, None, None
        grad_left = torch.zeros_like(left) if need_left else None
        grad_right = torch.zeros_like(right) if need_right else None
        row_shift, column_shift = _finite_or_zero(row_lse), _finite_or_zero(column_lse)
        for rows, cols, tile, spare in _Tiles(left, right, ctx.block_size, ctx.columns):
            # d lse_i / d L_ij = softmax over the row's denominator; the same for columns
            ctx.dropped.exclude_(tile, rows, cols.start)
            if ctx.columns:
                column_part = torch.sub(tile, column_shift[cols], out=spare).exp_().mul_(grad_column_lse[cols])
            ctx.dropped.positives_(tile, rows, cols)
            grad = tile.sub_(row_shift[rows].unsqueeze(1)).exp_().mul_(grad_row_lse[rows].unsqueeze(1))
            if ctx.columns:
                grad.add_(column_part)
            if need_left:
                grad_left[rows].addmm_(grad, right[cols])
            if need_right:
                grad_right[cols].addmm_(grad.transpose(0, 1), left[rows])
        return grad_left, grad_right, None, None, None


class _Tiles:
    """Iterate ``(rows, cols, tile, spare)`` over ``left @ right.T`` in ``block_size`` squares.

    ``tile`` holds the logits of ``left[rows] @ right[cols].T``; ``tile`` and
    ``spare`` (same shape, for a second pass) are views of two buffers that
    every tile reuses, so no (N, M) matrix is ever allocated.
    """

    def __init__(self, left: torch.Tensor, right: torch.Tensor, block_size: int, spare: bool):
        self.left, self.right, self.block_size = left, right, block_size
        size = min(block_size, left.shape[0]) * min(block_size, right.shape[0])
        self.buffer = left.new_empty(size)
        self.spare = left.new_empty(size if spare else 0)

    def __iter__(self):
        block, rows_n, columns_m = self.block_size, self.left.shape[0], self.right.shape[0]
        for r0 in range(0, rows_n, block):
            rows = slice(r0, min(r0 + block, rows_n))
            for c0 in range(0, columns_m, block):
                cols = slice(c0, min(c0 + block, columns_m))
                shape = (rows.stop - rows.start, cols.stop - cols.start)
                tile = self.buffer[: shape[0] * shape[1]].view(shape)
                torch.mm(self.left[rows], self.right[cols].transpose(0, 1), out=tile)
                spare = self.spare[: shape[0] * shape[1]].view(shape) if self.spare.numel() else None
                yield rows, cols, tile, spare


def _checked_factors(*factors: tuple[str, torch.Tensor]) -> list[torch.Tensor]:
    """Check ``(name, (rows, D))`` factors of one D and return them in float32 at least.

    Half-precision factors (autocast) are upcast: the running log-sum-exp and
    the tiles' softmax are accumulated in float32, as the plain path's
    cross-entropy is, and autograd casts the gradients back.
    """
    for name, x in factors:
        check_embeddings(name, x)
        check_same_dim(factors[0][0], factors[0][1], name, x)
    dtype = torch.float32
    for _, x in factors:
        dtype = torch.promote_types(dtype, x.dtype)
    return [x.to(dtype) for _, x in factors]


def _check_index(name: str, index: object, rows: int, columns: int) -> None:
    """``index`` must be ``(rows,)`` int64 column indices in ``[0, columns)``."""
    if not isinstance(index, torch.Tensor) or index.dtype != torch.long or index.shape != (rows,):
        got = f"dtype {index.dtype}, shape {tuple(index.shape)}" if isinstance(index, torch.Tensor) else type(index)
        raise ValueError(f"{name} must be an int64 tensor of shape ({rows},), got {got}")
    low, high = int(index.min()), int(index.max())
    if low < 0 or high >= columns:
        raise ValueError(f"{name} must hold column indices in [0, {columns}), got range [{low}, {high}]")


def _mean_positive_logit(
    left: torch.Tensor, right: torch.Tensor, labels: LabelPositives, exclude: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean logit of each row's positives by label ``(N,)``, and their count ``(N,)``, in O((N + M) · D).

    The positives of row i sum to ``<left_i, sum of right_j with label_j = label_i>``
    minus the excluded column's term when it shares the label.
    """
    rows_n = left.shape[0]
    _, ids = torch.unique(torch.cat([labels.row, labels.column]), return_inverse=True)
    row_ids, column_ids = ids[:rows_n], ids[rows_n:]
    classes = int(ids.max()) + 1
    sums = right.new_zeros(classes, right.shape[1]).index_add(0, column_ids, right)
    total, count = sums[row_ids], torch.bincount(column_ids, minlength=classes)[row_ids]
    if exclude is not None:
        own = column_ids[exclude] == row_ids
        total = total - right[exclude] * own.unsqueeze(1).to(right.dtype)
        count = count - own.long()
    return (left * total).sum(1) / count.clamp(min=1), count


def tiled_info_nce(
    left: torch.Tensor,
    right: torch.Tensor,
    positive: torch.Tensor | LabelPositives,
    exclude: torch.Tensor | None = None,
    decoupled: bool = False,
    block_size: int = 1024,
) -> InfoNCETerms:
    """:func:`info_nce_from_logits` of ``logits = left @ right.T`` without materialising the logits.

    Args:
        left: ``(N, D)`` query factors, the logit scale folded in.
        right: ``(M, D)`` candidate factors (gathered over ranks when negatives are).
        positive: ``(N,)`` int64 column of each row's positive, or
            :class:`LabelPositives` (several positives per row).
        exclude: optional ``(N,)`` int64 column left out of each row entirely.
        decoupled: leave the positives out of the denominator.
        block_size: rows and columns per tile.

    Returns:
        The per-row :class:`InfoNCETerms` of the plain path (same loss, parts and gradients).
    """
    left, right = _checked_factors(("left", left), ("right", right))
    rows_n, columns_m = left.shape[0], right.shape[0]
    check_block_size(block_size)
    if exclude is not None:
        _check_index("exclude", exclude, rows_n, columns_m)
    check_has_negative(columns_m, exclude is not None)
    if isinstance(positive, LabelPositives):
        if positive.row.shape != (rows_n,) or positive.column.shape != (columns_m,):
            raise ValueError(
                f"LabelPositives must have row labels ({rows_n},) and column labels ({columns_m},), "
                f"got {tuple(positive.row.shape)} and {tuple(positive.column.shape)}"
            )
        dropped = _Dropped(exclude, positive_labels=positive if decoupled else None)
        row_lse, _, best, *_ = _TiledLogSumExp.apply(left, right, dropped, False, block_size)
        positive_logit, count = _mean_positive_logit(left, right, positive, exclude)
        correct = positive.column[best] == positive.row
        return InfoNCETerms.from_rows(positive_logit, row_lse, correct, count > 0)
    _check_index("positive", positive, rows_n, columns_m)
    dropped = _Dropped(exclude, positive_index=positive if decoupled else None)
    row_lse, _, best, *_ = _TiledLogSumExp.apply(left, right, dropped, False, block_size)
    positive_logit = (left * right[positive]).sum(1)
    return InfoNCETerms.from_rows(positive_logit, row_lse, best == positive, torch.ones_like(best, dtype=torch.bool))


def tiled_info_nce_with_negatives(
    left: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, decoupled: bool = False, block_size: int = 1024
) -> InfoNCETerms:
    """InfoNCE of each query against its own positive and M shared negatives, the negatives tiled.

    The logits are ``[<left_i, positive_i>, left_i @ negatives.T]`` ``(N, 1 + M)``
    with the positive in column 0, as in :class:`InfoNCE` with ``negatives (M, d)``.

    Args:
        left: ``(N, D)`` query factors, the logit scale folded in.
        positive: ``(N, D)`` factors of each query's positive.
        negatives: ``(M, D)`` factors of the shared negatives.
        decoupled: leave the positive out of the denominator.
        block_size: rows and columns per tile.
    """
    left, positive, negatives = _checked_factors(("left", left), ("positive", positive), ("negatives", negatives))
    check_block_size(block_size)
    negative_lse, negative_max, *_ = _TiledLogSumExp.apply(left, negatives, _Dropped(), False, block_size)
    positive_logit = (left * positive).sum(1)
    log_denominator = negative_lse if decoupled else torch.logaddexp(positive_logit, negative_lse)
    correct = positive_logit.detach() >= negative_max  # column 0 wins ties, as argmax does
    return InfoNCETerms.from_rows(positive_logit, log_denominator, correct, torch.ones_like(correct))


def tiled_clip_info_nce(
    left: torch.Tensor, right: torch.Tensor, block_size: int = 1024
) -> tuple[InfoNCETerms, InfoNCETerms]:
    """Both directions of a square logit matrix ``left @ right.T`` with positives on the diagonal.

    Row i against every column (CLIP's image -> text) and column i against
    every row (text -> image) from one pass over the tiles: the matrix and
    its transpose are never materialised.

    Args:
        left: ``(N, D)`` image factors, the logit scale folded in.
        right: ``(N, D)`` text factors.
        block_size: rows and columns per tile.

    Returns:
        ``(image_to_text, text_to_image)`` per-row :class:`InfoNCETerms`.
    """
    left, right = _checked_factors(("left", left), ("right", right))
    if left.shape != right.shape:
        raise ValueError(f"left and right must have the same shape, got {tuple(left.shape)} and {tuple(right.shape)}")
    check_block_size(block_size)
    row_lse, _, row_best, column_lse, _, column_best = _TiledLogSumExp.apply(left, right, _Dropped(), True, block_size)
    diagonal = (left * right).sum(1)
    target = torch.arange(left.shape[0], device=left.device)
    valid = torch.ones_like(target, dtype=torch.bool)
    return (
        InfoNCETerms.from_rows(diagonal, row_lse, row_best == target, valid),
        InfoNCETerms.from_rows(diagonal, column_lse, column_best == target, valid),
    )

"""Views: how to present sampled indices to the encoders."""

from contrastive_seq.views.base import TransformedViews, Views

__all__ = ["TransformedViews", "Views"]

from contrastive_seq.views.windows import MultiSessionWindowViews, WindowViews

__all__ += ["MultiSessionWindowViews", "WindowViews"]

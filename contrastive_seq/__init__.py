"""contrastive_seq: contrastive and self-supervised representation learning on domain data.

Every method is a choice of what to pair (:mod:`contrastive_seq.sampling`), how
to present it (:mod:`contrastive_seq.views`), what encodes it
(:mod:`contrastive_seq.models`) and how to score it (:mod:`contrastive_seq.losses`),
trained by the one :class:`contrastive_seq.training.Trainer`.
"""

__version__ = "0.1.0"

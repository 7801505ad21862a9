"""contrastive_seq: contrastive and self-supervised representation learning on domain data.

Every method is a choice of what to pair (:mod:`contrastive_seq.sampling`), how
to present it (:mod:`contrastive_seq.views`), what encodes it
(:mod:`contrastive_seq.models`) and how to score it (:mod:`contrastive_seq.losses`),
trained by the one :class:`contrastive_seq.training.Trainer`.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Import the estimator on first use, so ``import contrastive_seq`` stays light."""
    if name == "ContrastiveEmbedding":
        from contrastive_seq.estimator import ContrastiveEmbedding

        return ContrastiveEmbedding
    if name in ("CEBRA", "plot_loss", "plot_temperature"):  # CEBRA's drop-in API
        return getattr(__import__("contrastive_seq.cebra_api", fromlist=[name]), name)
    raise AttributeError(f"module 'contrastive_seq' has no attribute {name!r}")


__all__ = ["CEBRA", "ContrastiveEmbedding", "plot_loss", "plot_temperature"]

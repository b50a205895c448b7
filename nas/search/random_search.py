"""Random search: uniform samples of the space, in batches."""

from __future__ import annotations

from nas.search.base import SearchAlgorithm, SearchContext, register_algorithm


@register_algorithm("random")
class RandomSearch(SearchAlgorithm):
    """Uniformly random subnets (each decision drawn independently), evaluated in batches.

    Args:
        batch_size: subnets per batch; one progress event per batch.
    """

    def __init__(self, *, batch_size: int = 100) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    def run(self, ctx: SearchContext) -> None:
        """Sample and evaluate batches until the budget is spent."""
        while ctx.remaining > 0:
            ctx.evaluate(ctx.space.sample_matrix(ctx.rng, min(self.batch_size, ctx.remaining)))
            ctx.end_generation()

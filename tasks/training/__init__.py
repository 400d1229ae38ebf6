"""The training stage: the candidate registry, the search, evaluation."""

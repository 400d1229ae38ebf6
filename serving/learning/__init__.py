"""The learning loop's serving side: receipts, sampling for review, feedback and the review queue."""

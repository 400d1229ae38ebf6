"""The learning loop's storage and logic: predictions kept for review, their labels, online accuracy.

Shared by serving (keeps samples, takes feedback, serves the review queue) and the pipeline
(harvest into training data, online accuracy, retention). Imports only ``vehicle_model``.
"""

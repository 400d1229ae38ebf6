"""Training-run defaults that the flow's parameters, the CLI's options and the steps share.

A module of constants only, so the CLI can show them in ``--help`` without importing the stages.
"""

MIN_IMPROVEMENT = 0.005  # smallest gain of the selection score over the champion that promotes
TIME_BUDGET_SECONDS = 50.0  # per candidate: its search and refit end within it plus one fit
AUGMENT_COPIES = 2  # shifted copies of each training image in the heads' refit
TARGET_PRECISION = 0.98  # precision the decision thresholds are fitted to reach on validation

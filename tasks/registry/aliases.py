"""The registry's alias names and what each one means.

``champion`` is what serving loads (``MODEL_ALIAS`` may give it another name); on promotion
the old champion becomes ``previous``, which is what ``rollback`` restores; a version that
loses the gate becomes ``challenger``.
"""

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"

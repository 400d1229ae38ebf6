"""Pure functions from predictions to what clients read: presentation and reports."""

"""The model lifecycle: registry -> load -> warm -> swap -> infer."""

"""The registry stage: logging and registering versions, the gate, retrain rules, promotion."""

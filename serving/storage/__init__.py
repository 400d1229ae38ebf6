"""Key/value stores that keep working when Redis does not, behind one circuit breaker."""

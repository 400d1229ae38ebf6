"""One policy reviewed together: the admin API key, the rate limit and CORS."""

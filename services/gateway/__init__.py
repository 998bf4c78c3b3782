"""gateway: the client-facing subjects; validates a request and orchestrates its path."""

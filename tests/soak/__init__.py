"""Long-running checks run by hand (``make soak``), not collected by pytest."""

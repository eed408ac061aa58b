"""A simulated adapter: scripted or generated readings, commands that change its state."""

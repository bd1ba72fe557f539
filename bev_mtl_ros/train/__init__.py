"""Training and evaluation on A2D2-format data."""

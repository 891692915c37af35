"""The study's experiments: the bits-per-byte ladder and belief-state probing."""

"""What every stage shares: atomic file writes, refusals that name settings, the process pool, frame
conversion (colour order, resize)."""

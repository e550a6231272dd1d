"""What every stage shares: atomic file writes, refusals that name settings, the process pool, episode frame
ranges, frame conversion (colour order, resize)."""

"""Other codes' formats: gap_fit's argument strings (and, with them, QUIP/GAP XML potentials)."""

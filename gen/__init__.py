"""nmforge.gen."""

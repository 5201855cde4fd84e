"""nmforge.sim."""

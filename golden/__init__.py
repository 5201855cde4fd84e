"""nmforge.golden."""

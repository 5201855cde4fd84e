"""nmforge.rtl."""

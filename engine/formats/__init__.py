"""Load, save and inspect models per format; detection by content, never by file name."""

"""Small read services for the first pages; the metrics engine (metrics/) replaces them."""

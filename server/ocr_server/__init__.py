"""The OCR server runtime (launcher, repository assembly, model fetching, the public front)."""

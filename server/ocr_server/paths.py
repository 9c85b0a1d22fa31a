"""Where the checkout's files live; the server package is installed editable from `server/`."""
from __future__ import annotations

import os
from pathlib import Path

# OCR_ROOT lets an image that copies the tree elsewhere point the launcher at it.
REPO_ROOT = Path(os.environ.get("OCR_ROOT") or Path(__file__).resolve().parents[2])
BUILD_DIR = REPO_ROOT / "build"
MODEL_MANIFEST = Path(__file__).resolve().parent / "models.json"

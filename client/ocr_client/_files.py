"""Finding image files and naming the visualisation outputs (CLI helpers)."""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

__all__ = ["DOCUMENT_EXTENSIONS", "IMAGE_EXTENSIONS", "expand_paths", "is_image_name", "vis_names"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
#: Files the server reads besides images (one result per page).
DOCUMENT_EXTENSIONS = frozenset({".pdf"})


def is_image_name(name: str) -> bool:
    """Whether ``name`` has an image or PDF extension (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS | DOCUMENT_EXTENSIONS


def _walk_images(folder: str) -> list[str]:
    found: list[tuple[tuple[str, ...], str]] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            if is_image_name(name):
                path = os.path.join(root, name)
                found.append((tuple(os.path.relpath(path, folder).split(os.sep)), path))
    return [path for _, path in sorted(found)]


def expand_paths(paths: Sequence[str]) -> list[str]:
    """Image and PDF files from ``paths``, in order: folders are searched recursively
    (image and PDF extensions only, sorted); files named directly are kept whatever their
    extension. Duplicates are dropped. Raises FileNotFoundError for a missing path.
    """
    out: list[str] = []
    seen: set[str] = set()
    for p in paths:
        if os.path.isdir(p):
            candidates: Iterable[str] = _walk_images(p)
        elif os.path.exists(p):
            candidates = [p]
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
        for c in candidates:
            key = os.path.normcase(os.path.abspath(c))
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def vis_names(paths: Sequence[str], suffix: str = ".vis.jpg") -> list[str]:
    """``<stem><suffix>`` per path, made unique with ``-1``, ``-2``... when stems collide."""
    used: set[str] = set()
    names: list[str] = []
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0] or "image"
        name, n = stem + suffix, 0
        while name.lower() in used:  # lower(): case-insensitive file systems
            n += 1
            name = f"{stem}-{n}{suffix}"
        used.add(name.lower())
        names.append(name)
    return names

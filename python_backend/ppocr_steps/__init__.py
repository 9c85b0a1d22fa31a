"""PP-OCR pipeline steps: pure numpy/OpenCV/pyclipper logic, no Triton imports.

The Triton Python-backend models (`python_backend/models/*/1/model.py`) are thin adapters over
this package; `ppocr_steps.triton_adapter` is the only module that imports
`triton_python_backend_utils`.
"""
from ppocr_steps.errors import InvalidInputError

__all__ = ["InvalidInputError"]

#!/usr/bin/env python3
"""PDF render time per page: the bounded child (`rasterize_pdf`) and PDFium alone (`render_in_process`).

    python scripts/bench_pdf.py [--repeat 5]

Generated documents (tests/pdf_samples.py): 1 and 10 text pages, 10 scanned (JPEG) pages; medians.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scanned_jpeg() -> tuple[bytes, int, int]:
    img = np.full((1400, 900, 3), 255, np.uint8)
    for i in range(40):
        cv2.putText(img, f"TOTAL {1000 + 37 * i}.{i:02d} ITEM {i}", (30, 30 + i * 34), cv2.FONT_HERSHEY_SIMPLEX,
                    0.8, (0, 0, 0), 2, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes(), 900, 1400


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    # the test suite's PDF writer, loaded from its file (the tests are not an installed package)
    spec = importlib.util.spec_from_file_location("pdf_samples", ROOT / "tests" / "pdf_samples.py")
    assert spec is not None and spec.loader is not None
    ps = importlib.util.module_from_spec(spec)
    sys.modules["pdf_samples"] = ps  # its dataclasses look their module up there
    spec.loader.exec_module(ps)

    from ppocr_steps.pdf import PdfLimits, rasterize_pdf, render_in_process

    jpeg, w, h = scanned_jpeg()
    docs = {"1 text page": (1, ps.build_pdf([ps.text_page(ps.dense_lines())])),
            "10 text pages": (10, ps.build_pdf([ps.text_page(ps.dense_lines())] * 10)),
            "10 scanned pages": (10, ps.build_pdf([ps.image_page(jpeg, w, h)] * 10))}
    limits = PdfLimits()
    print("| document | whole call (child process) | per page | PDFium render alone, per page |")
    print("|---|---|---|---|")
    for name, (pages, doc) in docs.items():
        child, alone = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rasterize_pdf(doc, limits)
            child.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            render_in_process(doc, limits)
            alone.append(time.perf_counter() - t0)
        c, a = statistics.median(child) * 1e3, statistics.median(alone) * 1e3
        print(f"| {name} | {c:.0f} ms | {c / pages:.0f} ms | {a / pages:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Draw docs/img/vis_zh.png: a generated Chinese page read by the server, in the result picture's layout.

    python scripts/vis_example.py [--url HOST:PORT] [--out docs/img/vis_zh.png]

The page is written with the same Noto Sans CJK font the picture uses (no dataset image is involved).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ocr_client import OcrClient
from ocr_client._vis import _font, draw_result

ROOT = Path(__file__).resolve().parents[1]
LINES = ["增值税电子普通发票", "购买方名称：北京示例科技有限公司", "项目名称　数量　单价　金额",
         "办公用品　　２　　３５．００　７０．００", "合计金额（小写）：￥７０．００", "开票日期：２０２４年５月１日"]


def chinese_page() -> np.ndarray:
    from PIL import Image, ImageDraw

    page = Image.new("RGB", (760, 420), (250, 250, 245))
    draw = ImageDraw.Draw(page)
    draw.text((40, 30), LINES[0], fill=(160, 20, 20), font=_font(40))
    for i, line in enumerate(LINES[1:]):
        draw.text((40, 110 + i * 58), line, fill=(20, 20, 20), font=_font(28))
    return np.asarray(page)[:, :, ::-1].copy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="gRPC HOST:PORT of a running server (default: start one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "vis_zh.png")
    args = ap.parse_args(argv)
    page = chinese_page()
    server = None
    url = args.url
    if url is None:
        from ocr_server.local_server import start_server

        server = start_server(Path(tempfile.mkdtemp(prefix="vis_example_")), timeout=300)
        url = server.grpc_url
    try:
        with OcrClient(url, timeout=120) as client:
            result = client.ocr(page)
    finally:
        if server is not None:
            from ocr_server.local_server import stop_server

            stop_server(server)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), draw_result(page, result), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    for line in result.lines:
        print(f"{line.score:.3f} {line.text}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The OCR server's own runtime: launcher and watchdog, model fetch and graph edits, repository assembly,
TensorRT engines. The request path's pure logic is `ppocr_steps`; the client is `ocr_client`."""

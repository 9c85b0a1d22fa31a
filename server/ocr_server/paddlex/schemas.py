"""Request and response bodies of PaddleX's OCR serving API (`POST /ocr`), as pydantic models.

Field names, types and meanings follow the PaddleX general OCR pipeline's serving documentation: the
original body (`file`, `fileType`, `inferenceParams.maxLongSide`; results `texts` and `image`) and the
PaddleX 3 fields (`useDocOrientationClassify` ... `visualize`; results `prunedResult` and `ocrImage`).
Both result shapes are returned, so clients written for either run unchanged.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["InferenceParams", "OcrRequest", "TextItem", "OcrResultItem", "OcrResult", "OcrResponse",
           "ErrorResponse"]


class InferenceParams(BaseModel):
    """PaddleX's original inference parameters."""

    maxLongSide: int | None = Field(None, gt=0, description="Scale the image for detection so that its longer "
                                                            "side is at most this (limit_type max).")


class OcrRequest(BaseModel):
    """The body of `POST /ocr`. Unknown fields are ignored (as PaddleX does)."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(..., description="Base64 of an image or PDF file, or its URL (URLs only from the "
                                       "hosts the gateway allows).")
    fileType: Literal[0, 1] | None = Field(None, description="0: PDF, 1: image, null: inferred. The file's "
                                                             "bytes decide when they say otherwise.")
    inferenceParams: InferenceParams | None = None
    useDocOrientationClassify: bool | None = None
    useDocUnwarping: bool | None = None
    useTextlineOrientation: bool | None = None
    textDetLimitSideLen: int | None = None
    textDetLimitType: Literal["min", "max"] | None = None
    textDetThresh: float | None = None
    textDetBoxThresh: float | None = None
    textDetUnclipRatio: float | None = None
    textRecScoreThresh: float | None = None
    visualize: bool | None = Field(None, description="Return the result pictures (null: yes).")


class TextItem(BaseModel):
    """One text line in the original PaddleX shape."""

    poly: list[list[int]]
    text: str
    score: float


class OcrResultItem(BaseModel):
    """The result of one image or PDF page."""

    prunedResult: dict[str, Any]
    ocrImage: str | None = Field(None, description="JPEG (base64): the page with numbered boxes | the texts.")
    docPreprocessingImage: str | None = None
    inputImage: str | None = None
    texts: list[TextItem]
    image: str | None = Field(None, description="The same picture as ocrImage (original PaddleX field).")


class OcrResult(BaseModel):
    ocrResults: list[OcrResultItem]
    dataInfo: dict[str, Any]


class OcrResponse(BaseModel):
    logId: str
    errorCode: int = 0
    errorMsg: str = "Success"
    result: OcrResult


class ErrorResponse(BaseModel):
    logId: str
    errorCode: int
    errorMsg: str

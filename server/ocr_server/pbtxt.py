"""The one reader/writer of Triton `config.pbtxt` files, through Triton's own protobuf schema.

Parsing with `model_config_pb2.ModelConfig` refuses a misspelt field or a malformed file at assembly
time instead of at tritonserver's model load.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc.model_config_pb2 import ModelConfig

__all__ = ["ModelConfig", "parse", "load", "dump", "write", "parameters", "set_parameters",
           "load_repository"]


def parse(text: str, where: str = "config.pbtxt") -> ModelConfig:
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"{where}: not a valid Triton model config: {exc}") from exc


def load(path: Path) -> ModelConfig:
    return parse(Path(path).read_text(), str(path))


def dump(config: ModelConfig) -> str:
    return str(text_format.MessageToString(config))


def write(config: ModelConfig, path: Path, header: str = "") -> None:
    """Write `config` to `path`; `header` (one comment line per line) says where it came from."""
    lines = "".join(f"# {line}\n" for line in header.splitlines())
    Path(path).write_text(lines + dump(config))


def parameters(config: ModelConfig) -> dict[str, str]:
    """`parameters { key: K value { string_value: V } }` -> {K: V}, in key order."""
    return {key: config.parameters[key].string_value for key in sorted(config.parameters)}


def set_parameters(config: ModelConfig, values: Mapping[str, str]) -> None:
    """Replace existing parameters' values; a key the config does not define is an error naming it."""
    unknown = sorted(set(values) - set(config.parameters))
    if unknown:
        raise KeyError(f"model '{config.name}' has no parameter(s) {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(config.parameters))}")
    for key, value in values.items():
        config.parameters[key].string_value = str(value)


def load_repository(repository: Path) -> dict[str, ModelConfig]:
    """{model name: config} of every model in a model repository (one directory per model)."""
    return {path.parent.name: load(path) for path in sorted(Path(repository).glob("*/config.pbtxt"))}

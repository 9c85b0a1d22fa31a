"""Fuzz the public front with generated hostile requests over HTTP and gRPC (seeded, bounded).

Each request breaks something on purpose (JSON grammar: depth, size, types, Unicode; KServe fields and
extensions; raw tensor framing; transport headers) and carries bytes that are not an image, so even a
request the front admits must come back as a client error from Triton. After each batch: tritonserver
is the same process (no crash, no restart) and a real image still reads through the front.
"""
from __future__ import annotations

import http.client
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import png, text_page

SEED = 20
BATCHES, PER_BATCH = 8, 25           # per protocol: 200 HTTP and 200 gRPC requests
NOT_AN_IMAGE = b"GIF89a-not-really-an-image"
INTERNAL = ["det_preprocess", "det_model", "det_postprocess", "rec_pipeline", "cls_model", "rec_model"]
GRPC_CLIENT_ERRORS = {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}


# ---------------------------------------------------------------------------------------------- grammar
def random_string(rng: random.Random) -> str:
    pools = ["abc", "\x00\n\r\t\x1b", "é漢字🙂\u202e\ufeff", "\"\\/{}[],:", "\U0010ffff\u2028"]
    return "".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 40)))


def random_json(rng: random.Random, depth: int = 0) -> str:
    """A random JSON text (or a near-JSON one: lone surrogates, huge numbers, bare constants)."""
    kind = rng.randint(0, 9 if depth < 3 else 5)
    if kind == 0:
        return rng.choice(["null", "true", "false", "NaN", "Infinity", "-0", "1e999", "-1e-999"])
    if kind == 1:
        return str(rng.choice([0, -1, 2**31, 2**63, -(2**64), 10**400]))
    if kind == 2:
        return repr(rng.uniform(-1e40, 1e40))
    if kind in (3, 4):
        return json.dumps(random_string(rng), ensure_ascii=rng.random() < 0.5)
    if kind == 5:
        return rng.choice(['"\\ud800"', '"\\udfff\\ud800"', '"\\u0000"', '"unterminated'])
    if kind in (6, 7):
        return "[" + ",".join(random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    items = (f"{json.dumps(random_string(rng))}:{random_json(rng, depth + 1)}" for _ in range(rng.randint(0, 4)))
    return "{" + ",".join(items) + "}"


def deep(rng: random.Random) -> str:
    n = rng.choice([9, 64, 1000, 20000, 200000])
    opener = rng.choice(["[", '{"a":'])
    closer = "]" if opener == "[" else "}"
    return opener * n + "1" + closer * n


# ---------------------------------------------------------------------------------------------- HTTP
def http_base() -> dict[str, Any]:
    return {"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(NOT_AN_IMAGE) + 4}}],
            "outputs": [{"name": "texts", "parameters": {"binary_data": True}}]}


def http_body(header: str | bytes, binary: bytes = struct.pack("<I", len(NOT_AN_IMAGE)) + NOT_AN_IMAGE
              ) -> tuple[bytes, dict[str, str]]:
    head = header.encode("utf-8", "surrogatepass") if isinstance(header, str) else header
    return head + binary, {"Inference-Header-Content-Length": str(len(head))}


def http_case(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    """(path, body, headers) of one hostile HTTP request."""
    path = "/v2/models/ocr/infer"
    req = http_base()
    kind = rng.randint(0, 11)
    if kind == 0:  # deep nesting somewhere
        where = rng.choice(["inputs", "data", "parameters", "outputs", "extra", "input_parameters"])
        text = json.dumps(req)
        d = deep(rng)
        if where == "data":
            text = text.replace('"parameters": {"binary_data_size": 30}', f'"data": {d}')
        elif where == "input_parameters":
            text = text.replace('"binary_data_size": 30', f'"binary_data_size": {d}')
        elif where == "extra":
            text = text[:-1] + f', "x": {d}}}'
        else:
            text = text.replace(f'"{where}": [', f'"{where}": [{d}, ', 1) if where != "parameters" else \
                text[:-1] + f', "parameters": {{"a": {d}}}}}'
        body, headers = http_body(text)
        return path, body, headers
    if kind == 1:  # a field replaced by a random JSON value
        field = rng.choice(["name", "shape", "datatype", "parameters", "inputs", "outputs", "id", "data"])
        text = json.dumps(req)
        value = random_json(rng)
        if field in ("inputs", "outputs"):
            text = text.replace(f'"{field}": [', f'"{field}": {value}, "_": [', 1)
        elif field in ("id", "data"):
            text = text[:-1] + f', "{field}": {value if field == "data" else "[" + value + "]"}}}'
        else:
            text = text.replace(f'"{field}": ', f'"{field}": {value}, "_{field}": ', 1)
        body, headers = http_body(text)
        return path, body, headers
    if kind == 2:  # extensions this server does not offer
        target = rng.choice([req["inputs"][0]["parameters"], req["outputs"][0]["parameters"], None])
        key = rng.choice(["classification", "shared_memory_region", "shared_memory_offset",
                          "shared_memory_byte_size", "sequence_id", "sequence_start", random_string(rng)])
        extension_value = rng.choice([2, 0, -1, "region", True, 2**70])
        if target is None:
            req["parameters"] = {key: extension_value}
        else:
            target[key] = extension_value
        return (path, *http_body(json.dumps(req)))
    if kind == 3:  # binary framing that does not add up
        size = rng.choice([0, 3, len(NOT_AN_IMAGE), len(NOT_AN_IMAGE) + 5, 2**31, -4, 2**64])
        req["inputs"][0]["parameters"]["binary_data_size"] = size
        return (path, *http_body(json.dumps(req)))
    if kind == 4:  # element length prefixes that lie
        claim = rng.choice([len(NOT_AN_IMAGE) + 1, 2**32 - 1, 0])
        binary = struct.pack("<I", claim) + NOT_AN_IMAGE
        count = rng.choice([[2], [1, 1], [0]])
        req["inputs"][0]["shape"] = count
        return (path, *http_body(json.dumps(req), binary))
    if kind == 5:  # the header length header lies
        body, _ = http_body(json.dumps(req))
        return path, body, {"Inference-Header-Content-Length": rng.choice(["-1", "abc", str(len(body) + 10), "0",
                                                                            "99999999999999999999"])}
    if kind == 6:  # not JSON at all
        blob = rng.choice([bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))), b"\xff\xfe{}",
                           b"\xef\xbb\xbf{}", json.dumps(req).encode()[:rng.randint(1, 60)]])
        return path, blob, {}
    if kind == 7:  # shapes and types that do not match the model
        req["inputs"][0]["shape"] = rng.choice([[-1], [1, 1], [], [2**40], [0], [1.5]])
        req["inputs"][0]["datatype"] = rng.choice(["BYTES", "FP32", "UINT8", "STRING", ""])
        if req["inputs"][0]["shape"] == [1] and req["inputs"][0]["datatype"] == "BYTES":
            req["inputs"][0]["shape"] = [3]
        return (path, *http_body(json.dumps(req)))
    if kind == 8:  # JSON data of the wrong kind
        values = rng.choice([[random_string(rng)] * 2, [1], [[["x"]]], [{"a": 1}], [None], [1e400]])
        req["inputs"] = [{"name": rng.choice(["image_bytes", "limit_side_len", "thresh", "use_textline_orientation"]),
                          "shape": [1], "datatype": rng.choice(["BYTES", "INT32", "FP32", "BOOL"]), "data": values}]
        text = json.dumps(req).replace("1e400", "1e400")
        if values == [[["x"]]] or values == [random_string(rng)] * 2:
            text = text.replace('"shape": [1]', '"shape": [5]')
        return path, text.encode("utf-8", "surrogatepass"), {}
    if kind == 9:  # endpoints that are not served
        model = urllib.parse.quote(rng.choice(INTERNAL + ["ocr", random_string(rng) or "x"]), safe="")
        path = rng.choice([f"/v2/models/{model}/generate", f"/v2/models/{model}/generate_stream",
                           f"/v2/models/{model}/infer" if model != "ocr" else "/v2/models/ocr/generate",
                           "/v2/systemsharedmemory/region/x/register", "/v2/repository/models/ocr/unload",
                           "/v2/models/ocr/versions/7/infer"])
        return path, ("{" + f'"text_input": {deep(rng)}' + "}").encode(), {}
    if kind == 10:  # compressed bodies are not accepted
        body, headers = http_body(json.dumps(req))
        return path, body, {**headers, "Content-Encoding": rng.choice(["gzip", "deflate", "br"])}
    # unknown or duplicate keys (the last duplicate wins in Python, the first in some parsers)
    text = json.dumps(req)
    text = text.replace('"outputs": [{"name": "texts", "parameters": {"binary_data": true}}]',
                        rng.choice(['"outputs": [{"name": "texts", "parameters": {"classification": 2}, '
                                    '"parameters": {"binary_data": true}}]',
                                    '"outputs": [{"name": "texts", "class_count": 2}]',
                                    '"outputs": [{"name": "image_info"}]',
                                    '"outputs": [{"name": "texts"}, {"name": "texts"}]']))
    return (path, *http_body(text))


def send_http(url: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    host, port = url.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- gRPC
def framed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def grpc_case(rng: random.Random) -> bytes:
    """The serialized bytes of one hostile ModelInferRequest (or bytes that are not one)."""
    from tritonclient.grpc import service_pb2

    req = service_pb2.ModelInferRequest(model_name="ocr")
    tensor = req.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
    req.raw_input_contents.append(framed(NOT_AN_IMAGE))
    out = req.outputs.add(name="texts")
    kind = rng.randint(0, 9)
    if kind == 0:  # classification and shared memory
        target = rng.choice([out.parameters, tensor.parameters, req.parameters])
        key = rng.choice(["classification", "shared_memory_region", "shared_memory_byte_size",
                          "shared_memory_offset", "sequence_id", "binary_data_output", random_string(rng)])
        choice = rng.randint(0, 2)
        if choice == 0:
            target[key].int64_param = rng.choice([2, 1, -1, 2**62])
        elif choice == 1:
            target[key].string_param = random_string(rng)
        else:
            target[key].bool_param = True
    elif kind == 1:  # shapes
        del tensor.shape[:]
        tensor.shape.extend(rng.choice([[-1], [0], [2], [1, 1], [], [2**40], [-(2**62)], [3, 2**40]]))
    elif kind == 2:  # datatypes
        tensor.datatype = rng.choice(["FP32", "INT64", "STRING", "", "BYTES\x00", random_string(rng)])
    elif kind == 3:  # raw framing
        del req.raw_input_contents[:]
        req.raw_input_contents.append(rng.choice([
            struct.pack("<I", 2**32 - 1) + NOT_AN_IMAGE, NOT_AN_IMAGE[:3], framed(NOT_AN_IMAGE, NOT_AN_IMAGE),
            struct.pack("<I", len(NOT_AN_IMAGE) + 1) + NOT_AN_IMAGE, b""]))
        if rng.random() < 0.5:
            req.raw_input_contents.append(b"\x00" * rng.randint(0, 8))
    elif kind == 4:  # typed contents that do not match
        del req.raw_input_contents[:]
        field = rng.choice(["bytes_contents", "int_contents", "fp32_contents", "bool_contents"])
        choices: dict[str, list[Any]] = {"bytes_contents": [NOT_AN_IMAGE] * rng.choice([0, 2]), "int_contents": [1],
                                         "fp32_contents": [1.0], "bool_contents": [True]}
        contents = choices[field]
        getattr(tensor.contents, field).extend(contents)
        if rng.random() < 0.5:
            req.raw_input_contents.append(framed(NOT_AN_IMAGE))
    elif kind == 5:  # models that are not public
        req.model_name = rng.choice(INTERNAL + [random_string(rng), "ocr\x00", "OCR"])
    elif kind == 6:  # versions, ids and names
        choice = rng.randint(0, 2)
        if choice == 0:
            req.model_version = rng.choice(["7", "-1", random_string(rng) or "x"])
        elif choice == 1:
            out.name = rng.choice(["image_info", "prob_map", random_string(rng)])
        else:
            tensor.name = rng.choice(["x", "det_input", random_string(rng)])
    elif kind == 7:  # duplicated inputs and outputs, many tensors
        n = rng.choice([2, 17, 100])
        for _ in range(n - 1):
            req.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
            req.raw_input_contents.append(framed(NOT_AN_IMAGE))
        req.outputs.add(name="texts")
    elif kind == 8:  # parameters of the wrong type
        req.parameters["priority"].string_param = random_string(rng)
        if rng.random() < 0.5:
            req.parameters["timeout"].double_param = rng.uniform(-1e9, 1e9)
    else:  # not a ModelInferRequest at all
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400)))
    return req.SerializeToString()


# ---------------------------------------------------------------------------------------------- test
def reads_a_real_image(fronted) -> None:
    from ocr_client import OcrClient

    with OcrClient(fronted.grpc_url, timeout=120, retries=0) as c:
        assert len(c.ocr(png(text_page(2, seed=11)[0])).lines) >= 2


def run_batches(fronted, send: Callable[[random.Random], str], check: Callable[[str], bool]) -> list[str]:
    rng = random.Random(SEED)
    pid = fronted.triton_pid()
    assert pid is not None
    answers = []
    for batch in range(BATCHES):
        for i in range(PER_BATCH):
            answer = send(rng)
            answers.append(answer)
            assert check(answer), f"batch {batch} request {i}: {answer}"
        assert fronted.triton_pid() == pid, f"tritonserver restarted during batch {batch}"
        reads_a_real_image(fronted)
    return answers


def test_fuzz_http(fronted):
    def send(rng: random.Random) -> str:
        path, body, headers = http_case(rng)
        return f"{send_http(fronted.http_url, path, body, headers)} {path}"

    answers = run_batches(fronted, send, lambda a: 400 <= int(a.split()[0]) < 500)
    assert len({a.split()[0] for a in answers}) >= 2  # the generator reaches more than one refusal


def test_fuzz_grpc(fronted):
    import grpc

    channel = grpc.insecure_channel(fronted.grpc_url)
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def send(rng: random.Random) -> str:
        try:
            infer(grpc_case(rng), timeout=60)
        except grpc.RpcError as exc:
            return f"{exc.code().name} {exc.details()[:120]!r}"
        return "OK"

    try:
        answers = run_batches(fronted, send, lambda a: a.split()[0] in GRPC_CLIENT_ERRORS)
    finally:
        channel.close()
    assert len({a.split()[0] for a in answers}) >= 2


def test_launcher_sizes_the_front_from_the_repository(fronted):
    """The front's body limit is det_preprocess's max_images_per_request x max_image_bytes (+ 1 MiB)."""
    import re

    from ocr_server.launcher import request_bytes_limit

    config = (fronted.repository / "det_preprocess" / "config.pbtxt").read_text()
    def setting(key: str) -> int:
        found = re.search(rf'key: "{key}"\s*value\s*\{{\s*string_value: "(\d+)"', config)
        assert found, key
        return int(found.group(1))

    images, image_bytes = setting("max_images_per_request"), setting("max_image_bytes")
    assert request_bytes_limit(fronted.repository) == images * (image_bytes + 4) + (1 << 20)
    assert f"--max-request-bytes={request_bytes_limit(fronted.repository)}" in open(
        f"/proc/{front_pid(fronted)}/cmdline").read().replace("\0", " ")


def front_pid(fronted) -> int:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                args = open(f"/proc/{entry.name}/cmdline").read().split("\0")
                stat = open(f"/proc/{entry.name}/stat").read()
            except OSError:
                continue
            if "ocr_server.front" in args and int(stat[stat.rindex(")") + 2:].split()[1]) == fronted.proc.pid:
                return int(entry.name)
    raise AssertionError("no front process under the launcher")


@pytest.fixture(scope="module")
def small_front(fronted, tmp_path_factory):
    """A second front before the same Triton with a 1 MB body limit."""
    from ocr_server.local_server import accepts, free_port

    hp, gp = free_port(), free_port()
    log = (tmp_path_factory.mktemp("small_front") / "front.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ocr_server.front", f"--upstream-grpc={fronted.internal_grpc_url}",
                             f"--upstream-http={fronted.internal_http_url}", f"--http-port={hp}",
                             f"--grpc-port={gp}", "--max-request-bytes=1000000"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not (accepts(hp) and accepts(gp)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    yield f"127.0.0.1:{gp}", f"127.0.0.1:{hp}"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_oversized_request_is_refused(fronted, small_front, protocol):
    """A message over the front's limit is refused before it is forwarded."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    pid = fronted.triton_pid()
    mod = grpcclient if protocol == "grpc" else httpclient
    x = mod.InferInput("image_bytes", [1], "BYTES")
    x.set_data_from_numpy(np.array([b"\x89PNG" + b"\x00" * 2_000_000], dtype=np.object_))
    url = small_front[0] if protocol == "grpc" else small_front[1]
    with mod.InferenceServerClient(url) as c, pytest.raises(InferenceServerException) as info:
        c.infer("ocr", [x])
    assert str(info.value.status()) in ("StatusCode.RESOURCE_EXHAUSTED", "413")
    assert fronted.triton_pid() == pid

"""The public front (server/ocr_server/front) before a supervised server, as clients see it.

The client library and the CLI work through it unchanged (gRPC and HTTP); only the `ocr` model is
reachable; extensions that crashed Triton are refused with client errors and Triton keeps its PID;
one JSON log line per request; bearer-token auth and TLS; and the drain at SIGTERM.
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers import png, text_page
from ocr_server.local_server import free_port, start_fronted, stop_fronted

INTERNAL_MODELS = ["det_preprocess", "det_model", "det_postprocess", "rec_pipeline", "cls_model", "rec_model"]
CLI = str(Path(sys.executable).parent / "ocr-client")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None,
         context=None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60, context=context) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except urllib.error.URLError:  # not listening (yet)
        return 0, {}, b""


def grpc_code(fn) -> str:
    from tritonclient.utils import InferenceServerException

    try:
        fn()
    except InferenceServerException as exc:
        return str(exc.status())
    return "OK"


def direct_texts(grpc_url: str, blob: bytes) -> list[str]:
    """What Triton itself answers (its loopback port, no front): the reference for answers through the front."""
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(grpc_url) as c:
        result = c.infer("ocr", [image_input(grpcclient, blob)], client_timeout=120)
    return [t.decode() for t in result.as_numpy("texts")]


def image_input(mod, blob: bytes):
    x = mod.InferInput("image_bytes", [1], "BYTES")
    x.set_data_from_numpy(np.array([blob], dtype=np.object_))
    return x


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_client_library_reads_through_the_front(fronted, protocol):
    from ocr_client import OcrClient

    blob = png(text_page(3, seed=5)[0])
    url = fronted.grpc_url if protocol == "grpc" else fronted.http_url
    with OcrClient(url, protocol=protocol, timeout=120) as c:
        assert c.is_live() and c.is_ready()
        result = c.ocr(blob)
    assert [line.text for line in result.lines] == direct_texts(fronted.internal_grpc_url, blob)
    assert len(result.lines) >= 3


def test_cli_through_the_front(fronted, tmp_path):
    import cv2

    img, _ = text_page(2, seed=6)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    texts = direct_texts(fronted.internal_grpc_url, png(img))
    out = tmp_path / "out.jsonl"
    proc = subprocess.run([CLI, "infer", "--url", fronted.http_url, "--protocol", "http", "--jsonl", str(out),
                           str(tmp_path / "a.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [x["text"] for x in json.loads(out.read_text())["lines"]] == texts
    health = subprocess.run([CLI, "health", "--url", fronted.grpc_url], capture_output=True, text=True, timeout=60)
    assert health.returncode == 0, health.stdout + health.stderr


def test_only_the_ocr_model_is_reachable(fronted):
    import tritonclient.grpc as grpcclient

    pid = fronted.triton_pid()
    blob = png(text_page(1)[0])
    with grpcclient.InferenceServerClient(fronted.grpc_url) as c:
        for model in INTERNAL_MODELS:
            assert grpc_code(lambda m=model: c.get_model_metadata(m)) == "StatusCode.NOT_FOUND"
            assert grpc_code(lambda m=model: c.get_model_config(m)) == "StatusCode.NOT_FOUND"
            assert grpc_code(lambda m=model: c.is_model_ready(m)) == "StatusCode.NOT_FOUND"
            assert grpc_code(lambda m=model: c.infer(m, [image_input(grpcclient, blob)])) == "StatusCode.NOT_FOUND"
        # the admin and extension APIs are not served at all
        assert grpc_code(lambda: c.get_model_repository_index()) == "StatusCode.UNIMPLEMENTED"
        assert grpc_code(lambda: c.unload_model("ocr")) == "StatusCode.UNIMPLEMENTED"
        assert grpc_code(lambda: c.get_system_shared_memory_status()) == "StatusCode.UNIMPLEMENTED"
        assert [m.name for m in c.get_inference_statistics().model_stats] == ["ocr"]  # never the internal ones
        assert grpc_code(lambda: c.get_inference_statistics("det_model")) == "StatusCode.NOT_FOUND"
        assert c.get_model_metadata("ocr").name == "ocr"
    base = f"http://{fronted.http_url}"
    for model in INTERNAL_MODELS:
        assert http("GET", f"{base}/v2/models/{model}")[0] == 404
        assert http("GET", f"{base}/v2/models/{model}/ready")[0] == 404
        assert http("POST", f"{base}/v2/models/{model}/infer", b'{"inputs":[]}')[0] == 404
    assert http("POST", f"{base}/v2/repository/index", b"{}")[0] == 404
    assert http("POST", f"{base}/v2/repository/models/ocr/unload", b"{}")[0] == 404
    assert http("GET", f"{base}/v2/models/ocr/stats")[0] == 200
    assert http("GET", f"{base}/v2/models/stats")[0] == 404
    assert fronted.triton_pid() == pid


def test_health_follows_readiness(fronted):
    import tritonclient.grpc as grpcclient

    base = f"http://{fronted.http_url}"
    assert http("GET", f"{base}/v2/health/live")[0] == 200
    assert http("GET", f"{base}/v2/health/ready")[0] == 200
    assert http("GET", f"{base}/v2/models/ocr/ready")[0] == 200
    status, _, body = http("GET", f"{base}/v2/models/ocr")
    assert status == 200 and json.loads(body)["name"] == "ocr"
    with grpcclient.InferenceServerClient(fronted.grpc_url) as c:
        assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("ocr")


def test_extensions_that_crashed_triton_are_refused(fronted):
    """class_count (gRPC) / classification (HTTP) on string outputs killed tritonserver with SIGFPE,
    and deeply nested JSON in a tensor's data with SIGSEGV (docs/front.md); now: client errors."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    pid = fronted.triton_pid()
    blob = png(text_page(1)[0])
    with grpcclient.InferenceServerClient(fronted.grpc_url) as c:
        code = grpc_code(lambda: c.infer("ocr", [image_input(grpcclient, blob)],
                                         outputs=[grpcclient.InferRequestedOutput("texts", class_count=2)]))
        assert code == "StatusCode.INVALID_ARGUMENT"
    with httpclient.InferenceServerClient(fronted.http_url) as c:
        code = grpc_code(lambda: c.infer("ocr", [image_input(httpclient, blob)],
                                         outputs=[httpclient.InferRequestedOutput("texts", class_count=2)]))
        assert code == "400"
    base = f"http://{fronted.http_url}/v2/models/ocr"
    deep = b"[" * 100000 + b"]" * 100000
    for path, body in [("/infer", b'{"inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","data":'
                        + deep + b"}]}"),
                       ("/infer", b'{"parameters":' + b'{"a":' * 50000 + b"1" + b"}" * 50000 + b',"inputs":[]}'),
                       ("/generate", b'{"text_input":' + deep + b"}"), ("/generate_stream", b"{}")]:
        status, _, answer = http("POST", base + path, body, {"Content-Type": "application/json"})
        assert status == 400 and "error" in json.loads(answer), (path, status, answer[:200])
    assert fronted.triton_pid() == pid
    with grpcclient.InferenceServerClient(fronted.grpc_url) as c:
        assert c.infer("ocr", [image_input(grpcclient, blob)]).as_numpy("texts").size == 1


def test_one_log_line_per_request_with_its_id(fronted):
    import tritonclient.grpc as grpcclient

    blob = png(text_page(2, seed=3)[0])
    n_lines = len(direct_texts(fronted.internal_grpc_url, blob))
    with grpcclient.InferenceServerClient(fronted.grpc_url) as c:
        c.infer("ocr", [image_input(grpcclient, blob)], request_id="front-log-grpc-1")
        forged = 'x"\n{"event":"request","request_id":"forged"}'
        c.infer("ocr", [image_input(grpcclient, blob)], request_id=forged)
        c.infer("ocr", [image_input(grpcclient, blob)], headers={"x-request-id": "front-log-grpc-2"})
    header = json.dumps({"inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(blob) + 4}}]}).encode()
    status, headers, _ = http("POST", f"http://{fronted.http_url}/v2/models/ocr/infer",
                              header + len(blob).to_bytes(4, "little") + blob,
                              {"Inference-Header-Content-Length": str(len(header)), "x-request-id": "front-log-http-1"})
    assert status == 200 and headers.get("x-request-id") == "front-log-http-1"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the log is written off the request path
        lines = [json.loads(line) for line in fronted.log().splitlines() if line.startswith('{"ts"')]
        ids = [line["request_id"] for line in lines]
        if "front-log-http-1" in ids:
            break
        time.sleep(0.2)
    assert "forged" not in ids  # a client string never becomes a line of its own
    for rid, protocol, outcome in [("front-log-grpc-1", "grpc", "OK"), ("front-log-grpc-2", "grpc", "OK"),
                                   ("front-log-http-1", "http", 200)]:
        (line,) = [x for x in lines if x["request_id"] == rid]
        assert line["protocol"] == protocol and line["outcome"] == outcome
        assert line["images"] == 1 and line["lines"] == n_lines and line["latency_ms"] > 0


# ---------------------------------------------------------------------------------------------- auth, TLS
def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost and its key (PEM files)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_auth_and_tls(fronted, tmp_path):
    """A second front with a bearer token and TLS before the same Triton."""
    import ssl

    import tritonclient.grpc as grpcclient

    from ocr_client import OcrClient, OcrError

    cert, key = make_certificate(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    token_file.chmod(0o600)
    hp, gp = free_port(), free_port()
    log_path = tmp_path / "front.log"
    upstream = [f"--upstream-grpc={fronted.internal_grpc_url}",
                f"--upstream-http={fronted.internal_http_url}"]
    proc = subprocess.Popen([sys.executable, "-m", "ocr_server.front", *upstream, f"--http-port={hp}",
                             f"--grpc-port={gp}", f"--tls-cert={cert}", f"--tls-key={key}",
                             f"--auth-token-file={token_file}"],
                            stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 60
        while http("GET", f"https://127.0.0.1:{hp}/v2/health/ready", context=context)[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        img, _ = text_page(2, seed=8)
        texts = direct_texts(fronted.internal_grpc_url, png(img))
        for protocol, port in (("grpc", gp), ("http", hp)):
            url = f"127.0.0.1:{port}"
            with OcrClient(url, protocol=protocol, timeout=60, retries=0, auth_token="s3cret-token",
                           root_certificates=str(cert)) as c:
                assert [x.text for x in c.ocr(png(img)).lines] == texts
            for token in (None, "wrong-token"):
                with OcrClient(url, protocol=protocol, timeout=30, retries=0, auth_token=token,
                               root_certificates=str(cert)) as c:
                    assert c.is_ready()  # health stays open
                    with pytest.raises(OcrError, match="bearer token"):
                        c.ocr(png(img))
            with OcrClient(url, protocol=protocol, timeout=10, retries=0, auth_token="s3cret-token") as c:
                with pytest.raises(OcrError):  # plaintext against a TLS port
                    c.ocr(png(img))
        with grpcclient.InferenceServerClient(f"127.0.0.1:{gp}", ssl=True, root_certificates=str(cert)) as c:
            assert grpc_code(lambda: c.get_model_metadata("ocr")) == "StatusCode.UNAUTHENTICATED"
            assert c.get_model_metadata("ocr", headers={"authorization": "Bearer s3cret-token"}).name == "ocr"
        status, headers, _ = http("GET", f"https://127.0.0.1:{hp}/v2/models/ocr", context=context)
        assert status == 401 and headers.get("www-authenticate") == "Bearer"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


# ---------------------------------------------------------------------------------------------- drain
def test_drain_finishes_in_flight_requests_and_refuses_new_ones(tmp_path):
    """SIGTERM to the launcher: the requests in flight all succeed (their BLS calls to cls/rec included),
    later ones get UNAVAILABLE / 503 (retryable), and everything exits within the grace period."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    server = start_fronted(tmp_path, ["--grace-period", "60"])
    sockets = server.socket_dir()
    try:
        assert sockets is not None and sockets.is_dir()
        blob = png(text_page(30, width=1200, seed=9)[0])
        texts = direct_texts(server.internal_grpc_url, blob)
        results: list[str] = []

        def send() -> None:
            try:
                with grpcclient.InferenceServerClient(server.grpc_url) as c:
                    r = c.infer("ocr", [image_input(grpcclient, blob)] * 1, client_timeout=120)
                results.append("ok" if [t.decode() for t in r.as_numpy("texts")] == texts else "wrong")
            except InferenceServerException as exc:
                results.append(f"{exc.status()}: {exc.message()}")

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # all four are in flight (one such request takes seconds here)
        server.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while server.ready():
            assert time.monotonic() < deadline, "readiness still true after SIGTERM"
            time.sleep(0.05)
        late: list[str] = []
        with grpcclient.InferenceServerClient(server.grpc_url) as c:
            late.append(grpc_code(lambda: c.infer("ocr", [image_input(grpcclient, blob)], client_timeout=30)))
        with httpclient.InferenceServerClient(server.http_url) as c:
            late.append(grpc_code(lambda: c.infer("ocr", [image_input(httpclient, blob)])))
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert results == ["ok"] * 4, results
        assert late == ["StatusCode.UNAVAILABLE", "503"], late
        assert server.proc.wait(timeout=90) == 0
        assert "draining" in server.log()
        assert not sockets.exists()  # the launcher removes the socket directory it made
    finally:
        stop_fronted(server)
        if server.proc.returncode is None:
            os.killpg(server.proc.pid, signal.SIGKILL)


def listening_tcp_ports(pid: int) -> set[int]:
    """The TCP ports process `pid` listens on (its socket inodes matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in os.scandir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(fd.path)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


def test_default_triton_has_no_tcp_door_and_no_key(fronted):
    """The default (ocr-serve's) layout: Triton's HTTP/gRPC on Unix sockets in an owner-only directory the
    launcher made, its only TCP port the metrics one, no admin key on any command line or in the stubs."""
    import stat

    from ocr_server.launcher import ADMIN_HEADER, stub_processes

    from ocr_client import OcrClient

    pid = fronted.triton_pid()
    assert pid is not None
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert not [a for a in argv if "restricted" in a], argv
    ps = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    ours = [line for line in ps.splitlines()  # launcher, front, tritonserver, stubs (other servers may share the host)
            if {int(x) for x in line.split()[:2]} & {fronted.proc.pid, pid}]
    assert len(ours) >= 3 and not [line for line in ours if ADMIN_HEADER in line], ours
    assert listening_tcp_ports(pid) == {fronted.metrics_port}
    sockets = fronted.socket_dir()
    assert sockets is not None and stat.S_IMODE(sockets.stat().st_mode) == 0o700
    assert sockets.stat().st_uid == os.getuid()
    stubs = [s for s in stub_processes(pid) if s.alive]
    assert stubs
    for stub in stubs:
        environ = Path(f"/proc/{stub.pid}/environ").read_bytes()
        assert b"OCR_ADMIN_KEY=" not in environ and ADMIN_HEADER.encode() not in environ, stub
    blob = png(text_page(2, seed=12)[0])
    for protocol, url in (("grpc", fronted.grpc_url), ("http", fronted.http_url)):
        with OcrClient(url, protocol=protocol, timeout=120) as c:
            assert [x.text for x in c.ocr(blob).lines] == direct_texts(fronted.internal_grpc_url, blob)


@pytest.mark.parametrize("where", ["router", "gateway-port"])
def test_paddlex_gateway_behind_the_front(fronted, tmp_path, where):
    """`POST /ocr` (the PaddleX serving API) behind the front's token: mounted on its HTTP port (--router)
    or on a port of its own (--gateway-port, what ocr-serve does by default), where a taken port is skipped."""
    import base64

    token_file = tmp_path / "token"
    token_file.write_text("gw-token")
    token_file.chmod(0o600)
    hp, gp, wp = free_port(), free_port(), free_port()
    extra = (["--router=ocr_server.front.paddlex:gateway_router"] if where == "router"
             else [f"--gateway-port={wp}"])
    proc = subprocess.Popen([sys.executable, "-m", "ocr_server.front", f"--upstream-grpc={fronted.internal_grpc_url}",
                             f"--upstream-http={fronted.internal_http_url}", f"--http-port={hp}",
                             f"--grpc-port={gp}", f"--auth-token-file={token_file}", *extra],
                            stdout=(tmp_path / "front.log").open("w"), stderr=subprocess.STDOUT)
    port = hp if where == "router" else wp
    try:
        deadline = time.monotonic() + 60
        while http("GET", f"http://127.0.0.1:{hp}/v2/health/live")[0] != 200:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "front.log").read_text()
            time.sleep(0.2)
        body = json.dumps({"file": base64.b64encode(png(text_page(2, seed=13)[0])).decode(), "fileType": 1}).encode()
        headers = {"Content-Type": "application/json"}
        status, _, answer = http("POST", f"http://127.0.0.1:{port}/ocr", body, headers)
        assert status == 401, answer[:300]
        if where == "gateway-port":  # the gateway's own port answers in PaddleX's error shape
            assert json.loads(answer)["errorCode"] == 401, answer[:300]
        status, _, answer = http("POST", f"http://127.0.0.1:{port}/ocr", body,
                                 {**headers, "authorization": "Bearer gw-token"})
        assert status == 200 and json.loads(answer)["errorCode"] == 0, answer[:300]
        if where == "gateway-port":
            assert http("GET", f"http://127.0.0.1:{port}/openapi.json")[0] == 200
            with socket.socket() as taken:  # a second front whose gateway port is taken still serves KServe
                taken.bind(("127.0.0.1", 0))
                taken.listen(1)
                hp2, gp2 = free_port(), free_port()
                other = subprocess.Popen([sys.executable, "-m", "ocr_server.front",
                                          f"--upstream-grpc={fronted.internal_grpc_url}",
                                          f"--upstream-http={fronted.internal_http_url}", f"--http-port={hp2}",
                                          f"--grpc-port={gp2}", f"--gateway-port={taken.getsockname()[1]}"],
                                         stdout=(tmp_path / "front2.log").open("w"), stderr=subprocess.STDOUT)
                try:
                    while http("GET", f"http://127.0.0.1:{hp2}/v2/health/live")[0] != 200:
                        log = (tmp_path / "front2.log").read_text
                        assert other.poll() is None and time.monotonic() < deadline, log()
                        time.sleep(0.2)
                finally:
                    other.send_signal(signal.SIGTERM)
                    other.wait(timeout=60)
                assert "cannot listen" in (tmp_path / "front2.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

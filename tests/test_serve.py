"""python -m tsm.serve with the shipped tsm-diff-5m: the verdict, the OpenAI shape, the page, and
one-line 400s for bad requests (the server keeps serving). The browser test renders the page in
headless Chromium and is skipped when there is none."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import load_script
from tsm.serve import parse_args

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "serving" / "screenshot.py"


screenshot = load_script(SCRIPT, "serving_screenshot")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with screenshot.running_server("tsm-diff-5m", timeout_s=120, log_path=log) as base:
        yield base.rstrip("/")


def request(url: str, path: str, body: bytes | dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_sin_x2_is_answered_and_verified(url):
    status, text = request(url, "/api/differentiate", {"function": "sin(x^2)"})
    assert status == 200
    out = json.loads(text)
    assert out["verdict"] == "correct", out
    assert out["answer"].replace(" ", "") == "2x\\cos{(x^{2})}"
    assert out["derivative"] == "2*x*cos(x**2)"
    assert out["function"] == "sin(x^2)" and 0 < out["seconds"] < 30


def test_openai_chat_completion(url):
    status, text = request(url, "/v1/chat/completions", {
        "model": "tsm-diff-5m",
        "messages": [{"role": "system", "content": "You are a helpful assistant."},
                     {"role": "user", "content": "sin(x^2)"}]})
    assert status == 200
    out = json.loads(text)
    assert out["object"] == "chat.completion" and out["model"] == "tsm-diff-5m"
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant" and "\\boxed{" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]
    assert out["tsm"]["verdict"] == "correct"
    status, text = request(url, "/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(text)["data"]] == ["tsm-diff-5m"]


def test_a_full_task_prompt_passes_through(url):
    prompt = "Find the derivative of the following function with respect to x: x^{3} - 5 x"
    status, text = request(url, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]})
    assert status == 200
    out = json.loads(text)
    assert "\\boxed{" in out["choices"][0]["message"]["content"]
    assert out["tsm"]["derivative"] == "3*x**2 - 5"  # f read from after the prompt's colon


def test_page_has_the_input_box(url):
    status, text = request(url, "/")
    assert status == 200
    assert '<input id="function"' in text and "/api/solve" in text and "Differentiate" in text
    assert "tsm-diff-5m" in text and "<script src" not in text  # self-contained: no CDN


@pytest.mark.parametrize(("path", "body", "says"), [
    ("/api/differentiate", {"check": True}, "missing 'function'"),
    ("/api/differentiate", {"function": "x+" * 500_000}, "1000000 characters"),
    ("/api/differentiate", b'{"function": "sin(x', "not valid JSON"),
    ("/api/differentiate", b"\xff\xfe", "not valid JSON"),
    ("/api/differentiate", {"function": 3}, "non-empty string"),
    ("/api/differentiate", {"function": "sin(y)"}, "unknown symbol 'y'"),
    ("/v1/chat/completions", {"model": "tsm-diff-5m"}, "'messages'"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}]}, "cannot read f(x)"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
])
def test_bad_requests_get_a_one_line_400(url, path, body, says):
    status, text = request(url, path, body)
    assert status == 400
    assert text.count("\n") == 1 and text.endswith("\n")
    error = json.loads(text)["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"
    assert request(url, "/health")[0] == 200  # still serving


def test_an_oversized_body_is_refused_unread(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(b"POST /api/differentiate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.0 413") and "the limit is" in reply
    assert request(url, "/nowhere")[0] == 404


def test_hydra_style_arguments():
    args = parse_args(["checkpoint=models/tsm-diff-5m", "max_new_tokens=64", "--port", "0"])
    assert (args.checkpoint, args.max_new_tokens, args.port, args.host) == (
        "models/tsm-diff-5m", 64, 0, "127.0.0.1")


@pytest.mark.browser
@pytest.mark.skipif(screenshot.chromium_binary() is None, reason="no Chromium binary")
def test_the_page_answers_in_a_browser(url, tmp_path):
    page = screenshot.page_url(url + "/", "sin(x^2)")
    dom = screenshot.chromium(page, "--dump-dom")
    assert screenshot.verdict_in(dom) == "correct", dom[-2000:]
    png = tmp_path / "try_it.png"
    screenshot.chromium(page, f"--screenshot={png}", "--window-size=900,600")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_integration_is_served_with_its_own_prompt_and_check():
    """task=integration: the integration prompt around f, the answer checked by differentiating
    it, the page in the task's words; in process, with the shipped tsm-int-5m."""
    import threading

    from tsm.serve import Differentiator, make_server, url_of

    server = make_server(Differentiator("tsm-int-5m", 128, task="integration"), port=0, log_requests=False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = url_of(server).rstrip("/")
    try:
        status, text = request(base, "/api/solve", {"function": "2 x \\cos{(x^{2} )}"})
        out = json.loads(text)
        assert status == 200 and out["task"] == "integration", out
        assert out["verdict"] == "correct" and "derivative equals f(x)" in out["reason"], out
        assert out["ground_truth"] == "2*x*cos(x**2)" and "derivative" not in out
        status, text = request(base, "/api/solve", {"function": "x^2"})
        out = json.loads(text)
        if out["verdict"] == "correct":   # whatever the model says, the check is the task's own
            assert out["answer"].replace(" ", "").startswith("\\frac{x^{3}}{3}")
        prompt = "Find an antiderivative of the following function with respect to x: 3 x^{2}"
        status, text = request(base, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]})
        out = json.loads(text)
        assert status == 200 and out["tsm"]["task"] == "integration" and out["tsm"]["ground_truth"] == "3*x**2"
        status, text = request(base, "/")
        assert "Integrate with" in text and "antiderivative" in text
    finally:
        server.shutdown()
        server.server_close()


def test_an_unknown_task_is_one_line_before_loading(capsys):
    from tsm.serve import main

    assert main(["--task", "no_such_task", "--checkpoint", "tsm-diff-5m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "task=no_such_task" in err[0]

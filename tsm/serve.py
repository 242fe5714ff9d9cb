"""``python -m tsm.serve checkpoint=<HF folder | shipped name | embedded> [task=NAME]``: the model over HTTP.

Standard library only (``http.server``). The model loads once (:func:`tsm.models.load_checkpoint`)
and answers greedily; a client sends just f(x) and the server wraps it in the task's prompt
(the task's ``TaskPlugin.pose``: Diff-TSM's system prompt and the dataset's fixed phrasing, through
the tokenizer's chat template), the only format the models are trained on. ``task=`` (``--task``)
picks the task (``tsm.tasks``: ``differentiation``, the default, or ``integration`` with
``checkpoint=tsm-int-5m``); the prompt and the check are the task's own. Endpoints:

- ``GET /``: a self-contained try-it page (no CDN, no MathJax; ``/?f=sin(x^2)`` submits at load).
- ``POST /api/solve`` (also ``/api/differentiate``) ``{"function": "sin(x^2)"}`` ->
  ``{"task", "function", "function_latex", "response", "answer", "verdict", "reason", "gold_latex",
  "ground_truth", "seconds", ...}``: the boxed answer is checked by the task's check
  (``TaskPlugin.verify``; differentiation: the reward's scorer against ``sympy.diff(f, x)``, whose
  ``derivative``/``derivative_latex`` it also returns; integration: the answer's derivative against
  f, ``gold_latex`` one antiderivative); ``"check": false`` skips the check.
- ``POST /v1/chat/completions``: OpenAI-compatible (greedy, no streaming). The last user message
  is read as f(x) and posed as above; a message that is already a task prompt ("Find the
  derivative of ...") is sent as it is, with the system prompt added when the client gave none.
  The reply is a standard ``chat.completion``, plus a ``tsm`` field with the verdict when f is known.
- ``GET /v1/models``: the one model served.

Errors are one-line JSON, ``{"error": {"message": ..., "type": ...}}`` (OpenAI's shape): 400 for
bad input (no function, one that does not parse or is too long, invalid JSON), 404, 413 for a body
over 2 MiB, 500 (logged with a traceback) for a bug. Requests are served by threads; generation
is serialized by a lock (one model, one decode at a time). Torch threads follow OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

MAX_BODY_BYTES = 2 * 1024 * 1024  # larger bodies are refused unread (413)
MAX_FUNCTION_CHARS = 1000         # the generator's functions are <= 100 LaTeX chars; the parser allows 4000
USAGE_EXAMPLE = "python -m tsm.serve checkpoint=tsm-diff-5m --port 8000"
# A message that asks for the task in words is a full task prompt, not a bare f(x).
_TASK_PROMPT = re.compile(r"derivative|differentiate|d\s*/\s*d\s*x|integra", re.IGNORECASE)

VERDICTS = {  # Score.reason -> the sentence the page and the API show
    "correct": "the answer equals f'(x)",
    "wrong": "the answer parses but is not f'(x)",
    "no_box": "no \\boxed{} answer in the response",
    "empty": "the boxed answer is empty",
    "unbalanced": "the last \\boxed{ is never closed",
    "too_long": "the answer is over a size cap",
    "too_deep": "the answer is nested too deeply",
    "unparsable": "the boxed answer does not parse",
    "invalid": "the boxed answer is not a function of x alone",
    "timeout": "the check ran out of time",
    "error": "the check failed unexpectedly",
    "bad_gold": "sympy's derivative could not be read back",
}
_CORRECT = {"differentiation": "the answer equals f'(x)",
            "integration": "the answer's derivative equals f(x)"}
# the page's words per task: (title verb, button, the reference answer's label)
_PAGE_WORDS = {"differentiation": ("Differentiate", "Differentiate", "sympy's f'(x)"),
               "integration": ("Integrate", "Integrate", "one antiderivative (the generator's F)")}


class RequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP status, the message says why."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = int(status)


@dataclass(frozen=True)
class Generation:
    response: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    seconds: float


class Differentiator:
    """One loaded model and the task's prompt around it; thread-safe (generation takes a lock)."""

    def __init__(self, checkpoint: str, max_new_tokens: int = 128, task: str = "differentiation"):
        from tsm.evaluation import resolve_checkpoint
        from tsm.models import load_checkpoint
        from tsm.rollout.hf import HFEngine
        from tsm.tasks.base import get_task

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.task = get_task(task)  # before the model: an unknown task is one line, not a load
        self.checkpoint = str(checkpoint)
        self.name = _model_name(self.checkpoint)
        self.max_new_tokens = max_new_tokens
        model, tokenizer = load_checkpoint(resolve_checkpoint(self.checkpoint))
        self.tokenizer = tokenizer
        self.engine = HFEngine(model.eval(), tokenizer, batch_size=1)
        positions = getattr(model.config, "max_position_embeddings", None)
        self.max_prompt_tokens = (positions - max_new_tokens) if positions else None
        self.created = int(time.time())
        self._lock = threading.Lock()

    def generate(self, messages: list[dict[str, str]], max_new_tokens: int | None = None) -> Generation:
        """Greedy answer to chat ``messages`` (the chat template adds the assistant header)."""
        from tsm.data.sft import encode_prompt
        from tsm.rollout.base import SamplingParams

        n_new = min(max_new_tokens or self.max_new_tokens, self.max_new_tokens)
        try:
            ids = encode_prompt(self.tokenizer, messages)
        except Exception as exc:  # the chat template refuses odd roles/contents
            raise RequestError(f"cannot render these messages with the chat template: {exc}") from exc
        if self.max_prompt_tokens is not None and len(ids) > self.max_prompt_tokens:
            raise RequestError(f"the prompt is {len(ids)} tokens; this model takes at most "
                               f"{self.max_prompt_tokens} before its {self.max_new_tokens} new tokens")
        sampling = SamplingParams(max_new_tokens=max(1, n_new), temperature=0.0, seed=None)
        with self._lock:
            t0 = time.perf_counter()
            out = self.engine.generate([ids], n=1, sampling=sampling)
            seconds = time.perf_counter() - t0
        return Generation(out.texts[0], out.finish_reasons[0], len(ids), len(out.token_ids[0]), seconds)

    def differentiate(self, text: str, check: bool = True) -> dict:
        """The JSON of ``/api/differentiate`` for the user's f(x)."""
        t0 = time.perf_counter()
        f = read_function(text)
        posed = _pose(f, self.task)
        gen = self.generate(posed.messages)
        out = {"task": self.task.name, "function": text, "function_latex": posed.problem.function_latex,
               "response": gen.response, "finish_reason": gen.finish_reason}
        out.update(verdict(gen.response, posed, self.task) if check else {"answer": _boxed(gen.response)})
        out["generate_seconds"] = round(gen.seconds, 4)
        out["seconds"] = round(time.perf_counter() - t0, 4)
        return out

    def chat_completion(self, body: dict) -> dict:
        """An OpenAI ``chat.completion`` for a ``/v1/chat/completions`` request body."""
        if body.get("stream"):
            raise RequestError("stream=true is not supported: this server answers in one piece")
        if body.get("n", 1) != 1:
            raise RequestError("only n=1 is supported (greedy decoding gives one answer)")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise RequestError("'messages' must be a non-empty list of {role, content} objects "
                               "with string contents")
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise RequestError("no user message: send f(x) as the content of a user message")
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise RequestError("max_tokens must be a positive integer")
        posed, messages = self._read_chat(users[-1].strip(), messages)
        gen = self.generate(messages, max_tokens)
        reply = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.response},
                         "logprobs": None, "finish_reason": gen.finish_reason}],
            "usage": {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                      "total_tokens": gen.prompt_tokens + gen.completion_tokens},
        }
        if posed is not None:
            reply["tsm"] = {"task": self.task.name, "function_latex": posed.problem.function_latex,
                            **verdict(gen.response, posed, self.task)}
        return reply

    def _read_chat(self, content: str, messages: list[dict[str, str]]):
        """(posed problem or None, the messages to send): f(x) is posed; a task prompt passes through."""
        from tsm.tasks.base import SYSTEM_PROMPT

        if len(content) > MAX_FUNCTION_CHARS * 4:
            raise RequestError(f"the user message is {len(content)} characters; the limit is "
                               f"{MAX_FUNCTION_CHARS * 4}")
        if not _TASK_PROMPT.search(content):
            posed = _pose(read_function(content), self.task)
            return posed, posed.messages
        if not any(m["role"] == "system" for m in messages):
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, *messages]
        posed = None
        if ":" in content:  # the dataset's phrasings end "...: <f>"; check the answer when f reads
            try:
                posed = _pose(read_function(content.rsplit(":", 1)[1].strip().strip("$")), self.task)
            except RequestError:
                pass
        return posed, messages

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "tsm", "root": self.checkpoint}]}


def read_function(text) -> object:
    """f(x) as sympy from user text, or :class:`RequestError` (400) saying why not."""
    from tsm.predict import BadInput
    from tsm.predict import read_function as parse

    if not isinstance(text, str) or not text.strip():
        raise RequestError("send f(x) as a non-empty string, e.g. {\"function\": \"sin(x^2)\"}")
    if len(text) > MAX_FUNCTION_CHARS:
        raise RequestError(f"f(x) is {len(text)} characters; the limit is {MAX_FUNCTION_CHARS}")
    try:
        return parse(text)
    except BadInput as exc:
        raise RequestError(str(exc)) from exc


def verdict(response: str, posed, task=None) -> dict:
    """The task's verdict on ``response`` (the fields the API returns); ``posed`` is the task's
    ``Posed`` (problem, messages, ground truth), ``task`` its plugin (default: differentiation)."""
    from tsm.tasks.base import get_task

    task = get_task(task or "differentiation")
    s = task.verify(response, posed.ground_truth)
    sentence = _CORRECT.get(task.name, "the answer passes the task's check") if s.reason == "correct" \
        else VERDICTS.get(s.reason, s.reason)
    out = {"answer": s.answer if s.answer is not None else _boxed(response), "verdict": s.reason,
           "reason": sentence + (f" ({s.detail})" if s.detail else ""),
           "ground_truth": posed.ground_truth, "gold_latex": posed.problem.answer_latex}
    if task.name == "differentiation":
        out.update(derivative=posed.problem.derivative_sympy, derivative_latex=posed.problem.derivative_latex)
    return out


def _pose(f, task=None):
    from tsm.tasks.base import get_task

    try:
        return get_task(task or "differentiation").pose(f, False, 0)
    except Exception as exc:  # sympy may fail to differentiate or render an odd f
        raise RequestError(f"cannot pose f(x) = {f}: {type(exc).__name__}: {exc}") from exc


def _boxed(response: str) -> str | None:
    from tsm.reward import extract_boxed

    return extract_boxed(response).answer


def _model_name(checkpoint: str) -> str:
    path = Path(checkpoint)
    if path.is_dir():  # <run>/sft/hf -> the run's folder name is more telling than "hf"
        parts = [p for p in path.resolve().parts if p not in ("hf", "sft", "grpo", "rl")]
        return parts[-1] if parts else checkpoint
    return checkpoint


class Handler(BaseHTTPRequestHandler):
    server_version = "tsm-serve/1"
    differentiator: Differentiator  # set by make_server on a subclass

    def do_GET(self) -> None:  # http.server's naming
        self._dispatch({"/": self._page, "/index.html": self._page,
                        "/v1/models": lambda: self._json(self.differentiator.models()),
                        "/health": lambda: self._json({"status": "ok", "model": self.differentiator.name})})

    def do_POST(self) -> None:
        self._dispatch({"/api/solve": self._differentiate, "/api/differentiate": self._differentiate,
                        "/v1/chat/completions": self._chat})

    def _dispatch(self, routes) -> None:
        route = routes.get(urlparse(self.path).path.rstrip("/") or "/")
        try:
            if route is None:
                raise RequestError(f"no such endpoint: {self.command} {urlparse(self.path).path}",
                                   HTTPStatus.NOT_FOUND)
            route()
        except RequestError as exc:
            self._error(exc.status, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client left
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            traceback.print_exc()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def _body(self) -> dict:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            raise RequestError("bad Content-Length header") from None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body stays unread
            raise RequestError(f"request body of {length} bytes; the limit is {MAX_BODY_BYTES}",
                               HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RequestError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError("the body must be a JSON object")
        return body

    def _differentiate(self) -> None:
        body = self._body()
        if "function" not in body:
            raise RequestError("missing 'function': send {\"function\": \"sin(x^2)\"}")
        self._json(self.differentiator.differentiate(body["function"], check=bool(body.get("check", True))))

    def _chat(self) -> None:
        self._json(self.differentiator.chat_completion(self._body()))

    def _page(self) -> None:
        task = self.differentiator.task.name
        verb, button, gold = _PAGE_WORDS.get(task, (task, "Answer", "the reference answer"))
        page = (PAGE.replace("{{MODEL}}", _html_escape(self.differentiator.name))
                .replace("{{VERB}}", _html_escape(verb)).replace("{{BUTTON}}", _html_escape(button))
                .replace("{{GOLD}}", _html_escape(gold)).replace("{{TASK}}", _html_escape(task)))
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    def _json(self, obj: dict, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj, ensure_ascii=False).encode() + b"\n", "application/json")

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._json({"error": {"message": " ".join(message.split()), "type": kind}}, status)

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


def make_server(differentiator: Differentiator, host: str = "127.0.0.1", port: int = 8000,
                log_requests: bool = True) -> ThreadingHTTPServer:
    """A threading HTTP server bound to (host, port) (port 0: a free one), not yet serving;
    ``log_requests`` keeps http.server's one stderr line per request."""
    attrs: dict = {"differentiator": differentiator}
    if not log_requests:
        attrs["log_message"] = lambda self, *args: None
    handler = type("BoundHandler", (Handler,), attrs)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tsm.serve",
        description="Serve a tsm model over HTTP: a try-it page at /, POST /api/solve, and "
                    "OpenAI-compatible POST /v1/chat/completions and GET /v1/models. Options may "
                    "also be given Hydra-style: checkpoint=tsm-diff-5m port=8001.",
        epilog=f"example: {USAGE_EXAMPLE}")
    p.add_argument("--checkpoint", default="tsm-diff-5m",
                   help="an HF folder (<run>/sft/hf), a Lightning .ckpt with its HF export, a shipped "
                        "model's name (tsm-diff-5m, the default), a hub id, or 'embedded'")
    p.add_argument("--task", default="differentiation",
                   help="the task whose prompt and check wrap f(x): differentiation (the default) or "
                        "integration (with checkpoint=tsm-int-5m)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="cap on generated tokens per answer (answer-only models need ~40)")
    argv = sys.argv[1:] if argv is None else argv
    # checkpoint=x / max_new_tokens=64 -> --checkpoint x / --max-new-tokens 64
    argv = [f"--{a.split('=', 1)[0].replace('_', '-')}={a.split('=', 1)[1]}"
            if not a.startswith("-") and re.match(r"[A-Za-z_][\w-]*=", a) else a for a in argv]
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        differentiator = Differentiator(args.checkpoint, args.max_new_tokens, args.task)
    except (ValueError, OSError) as exc:  # no such folder or task, not a hub id, hub unreachable
        print(f"error: cannot serve checkpoint={args.checkpoint} task={args.task}: "
              f"{' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    differentiator.differentiate("x")  # warm-up: the first real request is not the slow one
    try:
        server = make_server(differentiator, args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    print(f"tsm.serve: {differentiator.name} ({differentiator.task.name}) ready at {url_of(server)} "
          "(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _html_escape(text: str) -> str:
    import html

    return html.escape(text)


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsm: {{TASK}}</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; max-width: 820px; margin: 24px auto; padding: 0 16px; color: #222; }
  h1 { font-size: 20px; margin: 0 0 4px; } .muted { color: #666; font-size: 13px; }
  form { display: flex; gap: 8px; margin: 16px 0 8px; }
  input { flex: 1; font: 16px ui-monospace, monospace; padding: 8px; border: 1px solid #aaa; border-radius: 4px; }
  button { font-size: 15px; padding: 8px 16px; border: 0; border-radius: 4px; background: #2457a6; color: #fff; cursor: pointer; }
  button:disabled { background: #889; }
  .examples a { margin-right: 10px; font: 13px ui-monospace, monospace; }
  table { border-collapse: collapse; width: 100%; margin-top: 14px; }
  th { text-align: left; vertical-align: top; width: 130px; color: #555; font-weight: 600; padding: 6px 8px 6px 0; }
  td { padding: 6px 0; } code, pre { font: 14px ui-monospace, monospace; white-space: pre-wrap; word-break: break-word; margin: 0; }
  .verdict { font-weight: 700; padding: 2px 8px; border-radius: 4px; }
  .correct { background: #d7f5dc; color: #11601f; } .wrong { background: #fde2e1; color: #8a1c13; }
  .other { background: #fff1c9; color: #6b5000; } .error { color: #8a1c13; }
</style></head>
<body>
<h1>{{VERB}} with <code>{{MODEL}}</code></h1>
<div class="muted">Type f(x) in LaTeX or plain form. The server wraps it in the {{TASK}} prompt, the model
answers greedily, and the task's verifier checks the boxed answer with sympy.</div>
<form id="form"><input id="function" name="f" autocomplete="off" spellcheck="false"
  placeholder="e.g. sin(x^2) or \frac{e^{2x}}{x}" aria-label="f(x)"><button id="go" type="submit">{{BUTTON}}</button></form>
<div class="examples muted">Examples:
  <a href="?f=sin(x%5E2)">sin(x^2)</a><a href="?f=x%5E3%20-%205x">x^3 - 5x</a>
  <a href="?f=e%5E(2x)%20cos(x)">e^(2x) cos(x)</a><a href="?f=%5Cln(x)%2Fx">\ln(x)/x</a></div>
<div id="status" class="muted" role="status"></div>
<table id="result" hidden>
  <tr><th>f(x)</th><td><code id="f_latex"></code></td></tr>
  <tr><th>answer</th><td><code id="answer"></code></td></tr>
  <tr><th>verdict</th><td><span id="verdict" class="verdict"></span> <span id="reason" class="muted"></span></td></tr>
  <tr><th>{{GOLD}}</th><td><code id="gold"></code></td></tr>
  <tr><th>time</th><td id="time"></td></tr>
  <tr><th>response</th><td><pre id="response"></pre></td></tr>
</table>
<script>
const $ = (id) => document.getElementById(id);
async function run(text) {
  $("go").disabled = true; $("status").className = "muted"; $("status").textContent = "thinking...";
  try {
    const r = await fetch("/api/solve", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({function: text, check: true})});
    const d = await r.json();
    if (!r.ok) throw new Error(d.error ? d.error.message : r.statusText);
    $("f_latex").textContent = d.function_latex;
    $("answer").textContent = d.answer === null ? "(no \\boxed{} answer)" : d.answer;
    $("verdict").textContent = d.verdict;
    $("verdict").className = "verdict " + (d.verdict === "correct" ? "correct" : d.verdict === "wrong" ? "wrong" : "other");
    $("reason").textContent = d.reason;
    $("gold").textContent = d.gold_latex;
    // server-side times: a headless browser's virtual clock would misreport the round trip
    $("time").textContent = d.seconds.toFixed(3) + " s on the server (" + d.generate_seconds.toFixed(3) +
      " s generating, the rest reading f and checking the answer)";
    $("response").textContent = d.response;
    $("result").hidden = false; $("status").textContent = "";
  } catch (e) {
    $("result").hidden = true; $("status").className = "error"; $("status").textContent = "error: " + e.message;
  } finally { $("go").disabled = false; }
}
$("form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("function").value.trim();
  if (!text) return;
  history.replaceState(null, "", "?f=" + encodeURIComponent(text));
  run(text);
});
const f = new URLSearchParams(location.search).get("f");
if (f) { $("function").value = f; run(f); } else { $("function").focus(); }
</script>
</body></html>
"""


if __name__ == "__main__":
    sys.exit(main())

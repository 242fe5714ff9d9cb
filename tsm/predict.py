"""``python -m tsm.predict [--task NAME] "<f(x)>" ["<g(x)>" ...] [overrides]``: functions in, answers out.

``--task`` (or the override ``task=``) picks the task (``tsm.tasks``): ``differentiation`` (the
default: the model's f'(x), checked against ``sympy.diff``) or ``integration`` (an antiderivative,
checked by differentiating it); the prompt is the task's own (``TaskPlugin.pose``) and the verdict
its ``verify``. The rest of this doc describes differentiation; integration differs only there.

Arguments of the form ``key=value`` are Hydra overrides of ``conf/predict.yaml`` (``checkpoint=``,
``sampling.max_new_tokens=``, ``rollout=vllm``, ...); every other argument is a function f(x) in
LaTeX or plain form (read by :func:`tsm.math.parse.parse_expression`, the reward's parser);
``--file PATH`` reads one function a line from a file, ``-`` from stdin. The model is loaded once
and answers all of them in one batch. The prompt is built as the dataset builds
one (:meth:`DifferentiationTask.pose`, Diff-TSM's system prompt), the model answers once (greedy
by default), and the boxed answer is scored by :func:`tsm.reward.score` against
``sympy.diff(f, x)``. Prints f, the prompt, the response, the extracted answer, the verdict and
the true derivative. Exit status: 0 when the model answered (right or wrong), 2 for bad input
(f does not parse, a bad override or checkpoint), with a one-line message and no traceback.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import sympy

from tsm.math.parse import ParseError, parse_expression
from tsm.reward import Score
from tsm.tasks.base import get_task

_CONF = str(Path(__file__).resolve().parents[1] / "conf")
_X = sympy.Symbol("x")
USAGE = ('usage: python -m tsm.predict [--task differentiation|integration] "<f(x)>" ["<g(x)>" ...] [--file PATH | -] '
         '[checkpoint=<shipped name | HF folder | .ckpt | hub id | embedded>] [key=value ...]')
_OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.@/-]*=")


class BadInput(ValueError):
    """The user's input cannot be used; the message says why."""


@dataclass(frozen=True)
class Prediction:
    problem: object  # the task's problem record (tsm.tasks.base.Problem)
    messages: list[dict[str, str]]
    response: str
    score: Score
    ground_truth: str = ""  # what the task's check compared with (f' or, for integration, f)
    task: str = "differentiation"


def read_function(text: str) -> sympy.Expr:
    """f(x) from user text; :class:`BadInput` when it does not parse."""
    try:
        return parse_expression(text)
    except ParseError as exc:
        raise BadInput(f"cannot read f(x) = {text!r}: {exc}") from exc


def pose(f: sympy.Expr, variations: bool = False, seed: int = 0, task: str = "differentiation"):
    """The task's problem record for f and the chat messages that pose it (``TaskPlugin.pose``)."""
    posed = get_task(task).pose(f, variations, seed)
    return posed.problem, posed.messages


def predict(cfg, f: sympy.Expr) -> Prediction:
    """Load ``cfg.checkpoint``, generate once for f, score the answer."""
    return predict_many(cfg, [f])[0]


def predict_many(cfg, functions: list[sympy.Expr]) -> list[Prediction]:
    """Load ``cfg.checkpoint`` once, answer every function in one batch, score each answer."""
    from hydra.utils import instantiate

    from tsm.data.sft import encode_prompt
    from tsm.evaluation import build_engine, close_engine, resolve_checkpoint
    from tsm.models import load_checkpoint

    task = get_task(cfg.get("task") or "differentiation")
    posed = [task.pose(f, cfg.variations, cfg.seed) for f in functions]
    try:
        model, tokenizer = load_checkpoint(resolve_checkpoint(cfg.checkpoint))
    except (ValueError, OSError) as exc:  # no such folder/file, not a hub id, hub unreachable
        raise BadInput(f"cannot load checkpoint={cfg.checkpoint}: {exc}") from exc
    engine = build_engine(cfg.rollout, model, tokenizer, cfg.bf16)
    try:
        rollouts = engine.generate([encode_prompt(tokenizer, p.messages) for p in posed], n=1,
                                   sampling=instantiate(cfg.sampling))
    finally:
        close_engine(engine)
    return [Prediction(p.problem, p.messages, response, task.verify(response, p.ground_truth),
                       p.ground_truth, task.name)
            for p, response in zip(posed, rollouts.texts)]


def format_prediction(p: Prediction, text: str) -> str:
    def block(label: str, value: str) -> str:
        lines = value.rstrip().splitlines() or ["(empty)"]
        return "\n".join([f"{label:<12}{lines[0]}", *(f"{'':<12}{line}" for line in lines[1:])])

    reason = p.score.reason
    integration = p.task == "integration"
    what = "an antiderivative of f(x)" if integration else "f'(x)"
    verdict = (f"correct: the answer is {what}" if p.score.correct
               else f"wrong: the answer is not {what}" if reason == "wrong"
               else f"not checked ({reason}): no answer that parses as a function of x")
    if integration:
        reference = block("sympy F(x)", (f"{p.problem.answer_latex}    = {p.problem.answer_sympy}"
                                           if p.problem.answer_latex else "(none within 2 s; any F with F' = f counts)"))
    else:
        reference = block("true f'(x)", f"{p.problem.answer_latex}    = {p.ground_truth}")
    return "\n".join([
        block("f(x)", f"{p.problem.function_latex}    (read from {text!r})"),
        block("prompt", p.messages[-1]["content"]),
        block("response", p.response),
        block("answer", p.score.answer if p.score.answer is not None else "(none: no \\boxed{} answer)"),
        block("verdict", verdict),
        reference,
    ])


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(function texts, Hydra overrides): ``key=value`` is an override; ``--file PATH`` and ``-``
    (stdin) add one function a line (blank lines and ``#`` comments skipped); the rest are functions."""
    texts: list[str] = []
    overrides: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--task" or arg.startswith("--task="):
            name = arg.split("=", 1)[1] if "=" in arg else next(it, None)
            if not name:
                raise BadInput("--task needs a task name")
            overrides.append(f"task={name}")
        elif arg in ("--file", "-f"):
            path = next(it, None)
            if path is None:
                raise BadInput("--file needs a path")
            try:
                lines = Path(path).read_text().splitlines()
            except OSError as exc:
                raise BadInput(f"cannot read --file {path}: {exc.strerror or exc}") from exc
            texts += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        elif arg == "-":
            texts += [ln.strip() for ln in sys.stdin.read().splitlines()
                      if ln.strip() and not ln.lstrip().startswith("#")]
        elif _OVERRIDE.match(arg):
            overrides.append(arg)
        else:
            texts.append(arg)
    return texts, overrides


def help_text() -> str:
    """The usage line, and the knobs: conf/predict.yaml with its comments."""
    conf = (Path(_CONF) / "predict.yaml").read_text()
    return (f"{USAGE}\n\nExamples:\n"
            '  python -m tsm.predict "e^(2x) sin(14x)" checkpoint=tsm-diff-5m\n'
            '  python -m tsm.predict --task integration "x e^x" checkpoint=tsm-int-5m\n'
            '  python -m tsm.predict "sin(x^2)" "x^3 log(x)" checkpoint=models/tsm-diff-5m\n'
            "  python -m tsm.predict --file functions.txt checkpoint=tsm-diff-5m sampling.temperature=0.1\n"
            "  echo 'cos(3x)' | python -m tsm.predict - checkpoint=tsm-diff-5m\n\n"
            f"Knobs (conf/predict.yaml; override as key=value, rollout=vllm for vLLM):\n{conf}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(help_text())
        return 0
    try:
        texts, overrides = split_args(argv)
        if not texts:
            raise BadInput("no function given (the first argument that is not key=value is f(x); "
                           'e.g. python -m tsm.predict "sin(x^2)" checkpoint=tsm-diff-5m)')
        functions = [read_function(t) for t in texts]
        cfg = _compose(overrides)
        try:
            get_task(cfg.get("task") or "differentiation")
        except ValueError as exc:
            raise BadInput(str(exc)) from exc
        predictions = predict_many(cfg, functions)
    except BadInput as exc:
        print(f"error: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    print("\n\n".join(format_prediction(p, t) for p, t in zip(predictions, texts)))
    if len(predictions) > 1:
        print(f"\n{sum(p.score.correct for p in predictions)}/{len(predictions)} correct")
    return 0


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    # `task=` is a config group for train/evaluate (it selects the task's data); here it is the plain
    # `task` key of conf/predict.yaml, which has no data to select
    tasks = [o.split("=", 1)[1] for o in overrides if o.startswith("task=")]
    overrides = [o for o in overrides if not o.startswith("task=")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=_CONF, version_base="1.3"):
            cfg = compose(config_name="predict", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise BadInput(f"bad override in {overrides}: {exc}") from exc
    if tasks:
        with open_dict(cfg):
            cfg.task = tasks[-1]
    return cfg


if __name__ == "__main__":
    sys.exit(main())

"""The hostile corpus (tests/hostile.py) through the real CLI, each case with each verb.

The contract checked for every run:
- exit 0 with a valid result (the verb's `validate`), or exit 1/2 with exactly one line on
  stderr starting `onnxsmith: error:` — an "internal error" line is a bug, not a pass;
- a case marked "error" is refused, one marked "ok" succeeds;
- no traceback and no raw escape character in anything printed;
- time-boxed: a hang fails the test (in-process by SIGALRM, in a child by its timeout; the box
  is 60 s, far above what any case needs, so it only ever catches a hang);
- every file present before is byte-identical afterwards; on failure nothing new appears
  anywhere in the case folder (no output, no .data, no staging folder); on success only the
  output and its `.data`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import VERBS, Case, corpus

from onnxsmith.cli.main import main

TIME_BOX_S = 60
CASES = corpus()
RUNS = [(case, verb) for case in CASES for verb in VERBS if case.applies_to(verb)]


class Hang(BaseException):
    """Raised by the time box; a BaseException so the CLI's error handler cannot swallow it."""


@contextlib.contextmanager
def time_box(seconds: float) -> Iterator[None]:
    def expire(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under `root` (symlinks not followed, FIFOs never opened) and its content."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                kind = f"link to {os.readlink(path)}"
            elif stat.S_ISREG(mode):
                kind = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                kind = f"mode {stat.S_IFMT(mode):o}"
            state[str(path.relative_to(root))] = kind
    return state


def run_cli(case: Case, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    if case.child:
        script = Path(sys.executable).with_name("onnxsmith")
        env = {**os.environ, **dict(case.env)}
        done = subprocess.run(
            [str(script), *argv], capture_output=True, env=env, timeout=TIME_BOX_S
        )
        decode = lambda raw: raw.decode("utf-8", errors="replace")  # noqa: E731
        return done.returncode, decode(done.stdout), decode(done.stderr)
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    with time_box(TIME_BOX_S):
        code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_corpus_has_over_200_cases_in_every_group():
    groups = {case.group for case in CASES}
    assert len(CASES) >= 200 and groups == {"model", "data", "output"}
    assert sum(case.child for case in CASES) >= 5  # blocking inputs proven in a real process


@pytest.mark.parametrize(("case", "verb"), RUNS, ids=[f"{c.name}-{v}" for c, v in RUNS])
def test_hostile_input_fails_cleanly_or_gives_a_valid_result(
    case, verb, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # a relative output path can only land here
    inputs = case.build(tmp_path)
    default_output = tmp_path / "out" / "result.onnx"
    default_output.parent.mkdir()
    output = inputs.output if inputs.output is not None else default_output
    before = snapshot(tmp_path)
    argv = VERBS[verb].argv(inputs, output)

    code, out, err = run_cli(case, argv, monkeypatch, capsys)

    assert "Traceback" not in out + err and "\x1b" not in out + err
    after = snapshot(tmp_path)
    if code == 0:
        assert case.expect != "error", f"accepted a hostile input; stdout: {out[-500:]}"
        assert err == ""
        VERBS[verb].validate(out, output)
        allowed = {str(output.relative_to(tmp_path))} if VERBS[verb].writes else set()
        allowed |= {f"{name}.data" for name in allowed}
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        assert changed <= allowed
    else:
        assert code in (1, 2), f"exit code {code}: {err}"
        assert case.expect != "ok", f"refused a valid input: {err}"
        assert err.startswith("onnxsmith: error: ") and err.count("\n") == 1, err
        assert after == before

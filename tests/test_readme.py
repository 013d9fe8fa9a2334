"""The README's walk-through, run as written, from a fresh clone.

The test clones this checkout's repository into a temporary folder (its committed ``HEAD``, then the working
tree's tracked files over it, so that a change being made to the README or the code is what runs; untracked
files are left out, as a commit would leave them out), creates a virtual environment there with
``--system-site-packages`` and puts it first on ``PATH``, as a user who activated it would have. Every command
of the README's ```bash blocks then runs in order, verbatim, in the clone's folder (so on a fresh SQLite
ledger, ``./banditgate.db``), in ``bash``, with the environment that the commands before it exported (the
README's generated ``BANDITGATE_API_KEY``), starting with ``pip install -e .``: after it, ``banditgate`` and
``python`` must be the clone's code in the virtual environment. Nothing is downloaded: pip finds every
dependency installed already (``PIP_NO_INDEX``) and builds the package with the installed setuptools
(``PIP_NO_BUILD_ISOLATION``), environment variables that leave the commands as the README writes them. The
server is started as the README says (``banditgate serve &`` after that export), on a free port instead of
8000: the curl examples get that port in place of ``localhost:8000`` and the commands that talk to the service
find it in ``BANDITGATE_URL``.

Each command must exit 0, except those in :data:`EXPECTED`, whose status and output the README documents;
:data:`SKIPPED` lists the commands not run, each with its reason. An entry of either that no longer matches a
README command fails the test, as does a background command other than the server: a change of the
walk-through has to be looked at here too.
"""

from __future__ import annotations

import ensurepip
import json
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Commands not run, and why.
SKIPPED = {
    "scripts/test": "it runs this test suite",
}
#: The command that installs the clone into the virtual environment.
INSTALL = "pip install -e ."
#: The command that starts the service in the background (run with ``--port`` on a free port).
SERVE = "banditgate serve &"


@dataclass(frozen=True)
class Expected:
    """A command's documented outcome: its exit status and a text its output (stdout and stderr) contains."""

    status: int
    output: str


#: Commands whose outcome the README states, with what it states.
EXPECTED = {
    # the first command after installation: the whole loop on simulated traffic, in its own folder and ledger
    "banditgate demo": Expected(0, "wrote banditgate-demo/report.html"),
    # the candidate that the walk-through judges, promotes and rolls back
    "banditgate retrain --policy default --window-days 14 --as-of \"$(date -u -d '7 days ago' +%F)\"": Expected(
        0, "candidate generation 1"
    ),
    "banditgate retrain --policy default --window-days 30 --trust-region 0.1": Expected(0, "candidate generation 2"),
    # "Exit status 0 SUFFICIENT, 1 DEGRADED, 2 INSUFFICIENT": generation 1 is judged on the week after its training
    # window, generation 2 has nothing after its own yet
    "banditgate gate --policy default --generation 1 --html reports/gate-1.html": Expected(0, "SUFFICIENT"),
    "banditgate gate --policy default --generation 1 --json --what-if concept": Expected(0, '"SUFFICIENT"'),
    'banditgate promote --policy default --generation 1 --reason "DR +1.2 pts, CI clear of 0"': Expected(
        0, "promoted generation 1"
    ),
    'banditgate rollback --policy default --reason "authorisation rate dropped"': Expected(
        0, "rolled back to generation 0"
    ),
    "banditgate gate --policy default --generation 2": Expected(2, "INSUFFICIENT"),
    # "its promotion is refused (exit 1, HTTP 409 with the report)"
    'banditgate promote --policy default --generation 2 --reason "trust region 0.1"': Expected(1, "INSUFFICIENT"),
    # "unless someone overrides it by name"
    'banditgate promote --policy default --generation 2 --reason "incident INC-42" --override-by "dana (risk)" '
    '--override-reason "old model misroutes NL" --override-until "$(date -u -d \'+7 days\' +%Y-%m-%dT00:00Z)"': (
        Expected(0, "promoted generation 2")
    ),
}

_FENCE = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SERVER = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")


def _words(command: str) -> tuple[str, ...]:
    """A command as bash would split it, without its comment: what the tables above are matched on."""
    return tuple(shlex.split(command.replace("\\\n", " "), comments=True))


def readme_commands(text: str) -> list[str]:
    """The commands of the ```bash blocks of ``text``, in order, each as written (continuation lines joined).

    A command ends at a line that neither ends with a backslash nor leaves a quotation open; lines starting
    with ``#`` between commands are comments.

    >>> readme_commands("```bash\\n# one\\necho 'a\\nb' \\\\\\n  | cat\\nls  # two\\n```\\n")
    ["echo 'a\\nb' \\\\\\n  | cat", 'ls  # two']
    """
    commands = []
    for block in _FENCE.findall(text):
        pending: list[str] = []
        for line in block.splitlines():
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            pending.append(line)
            command = "\n".join(pending)
            if command.endswith("\\"):
                continue
            try:
                _words(command)
            except ValueError:  # a quotation still open: the command goes on
                continue
            commands.append(command)
            pending = []
        assert not pending, f"unterminated command in a README bash block: {pending}"
    return commands


class Shell:
    """Runs commands one at a time in ``bash`` in ``folder``, carrying what each exports to the next."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.state = folder.parent / "exported.sh"
        self.state.write_text("")
        self.server: subprocess.Popen[bytes] | None = None

    def run(self, command: str, timeout: float) -> subprocess.CompletedProcess[str]:
        script = f'source "{self.state}"\n{command}\nstatus=$?\nexport -p > "{self.state}"\nexit $status\n'
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def start_server(self, command: str, port: int, log: Path) -> None:
        """``command`` (``banditgate serve &``) in the background on ``port``, once it answers ``/healthz``."""
        foreground = command.removesuffix("&").strip()
        script = f'source "{self.state}"\nexec {foreground} --port {port}\n'
        with log.open("wb") as out:
            self.server = subprocess.Popen(
                ["bash", "-c", script],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180  # the start-up imports and migrates; a loaded machine is slow
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                pytest.fail(f"{command!r} exited with {self.server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"{command!r} did not answer /healthz within 180 s:\n{log.read_text()[-3000:]}")

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()


def _environment(bin_dir: Path, port: int) -> dict[str, str]:
    """The caller's environment without any ``BANDITGATE_*`` setting, this checkout first, the server's URL."""
    bin_dir.mkdir()
    (bin_dir / "banditgate").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m banditgate.service.cli "$@"\n')
    (bin_dir / "banditgate").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {key: value for key, value in os.environ.items() if not key.startswith("BANDITGATE_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        BANDITGATE_URL=f"http://127.0.0.1:{port}",
        COLUMNS="160",
    )
    return env


def _git(*args: str | Path, cwd: Path) -> str:
    return subprocess.run(["git", *map(str, args)], cwd=cwd, check=True, capture_output=True, text=True).stdout


def fresh_clone(destination: Path) -> Path:
    """A clone of this checkout's repository in ``destination``: its ``HEAD``, with the working tree's tracked files.

    The working tree's version of every tracked file that differs from ``HEAD`` (edited, staged or deleted) is
    put over the clone, so that what runs is what this checkout holds; untracked files are not copied.
    """
    _git("clone", "--quiet", "--no-checkout", ROOT, destination, cwd=ROOT.parent)
    _git("fetch", "--quiet", ROOT, "HEAD", cwd=destination)  # HEAD may be a commit no branch names
    _git("checkout", "--quiet", "--detach", "FETCH_HEAD", cwd=destination)
    for name in _git("diff", "--name-only", "-z", "HEAD", cwd=ROOT).split("\0"):
        if not name:
            continue
        source, target = ROOT / name, destination / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        else:
            target.unlink(missing_ok=True)
    return destination


def virtual_environment(folder: Path) -> Path:
    """A virtual environment in ``folder`` that sees this interpreter's packages, with pip and no setuptools of its own.

    ``venv`` would also give it the setuptools that ``ensurepip`` bundles, which is too old to build a wheel
    without the ``wheel`` package; without it, building the package uses the installed setuptools (part of the
    test extra), as pip's build isolation would use a fresh one on a machine that can download it.
    """
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", folder], check=True)
    if sys.prefix != sys.base_prefix:
        # this interpreter runs in a virtual environment itself, whose packages the new one's "system" ones are not
        purelib = subprocess.run(
            [folder / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        (Path(purelib) / "outer-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    assert bundled, "ensurepip bundles no pip wheel"
    install = ["-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--ignore-installed", bundled[-1]]
    subprocess.run([folder / "bin" / "python", *install], check=True, capture_output=True)
    return folder


def _venv_environment(venv: Path, port: int) -> dict[str, str]:
    """The caller's environment without any ``BANDITGATE_*`` or ``PYTHON*`` setting, ``venv`` activated, offline pip,
    the server's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BANDITGATE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        # nothing is downloaded: dependencies and build tools are the ones installed. pip reads a "no-" option's
        # variable as the option's value, so PIP_NO_BUILD_ISOLATION=0 turns build isolation off
        PIP_NO_INDEX="1",
        PIP_NO_BUILD_ISOLATION="0",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        BANDITGATE_URL=f"http://127.0.0.1:{port}",
        COLUMNS="160",
    )
    return env


def test_readme_command_parsing_follows_quotes_and_continuations() -> None:
    commands = readme_commands(README.read_text())
    decision = next(c for c in commands if c.startswith("curl -s localhost:8000/v1/decisions "))
    assert decision.endswith('{"id": "3ds"}]}\'') and decision.count("\n") == 3
    assert _words("banditgate health --policy default  # a comment") == ("banditgate", "health", "--policy", "default")


@pytest.mark.slow
@pytest.mark.timeout(2400)  # the walk-through, and the demo's five minutes before it
def test_readme_walkthrough_runs_as_written_from_a_fresh_clone(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text())
    known = {_words(c) for c in commands}
    stale = [c for c in [*SKIPPED, INSTALL, SERVE, *EXPECTED] if _words(c) not in known]
    assert not stale, f"no longer in the README's bash blocks, update this test: {stale}"
    background = [c for c in commands if c.rstrip().endswith("&") and _words(c) != _words(SERVE)]
    assert not background, f"background commands this test does not know how to run: {background}"
    assert _words(commands[0]) == _words(INSTALL), f"the README starts with {commands[0]!r}, not the installation"
    skipped = {_words(c) for c in SKIPPED}
    expected = {_words(c): e for c, e in EXPECTED.items()}

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: there is nothing to clone")
    clone = fresh_clone(tmp_path / "banditgate")
    venv = virtual_environment(tmp_path / "venv")
    port = free_port()
    shell = Shell(clone, _venv_environment(venv, port))
    try:
        for command in commands:
            words = _words(command)
            if words in skipped:
                continue
            if words == _words(SERVE):
                shell.start_server(command, port, tmp_path / "server.log")
                continue
            # curl -s exits 0 on an HTTP error status: --fail-with-body makes one fail the command
            runnable = _SERVER.sub(f"127.0.0.1:{port}", command).replace("curl -s ", "curl -s --fail-with-body ", 1)
            result = shell.run(runnable, timeout=1200)
            output = result.stdout + result.stderr
            outcome = expected.get(words, Expected(0, ""))
            assert result.returncode == outcome.status, (
                f"{command}\nexited {result.returncode}, the README expects {outcome.status}:\n{output[-5000:]}"
            )
            assert outcome.output in output, f"{command}\nprinted no {outcome.output!r}:\n{output[-5000:]}"
            if words == _words(INSTALL):
                _assert_the_clone_is_installed(shell, clone, venv)
            if words[:2] == ("banditgate", "gate") and "--json" in words:
                assert json.loads(result.stdout)["level"] == "SUFFICIENT"
    finally:
        shell.stop_server()
    assert shell.server is not None, "the README never starts the server"


def _assert_the_clone_is_installed(shell: Shell, clone: Path, venv: Path) -> None:
    """``python`` and ``banditgate`` in ``shell`` are the virtual environment's, running the clone's code."""
    result = shell.run(
        'command -v python banditgate && python -c "import banditgate; print(banditgate.__file__)"', timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    python, banditgate, module = result.stdout.split()
    assert Path(python).parent == Path(banditgate).parent == venv / "bin", result.stdout
    assert Path(module) == clone / "banditgate" / "__init__.py", f"banditgate is imported from {module}"

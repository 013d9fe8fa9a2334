"""The pages of ``docs/``: every example runs, and the reference pages say what the code does.

Every fenced block of a page is run by one of the tests below, according to its language, or is a ``text``
block that the line before it marks ``<!-- not run: why -->``:

- ``python``: each page's blocks run in order as one script, in a fresh directory;
- ``json``: parsed; ``toml``: loaded as the service's settings file (``BANDITGATE_CONFIG``);
- ``http``: a request block (``METHOD /path``, headers, a blank line, the body) and the response block after it
  (``HTTP/1.1 STATUS``, headers, a blank line, the body): the request is sent, in order, to a fresh server, and
  the response must have the documented status and the documented fields (for JSON, the same keys; for text,
  the metrics its ``# HELP`` lines name). ``$BANDITGATE_API_KEY`` in a header is the server's admin key;
- ``bash``: the blocks run in order, each in ``bash -e -o pipefail``, in one fresh directory next to a fresh
  server (``./banditgate.db`` is its ledger, ``BANDITGATE_URL`` its address, ``BANDITGATE_API_KEY`` its key),
  with ``banditgate`` and ``python`` this checkout's code and interpreter, and what a block exports carried to
  the next, as in one terminal. A block that runs ``createdb`` runs on the suite's PostgreSQL server instead,
  which ``PGHOST``, ``PGPORT``, ``PGUSER`` and ``PGPASSWORD`` name as they would for a user of ``psql``; a
  ``banditgate serve`` line there starts the server in the background (on a free port: ``--port`` is added)
  and the block goes on once it answers ``/healthz``.

The reference pages are checked against the code: the routes of ``api.md`` against the app's OpenAPI
document, the commands and options of ``cli.md`` against the ``banditgate`` command tree, and the settings
of ``configuration.md`` against :class:`~banditgate.service.settings.Settings`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import psycopg
import pytest
import typer

from banditgate.service.app import create_app
from banditgate.service.cli import app as cli_app
from banditgate.service.settings import GateSettings, PolicySettings, Settings
from tests.support import postgres
from tests.support.server import LiveServer, free_port
from tests.test_readme import Shell, _environment

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
API_KEY = "docs-example-admin-key-0123456789"

#: Languages of the blocks that are run (or parsed), and of those that are only shown.
RUN = frozenset({"python", "bash", "http", "json", "toml"})
SHOWN = frozenset({"text"})

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"^<!-- not run: (\S.*?) -->$")


@dataclass(frozen=True)
class Block:
    """A fenced block of a page: where it starts, its language, its text and the reason it is not run."""

    page: str
    line: int
    language: str
    text: str
    not_run: str | None

    def __str__(self) -> str:
        return f"docs/{self.page}:{self.line} ({self.language or 'no language'})"


def page_blocks(path: Path) -> list[Block]:
    """The fenced blocks of the page at ``path``, in order.

    >>> import tempfile
    >>> page = Path(tempfile.mkdtemp()) / "p.md"
    >>> _ = page.write_text("a\\n<!-- not run: a listing -->\\n```text\\nx\\n```\\n```bash\\nls\\n```\\n")
    >>> [(b.line, b.language, b.text, b.not_run) for b in page_blocks(page)]
    [(3, 'text', 'x\\n', 'a listing'), (6, 'bash', 'ls\\n', None)]
    """
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        reason = _NOT_RUN.match(before)
        line = text.count("\n", 0, match.start()) + 1
        language = match.group(1).strip()
        blocks.append(Block(path.name, line, language, match.group(2), reason.group(1) if reason else None))
    return blocks


def all_blocks(language: str) -> list[Block]:
    return [b for page in PAGES for b in page_blocks(page) if b.language == language]


def test_the_pages_exist_and_the_readme_links_them() -> None:
    names = {p.name for p in PAGES}
    expected = {"architecture.md", "api.md", "cli.md", "configuration.md", "operations.md", "methods.md"}
    assert expected <= names, f"missing pages: {expected - names}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in expected:
        assert f"](docs/{name})" in readme, f"README.md does not link docs/{name}"
    assert (DOCS / "architecture.svg").is_file()
    assert "](architecture.svg)" in (DOCS / "architecture.md").read_text(encoding="utf-8")


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading.

    >>> github_anchor("`POST /v1/policies/{name}/rollback`"), github_anchor("Running with PostgreSQL")
    ('post-v1policiesnamerollback', 'running-with-postgresql')
    """
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_links_between_the_pages_lead_somewhere() -> None:
    broken = []
    for page in [*PAGES, ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path) if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
                continue
            if fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", linked.read_text(encoding="utf-8"), re.MULTILINE)
                if fragment not in {github_anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_no_page_or_source_names_the_design_note_outside_the_repository() -> None:
    named = []
    for folder in ("banditgate", "tests", "benchmarks", "docs"):
        for path in (ROOT / folder).rglob("*"):
            readable = path.suffix in {".py", ".md", ".j2", ".toml", ".yml"} and path != Path(__file__)
            if readable and "DESIGN.md" in path.read_text(encoding="utf-8"):
                named.append(str(path.relative_to(ROOT)))
    assert "DESIGN.md" not in (ROOT / "README.md").read_text(encoding="utf-8")
    assert not named, f"these files point to DESIGN.md, which is not in the repository: {named}"


def test_every_example_is_run_or_says_why_not() -> None:
    problems = []
    for page in PAGES:
        for block in page_blocks(page):
            if block.language in RUN and block.not_run is not None:
                problems.append(f"{block}: a {block.language} block is run; drop its 'not run' note")
            elif block.language in SHOWN and block.not_run is None:
                problems.append(f"{block}: a text block needs <!-- not run: why --> on the line before it")
            elif block.language not in RUN | SHOWN:
                problems.append(f"{block}: use one of {sorted(RUN | SHOWN)}")
    assert not problems, "\n".join(problems)


def _clean_environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("BANDITGATE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


@pytest.mark.parametrize("page", [p.name for p in PAGES if any(b.language == "python" for b in page_blocks(p))])
def test_python_examples_run(page: str, tmp_path: Path) -> None:
    script = "\n".join(b.text for b in page_blocks(DOCS / page) if b.language == "python")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=_clean_environment(), capture_output=True, text=True
    )
    assert result.returncode == 0, f"the python examples of docs/{page} failed:\n{result.stderr[-5000:]}"


def test_json_examples_parse() -> None:
    for block in all_blocks("json"):
        try:
            json.loads(block.text)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{block}: {exc}")


def test_toml_examples_are_valid_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = all_blocks("toml")
    assert blocks, "configuration.md shows a settings file"
    for key in [k for k in os.environ if k.startswith("BANDITGATE_")]:
        monkeypatch.delenv(key)
    for number, block in enumerate(blocks):
        path = tmp_path / f"settings-{number}.toml"
        path.write_text(block.text, encoding="utf-8")
        monkeypatch.setenv("BANDITGATE_CONFIG", str(path))
        settings = Settings()
        # everything the file says is what the settings hold (no key ignored or renamed)
        for key, value in tomllib.loads(block.text).items():
            held = getattr(settings, key)
            if key == "api_key":
                held = held.get_secret_value()
            elif hasattr(held, "model_dump"):
                held = held.model_dump()
            elif key == "policies":
                held = {name: policy.model_dump() for name, policy in held.items()}
            assert _contains(held, value), f"{block}: {key} = {value!r} is held as {held!r}"


def _contains(held: Any, value: Any) -> bool:
    """Whether ``held`` (settings dumped to plain values) has every key and value of ``value``."""
    if isinstance(value, dict):
        return isinstance(held, dict) and all(k in held and _contains(held[k], v) for k, v in value.items())
    if isinstance(value, list) and isinstance(held, (list, tuple)):
        return len(value) == len(held) and all(_contains(h, v) for h, v in zip(held, value, strict=True))
    return held == value or str(held) == str(value)


@dataclass(frozen=True)
class Message:
    """An HTTP message of an ``http`` block: its first line, headers and body."""

    start: str
    headers: dict[str, str]
    body: str

    @classmethod
    def parse(cls, text: str) -> Message:
        head, _, body = text.partition("\n\n")
        start, *lines = head.splitlines()
        headers = dict(line.split(": ", 1) for line in lines)
        return cls(start.strip(), headers, body.strip())


def http_exchanges(page: Path) -> Iterator[tuple[Block, Message, Message]]:
    """The request and response of each example of ``page``: a request block and the response block after it."""
    blocks = [b for b in page_blocks(page) if b.language == "http"]
    for index in range(0, len(blocks), 2):
        request = Message.parse(blocks[index].text)
        assert not request.start.startswith("HTTP/"), f"{blocks[index]}: a response without a request before it"
        assert index + 1 < len(blocks), f"{blocks[index]}: a request without a response after it"
        response = Message.parse(blocks[index + 1].text)
        assert response.start.startswith("HTTP/"), f"{blocks[index + 1]}: expected the response to the request"
        yield blocks[index], request, response


def _same_fields(documented: Any, actual: Any) -> bool:
    """Whether a documented JSON body has the fields of the actual one (for a list, of its first item)."""
    if isinstance(documented, list):
        return isinstance(actual, list) and (
            not documented or (bool(actual) and _same_fields(documented[0], actual[0]))
        )
    if isinstance(documented, dict):
        return isinstance(actual, dict) and set(documented) == set(actual)
    return type(documented) is type(actual)


def check_exchange(client: httpx.Client, block: Block, request: Message, expected: Message) -> None:
    method, path = request.start.split()[:2]
    headers = {k: v.replace("$BANDITGATE_API_KEY", API_KEY) for k, v in request.headers.items()}
    response = client.request(method, path, headers=headers, content=request.body.encode() or None)
    status = int(expected.start.split()[1])
    assert response.status_code == status, (
        f"{block}: {request.start} answered {response.status_code}, the page says {status}:\n{response.text[:2000]}"
    )
    if "json" in expected.headers.get("Content-Type", ""):
        documented = json.loads(expected.body)
        assert _same_fields(documented, response.json()), (
            f"{block}: the documented response of {request.start} does not have the fields of the actual one:\n"
            f"{response.text[:2000]}"
        )
    else:
        for name in re.findall(r"^# HELP (\S+)", expected.body, re.MULTILINE):
            assert f"# HELP {name} " in response.text, f"{block}: {request.start} has no {name}"


def test_http_examples_run_against_a_server(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'banditgate.db'}",
        api_key=API_KEY,
        artifact_dir=tmp_path / "artifacts",
        decision_process=False,
    )
    exchanges = [exchange for page in PAGES for exchange in http_exchanges(page)]
    assert exchanges, "api.md shows requests"
    with LiveServer(settings) as server, server.client() as client:
        for exchange in exchanges:
            check_exchange(client, *exchange)


_CREATEDB = re.compile(r"^createdb\b", re.MULTILINE)
_SERVE = re.compile(r"^banditgate serve\b.*$", re.MULTILINE)


def run_bash_block(shell: Shell, block: Block, serve_port: int | None, log: Path) -> None:
    """Run ``block`` in ``shell``; a ``banditgate serve`` line starts the server on ``serve_port`` in the background.

    The server keeps running after the block (``shell.stop_server()`` stops it).
    """
    position = 0
    for serve in _SERVE.finditer(block.text):
        assert serve_port is not None, f"{block}: this test does not start a server of its own"
        _run_script(shell, block, block.text[position : serve.start()])
        shell.start_server(serve.group(0), serve_port, log)
        position = serve.end()
    _run_script(shell, block, block.text[position:])


def _run_script(shell: Shell, block: Block, script: str) -> None:
    if not script.strip():
        return
    result = shell.run(f"set -e -o pipefail\n{script}", timeout=900)
    assert result.returncode == 0, f"{block} exited {result.returncode}:\n{(result.stdout + result.stderr)[-5000:]}"


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three simulated weeks, two retrainings and a gate evaluation on a loaded machine
def test_shell_examples_run_against_a_server(tmp_path: Path) -> None:
    blocks = [b for b in all_blocks("bash") if not _CREATEDB.search(b.text)]
    assert blocks, "the pages show commands"
    folder = tmp_path / "examples"
    (folder / "artifacts").mkdir(parents=True)
    settings = Settings(
        database_url=f"sqlite:///{folder / 'banditgate.db'}",
        api_key=API_KEY,
        artifact_dir=folder / "artifacts",
        decision_process=False,
    )
    with LiveServer(settings) as server:
        env = _environment(tmp_path / "bin", server.port)
        env.update(
            BANDITGATE_API_KEY=API_KEY,
            BANDITGATE_DATABASE_URL=settings.database_url,
            BANDITGATE_ARTIFACT_DIR=str(settings.artifact_dir),
        )
        shell = Shell(folder, env)
        for block in blocks:
            run_bash_block(shell, block, None, tmp_path / "server.log")
        # cli.md's loop promoted its candidate and rolled it back, operations.md's override deployed the next one
        with server.client() as client:
            generations = {g["number"]: g for g in client.get("/v1/policies/default/generations").json()}
        assert generations[1]["status"] == "retired" and generations[1]["promoted_by"] is not None, generations[1]
        assert generations[2]["status"] == "deployed", generations[2]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(900)  # the workers start on a loaded machine
def test_postgresql_examples_run_on_the_suites_server(postgres_admin_url: str, tmp_path: Path) -> None:
    blocks = [b for b in all_blocks("bash") if _CREATEDB.search(b.text)]
    assert blocks, "operations.md shows how to run with PostgreSQL"
    admin = urlsplit(postgres_admin_url)
    with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = 'banditgate'").fetchone():
            pytest.skip("the PostgreSQL server has a database named banditgate already, which this test leaves alone")
    folder = tmp_path / "examples"
    folder.mkdir()
    port = free_port()
    env = _environment(tmp_path / "bin", port)
    env.update(
        PGHOST=admin.hostname or "127.0.0.1",
        PGPORT=str(admin.port or 5432),
        PGUSER=unquote(admin.username or ""),
        PGPASSWORD=unquote(admin.password or ""),
        BANDITGATE_API_KEY=API_KEY,
    )
    if shutil.which("createdb", path=env["PATH"]) is None and postgres.server_bin_dir() is not None:
        env["PATH"] += os.pathsep + str(postgres.server_bin_dir())  # the client programs next to the server's
    shell = Shell(folder, env)
    try:
        for block in blocks:
            run_bash_block(shell, block, port, tmp_path / "server.log")
        assert shell.server is not None, "operations.md starts no server on PostgreSQL"
        response = httpx.get(f"http://127.0.0.1:{port}/v1/policies", timeout=30)
        assert response.status_code == 200 and "default" in response.text, response.text
        shell.stop_server()
        database = postgres_admin_url.rsplit("/", 1)[0] + "/banditgate"
        with psycopg.connect(database) as connection:  # the ledger is the database the page created
            tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables")}
        assert {"decisions", "alembic_version"} <= tables, tables
    finally:
        shell.stop_server()
        with psycopg.connect(postgres_admin_url, autocommit=True) as connection:
            connection.execute("DROP DATABASE IF EXISTS banditgate WITH (FORCE)")


def _section(text: str, heading: str) -> str:
    """The text under the Markdown ``heading`` (a whole heading line) up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    end = following.search(text, start + len(heading) + 1)
    return text[start : end.start() if end else len(text)]


def test_api_page_documents_every_route_of_the_app(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'ledger.db'}", decision_process=False))
    routes = {(method.upper(), path) for path, ops in app.openapi()["paths"].items() for method in ops}
    routes |= {("GET", app.openapi_url), ("GET", app.docs_url), ("GET", app.redoc_url)}
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    headings = re.findall(r"^#{2,4} (.*`[A-Z]+ /.*)$", text, re.MULTILINE)
    documented = {(m, p) for h in headings for m, p in re.findall(r"`([A-Z]+) (/[^`\s]*)`", h)}
    assert routes - documented == set(), f"routes of the app that docs/api.md does not document: {routes - documented}"
    assert documented - routes == set(), f"routes in docs/api.md that the app does not have: {documented - routes}"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def test_cli_page_documents_every_command_and_option() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = dict(_commands(typer.main.get_command(cli_app)))
    documented = set(re.findall(r"^## `banditgate ([a-z -]+)`$", text, re.MULTILINE))
    names = {" ".join(path) for path in commands}
    assert names - documented == set(), f"commands docs/cli.md does not document: {names - documented}"
    assert documented - names == set(), f"commands in docs/cli.md that banditgate does not have: {documented - names}"
    missing = []
    for path, command in commands.items():
        section = _section(text, f"## `banditgate {' '.join(path)}`")
        for param in command.params:
            for option in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if option.startswith("--") and option != "--help" and f"`{option}`" not in section:
                    missing.append(f"banditgate {' '.join(path)} {option}")
    assert not missing, f"options docs/cli.md does not document: {missing}"


def _first_column(table_text: str) -> set[str]:
    return set(re.findall(r"^\| `([^`]+)` \|", table_text, re.MULTILINE))


def test_configuration_page_documents_every_setting() -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = _first_column(_section(text, "## Settings"))
    names = {re.sub(r"__.*", "", name.removeprefix("BANDITGATE_")).lower() for name in documented}
    fields = set(Settings.model_fields)
    assert fields - names == set(), f"settings docs/configuration.md does not document: {fields - names}"
    assert names - fields == set(), f"settings in docs/configuration.md that do not exist: {names - fields}"
    for heading, model in (("## Policies", PolicySettings), ("## The gate", GateSettings)):
        columns = _first_column(_section(text, heading))
        assert columns == set(model.model_fields), f"{heading} of docs/configuration.md: {columns} against " + str(
            set(model.model_fields)
        )

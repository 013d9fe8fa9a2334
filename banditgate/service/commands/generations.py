"""``banditgate promote | rollback | generations``: govern the generations of a policy on a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from banditgate.service.commands.client import DEFAULT_URL, ApiKeyOption, UrlOption, print_json, request
from banditgate.service.commands.exits import EXIT_FAILED, EXIT_USAGE

app = typer.Typer()

PolicyOption = Annotated[str, typer.Option("--policy", help="policy name")]
ReasonOption = Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")]
ActorOption = Annotated[str | None, typer.Option("--actor", envvar="USER", help="who is making the change")]


@app.command()
def promote(
    policy: PolicyOption,
    generation: Annotated[int, typer.Option("--generation", min=0, help="the candidate generation to deploy")],
    reason: ReasonOption,
    actor: ActorOption = None,
    override_by: Annotated[
        str | None, typer.Option(help="promote without SUFFICIENT evidence: who takes the responsibility")
    ] = None,
    override_reason: Annotated[str | None, typer.Option(help="why the override (kept with the promotion)")] = None,
    override_until: Annotated[
        str | None, typer.Option(help="when the override expires (ISO 8601 with a time zone, e.g. 2026-12-31T00:00Z)")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the service's whole answer as JSON (a refusal's too)")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option("--report", dir_okay=False, help="write the gate's whole report here (JSON), allowed or not"),
    ] = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Deploy a candidate generation; the deployed one is retired (admin: needs the API key).

    The sufficiency gate must say SUFFICIENT on the latest usable stored evaluation (as of now, with the
    policy's gate options: run `banditgate gate` first; a promotion computes none), unless an override names
    who, why and until when (all three --override options). A refusal prints the gate's verdict and its
    reasons on standard error; the gate's whole report goes to --report FILE, or with --json to standard
    output.

    Exit status: 0 promoted; 1 refused (by the gate or the service); 3 service unreachable; 64 usage error.
    """
    body: dict[str, Any] = {"reason": reason}
    given = [v is not None for v in (override_by, override_reason, override_until)]
    if any(given) and not all(given):
        typer.secho(
            "an override needs all of --override-by, --override-reason and --override-until", fg="red", err=True
        )
        raise typer.Exit(EXIT_USAGE)
    if all(given):
        body["override"] = {"by": override_by, "reason": override_reason, "until": override_until}
    path = f"/v1/policies/{policy}/generations/{generation}/promote"

    def refused(answer: Any) -> None:
        gate = _gate_report(answer)
        if gate is not None:
            _print_verdict(gate)
            _keep_report(report, gate)
        if as_json:
            print_json(answer)

    transition = request("POST", url, path, api_key=_need(api_key), actor=actor, on_refusal=refused, json=body)
    if as_json:
        print_json(transition)
    else:
        _report(transition)
    _keep_report(report, transition["audit_event"]["details"].get("gate"))


@app.command()
def rollback(
    policy: PolicyOption,
    reason: ReasonOption,
    to: Annotated[
        int | None,
        typer.Option("--to", min=0, help="retired generation to redeploy (default: the one the deployed replaced)"),
    ] = None,
    actor: ActorOption = None,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Redeploy a retired generation; the deployed one is retired (admin: needs the API key).

    Exit status: 0 rolled back; 1 refused by the service; 3 service unreachable; 64 usage error.
    """
    body = {"reason": reason, "to": to}
    _report(request("POST", url, f"/v1/policies/{policy}/rollback", api_key=_need(api_key), actor=actor, json=body))


@app.command()
def generations(
    policy: PolicyOption,
    as_json: Annotated[bool, typer.Option("--json", help="print the server's JSON")] = False,
    url: UrlOption = DEFAULT_URL,
) -> None:
    """One line per generation: number, status, parent, oracle, exploration, who promoted it, when and why."""
    rows = request("GET", url, f"/v1/policies/{policy}/generations")
    if as_json:
        print_json(rows)
        return
    typer.echo(
        f"{'GEN':>5}  {'STATUS':<9}  {'PARENT':>6}  {'ORACLE':<9}  {'EXPLORATION':<14}  {'PROMOTED BY':<16}  "
        f"{'PROMOTED AT':<20}  REASON"
    )
    for g in rows:
        typer.echo(
            f"{g['number']:>5}  {g['status']:<9}  {_text(g['parent']):>6}  {_text(g['oracle']):<9}  "
            f"{g['exploration']:<14}  {_text(g['promoted_by']):<16}  {_when(g['promoted_at']):<20}  "
            f"{_text(g['promoted_reason'])}"
        )


def _need(api_key: str | None) -> str:
    if not api_key:
        typer.secho("this command needs the admin API key (--api-key or BANDITGATE_API_KEY)", fg="red", err=True)
        raise typer.Exit(EXIT_USAGE)
    return api_key


def _report(transition: dict[str, Any]) -> None:
    deployed, replaced, event = transition["generation"], transition["replaced"], transition["audit_event"]
    verb = "promoted" if transition["action"] == "promote" else "rolled back to"
    typer.echo(
        f"{transition['policy']}: {verb} generation {deployed['number']} (generation {replaced['number']} retired) "
        f"by {event['actor']} at {_when(event['at'])}: {event['reason']}"
    )
    gate = event["details"].get("gate")
    if gate:
        typer.echo(f"gate: {gate.get('message', gate)}")


def _gate_report(answer: Any) -> dict[str, Any] | None:
    """The promotion gate's report in a refusal's body, if the refusal came from the gate."""
    detail = answer.get("detail") if isinstance(answer, dict) else None
    gate = detail.get("gate_report") if isinstance(detail, dict) else None
    return gate if isinstance(gate, dict) else None


def _print_verdict(gate: dict[str, Any]) -> None:
    """The gate's verdict and why, in a few lines: the level, the gate's message, what the evaluation says is
    missing (too little evidence, dimensions to raise) and the alerts it raised."""
    evaluation = gate.get("report") if isinstance(gate.get("report"), dict) else {}
    score = gate.get("S")
    verdict = f"verdict: {gate.get('level') or 'no usable gate evaluation'}"
    if isinstance(score, int | float):
        verdict += f" (S = {score:.3f}"
        verdict += f", evaluation {gate['evaluation_id']}" if gate.get("evaluation_id") is not None else ""
        verdict += f" as of {gate['as_of']})" if gate.get("as_of") else ")"
    reasons = [str(gate.get("message", ""))]
    reasons += list((evaluation.get("evidence_size") or {}).get("reasons", []))
    reasons += [
        r["message"]
        for r in evaluation.get("requirements", [])
        if isinstance(r, dict) and (r.get("needed") is None or r.get("needed", 0.0) > r.get("current", 1.0))
    ]
    reasons += [a["message"] for a in evaluation.get("alerts", []) if isinstance(a, dict) and "message" in a]
    typer.echo(verdict, err=True)
    for reason in filter(None, reasons):
        typer.echo(f"  - {reason}", err=True)
    typer.echo("the gate's whole report: --report FILE, or --json", err=True)


def _keep_report(path: Path | None, gate: dict[str, Any] | None) -> None:
    if path is None or gate is None:
        return
    try:
        path.write_text(json.dumps(gate, indent=2, default=str) + "\n")
    except OSError as exc:
        typer.secho(f"cannot write the gate's report to {path}: {exc}", fg="red", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"wrote the gate's report to {path}", err=True)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


def _when(timestamp: str | None) -> str:
    """ISO 8601 to the second, in UTC (the server sends UTC)."""
    return "-" if timestamp is None else timestamp[:19] + "Z"

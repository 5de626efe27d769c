"""Command line: `podtui` (the TUI), `podtui serve` (headless control plane) and the client verbs.

Every verb but `serve` and the TUI talks to a running control plane (--server URL, or the configured local
address) and says how to start one when none answers.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from ..client import Client, ControlPlaneError, ControlPlaneUnreachable
from ..config import Settings, load_settings, resolve_admin_token
from ..fmt import format_bytes, format_duration
from ..models import (
    MAX_NODES,
    NODE_SEQ_STRIDE,
    LogLine,
    OrphanPod,
    Run,
    node_of_seq,
)
from ..plane_link import PlaneLink
from ..wording import data_wait_text, fields_named, spec_problems, status_label

T = TypeVar("T")


class Context:
    """What every verb needs: settings, and where the control plane is."""

    def __init__(self, server: str | None, token: str | None, server_typed: bool = False) -> None:
        self.server_arg = server
        self.token_arg = token
        self.server_typed = server_typed
        """Whether --server was on the command line (then the commands we suggest need it too)."""
        self.token_given_as = "--token"
        """How --token came: typed, or from PODTUI_ADMIN_TOKEN (an error about the token names it)."""
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings()
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
        return self._settings

    @property
    def server(self) -> str:
        return self.server_arg or self.settings.local_url

    def client(self) -> Client:
        token, source = resolve_admin_token(self.settings, self.token_arg, self.token_given_as)
        return Client(self.server, token, token_source=source)


def run_async(fn: Callable[[], Awaitable[T]], on_interrupt: Callable[[], int] | None = None) -> T:
    """Run a coroutine; turn control-plane errors into one readable line and an exit code. On Ctrl+C,
    `on_interrupt` says what goes on without us and gives the exit code (130 without it)."""
    try:
        return asyncio.run(fn())  # type: ignore[arg-type]
    except ControlPlaneUnreachable as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    except ControlPlaneError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(on_interrupt() if on_interrupt is not None else 130)


def emit_json(data: Any) -> None:
    """Print JSON (models in their JSON form)."""
    if hasattr(data, "model_dump"):
        data = data.model_dump(mode="json")
    elif isinstance(data, list):
        data = [d.model_dump(mode="json") if hasattr(d, "model_dump") else d for d in data]
    click.echo(json.dumps(data, indent=2))


def table(rows: list[list[str]], header: list[str]) -> None:
    """Print a plain aligned table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


async def resolve_run(client: Client, ref: str) -> Run:
    """A run by id, id prefix or name."""
    runs = await client.runs()
    exact = [r for r in runs if r.id == ref or r.name == ref]
    if exact:
        return exact[0]
    prefixed = [r for r in runs if r.id.startswith(ref)]
    if len(prefixed) == 1:
        return prefixed[0]
    if prefixed:
        raise ControlPlaneError(f"{ref!r} matches several runs: {', '.join(r.id for r in prefixed)}")
    raise ControlPlaneError(f"no run {ref!r}; `podtui runs` lists them")



OPTION_OF_FIELD = {"gpu_types": "--gpu", "budget_usd": "--budget", "max_runtime_s": "--max-runtime",
                   "keep_alive_s": "--keep-alive", "sync_outputs_s": "--sync-outputs", "cloud_type": "--cloud",
                   "min_cuda_version": "--min-cuda", "min_gpu_util_pct": "--min-gpu-util",
                   "min_gpu_util_s": "--min-gpu-util", "env": "--env"}
"""The launch option a LaunchSpec field comes from, where the names differ (else --field-name)."""


def launch_problems(exc: ValidationError) -> str:
    """A launch's bad options, named as the user typed them: `--budget: must be at least 0`."""
    return spec_problems(exc, option_of)


def option_of(field: str) -> str:
    """The launch option a LaunchSpec field is typed as."""
    return OPTION_OF_FIELD.get(field, "--" + field.replace("_", "-"))


def options_named(message: str) -> str:
    """The control plane's refusal of a launch with each field named as the option the user typed (`--gpu: …`)."""
    return fields_named(message, option_of)


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--server", envvar="PODTUI_SERVER", help="URL of a running control plane (default: the local one).")
@click.option("--token", envvar="PODTUI_ADMIN_TOKEN", help="Admin token of that control plane.")
@click.version_option(package_name="podtui")
@click.pass_context
def main(ctx: click.Context, server: str | None, token: str | None) -> None:
    """podtui: train models on rented GPU pods from your terminal.

    With no command, opens the dashboard (with its own control plane unless --server is given).
    """
    typed = ctx.get_parameter_source("server") == click.core.ParameterSource.COMMANDLINE
    ctx.obj = Context(server, token, server_typed=typed)
    if ctx.get_parameter_source("token") == click.core.ParameterSource.ENVIRONMENT:
        ctx.obj.token_given_as = "PODTUI_ADMIN_TOKEN"
    if ctx.invoked_subcommand is None:
        from ..app import run_tui

        sys.exit(run_tui(ctx.obj.settings, server, token, ctx.obj.token_given_as))


@main.command()
@click.option("--host", help="Address to bind (default: PODTUI_HOST, else config.toml's host, else 127.0.0.1; "
              "0.0.0.0 to let pods connect directly).")
@click.option("--port", type=int, help="Port (default: PODTUI_PORT, else config.toml's port, else 8765).")
@click.option("--public-url", help="URL pods use to reach this control plane.")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None, public_url: str | None) -> None:
    """Run the control plane headless (supervising pods while no terminal is attached)."""
    from ..config import public_url_problem
    from ..logs import setup_logging
    from ..server.app import ControlPlane, tune_gc

    overrides = {k: v for k, v in {"host": host, "port": port, "public_url": public_url}.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    setup_logging(settings.log_file, settings.log_level, stderr=True)
    plane = ControlPlane(settings)

    async def serve_forever() -> None:
        try:
            await plane.start()
        except OSError as exc:
            raise click.ClickException(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}. Another podtui may be "
                "running there (the other verbs talk to it), or choose --port.") from None
        tune_gc()
        click.echo(f"podtui control plane on {plane.url}; pods use {settings.pod_url}")
        click.echo(f"admin token: in {settings.data_dir / 'admin_token'} (or PODTUI_ADMIN_TOKEN)")
        problem = public_url_problem(settings.public_url, "runpod")
        if settings.default_provider == "runpod" and problem:
            click.echo(f"warning: {problem}", err=True)
        elif settings.public_url and settings.public_url.startswith("http://"):
            click.echo("warning: the public URL is plain http: tokens travel in clear; use https", err=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        click.echo("stopping (pods keep running; a restart supervises them again)")
        await plane.stop()
        pid_file = settings.data_dir / "serve.pid"  # written when the TUI left this one in the background
        if pid_file.is_file() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()

    asyncio.run(serve_forever())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def doctor(obj: Context, as_json: bool) -> None:
    """Check settings, store, provider key, public URL reachability, datasets and the start script."""
    from .doctor import format_report, run_doctor

    report = asyncio.run(run_doctor(obj.server_arg, obj.token_arg))
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.ok else 1)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def datasets(ctx: click.Context, as_json: bool) -> None:
    """List datasets (`podtui datasets add PATH` registers one)."""
    if ctx.invoked_subcommand is not None:
        return
    obj: Context = ctx.obj

    async def go() -> None:
        async with obj.client() as client:
            found = await client.datasets()
        if as_json:
            emit_json(found)
            return
        table([[d.name, d.id[:12], d.kind, format_bytes(d.size_bytes), str(d.file_count),
                ", ".join(d.cached_on) or "-", d.source or d.path] for d in found],
              ["NAME", "ID", "KIND", "SIZE", "FILES", "CACHED ON", "SOURCE"])

    run_async(go)


@datasets.command("add")
@click.argument("source")
@click.option("--name", help="Name to launch it by (default: the file, folder, object or repository name).")
@click.option("--s3-endpoint", envvar="PODTUI_S3_ENDPOINT_URL", help="S3-compatible endpoint for an s3:// "
              "source (default: the control plane's PODTUI_S3_ENDPOINT_URL, else AWS).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def datasets_add(obj: Context, source: str, name: str | None, s3_endpoint: str | None, as_json: bool) -> None:
    """Register a dataset. SOURCE is a local file or folder (hashed here; large ones take a while), or one the
    pods fetch themselves, never through this machine: https://HOST/FILE, s3://BUCKET/KEY-or-PREFIX,
    hf://datasets/ORG/NAME[@REV][/GLOB] or hf://ORG/MODEL[@REV][/GLOB]."""
    remote = re.match(r"^(https?|s3|hf)://", source, re.IGNORECASE) is not None
    if not remote and not os.path.exists(source):
        raise click.BadParameter(f"{source} does not exist (a remote source starts with https://, s3:// or "
                                 "hf://)", param_hint="SOURCE")

    async def go() -> None:
        async with obj.client() as client:
            if remote:
                dataset = await client.add_dataset("", name, source=source,
                                                   s3_endpoint_url=s3_endpoint if source.startswith("s3://")
                                                   else None)
            else:
                dataset = await client.add_dataset(os.path.abspath(source), name)
        if as_json:
            emit_json(dataset)
        elif remote:
            pinned = f", pinned to {dataset.revision[:12]}" if dataset.revision else ""
            click.echo(f"registered {dataset.name} ({format_bytes(dataset.size_bytes)} in {dataset.file_count} "
                       f"file(s){pinned}); pods fetch it from {dataset.source} themselves")
        else:
            click.echo(f"registered {dataset.name} ({format_bytes(dataset.size_bytes)}, sha256 {dataset.sha256[:12]})")

    run_async(go)


@datasets.command("push")
@click.argument("name")
@click.option("--volume", required=True, help="The RunPod network volume (`podtui volumes`).")
@click.pass_obj
def datasets_push(obj: Context, name: str, volume: str) -> None:
    """Copy a local dataset onto a RunPod network volume through RunPod's S3 API, with no pod billing: the next
    `launch --volume VOL` finds it there and moves no byte. Needs PODTUI_RUNPOD_S3_ACCESS_KEY/_SECRET."""

    async def go() -> int:
        async with obj.client() as client:
            async for line in client.push_dataset(name, volume):
                if "error" in line:
                    click.echo(f"\nerror: {line['error']}", err=True)
                    return 1
                if "result" in line:
                    done = line["result"]
                    click.echo(f"\n{name} is on {volume}: {format_bytes(done['uploaded_bytes'])} sent, "
                               f"{format_bytes(done['skipped_bytes'])} already there")
                    return 0
                if sys.stderr.isatty():
                    click.echo(f"\r  {format_bytes(line['done'])} of {format_bytes(line['total'])}", nl=False, err=True)
        return 1

    sys.exit(run_async(go))


@datasets.command("rm")
@click.argument("name")
@click.pass_obj
def datasets_rm(obj: Context, name: str) -> None:
    """Remove a dataset's name from the registry (its files are not touched; past runs still show it)."""

    async def go() -> None:
        async with obj.client() as client:
            versions = await client.remove_dataset(name)
        click.echo(f"removed {name}" + (f" ({versions} versions)" if versions > 1 else ""))

    run_async(go)


@main.command()
@click.option("--provider", type=click.Choice(["local", "runpod"]), help="Only this provider's offers.")
@click.option("--refresh", is_flag=True, help="Ask the provider again instead of using the cached prices.")
@click.option("--cloud", "cloud_type", type=click.Choice(["SECURE", "COMMUNITY", "ALL"]), default="SECURE",
              show_default=True, help="Stock for this cloud type (ALL: the better of the two).")
@click.option("--gpu-count", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Stock for this many GPUs on one pod.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def gpus(obj: Context, provider: str | None, refresh: bool, cloud_type: str, gpu_count: int, as_json: bool) -> None:
    """GPU offers: id, name, VRAM, price per hour (secure/community/spot), stock for the cloud and GPU count."""

    async def go() -> None:
        async with obj.client() as client:
            offers = await client.gpus(provider, refresh=refresh, cloud=cloud_type, count=gpu_count)
        if as_json:
            emit_json(offers)
            return

        def price(p: float | None) -> str:
            return "-" if p is None else f"${p:.2f}"

        table([[o.id, o.name, "-" if o.vram_gb is None else f"{o.vram_gb:g} GB", price(o.secure_price),
                price(o.community_price), price(o.spot_price), o.stock or "-", o.provider] for o in offers],
              ["ID", "NAME", "VRAM", "SECURE/H", "COMMUNITY/H", "SPOT/H",
               f"STOCK ({cloud_type.lower()}, x{gpu_count})", "PROVIDER"])
        if any(o.provider == "runpod" for o in offers):
            click.echo("RunPod prices are list prices per GPU (REST v2 catalog); a pod's billed rate shows on its "
                       "run. Spot: `--spot` rents at RunPod's current spot price through GraphQL, which RunPod "
                       "retires in early 2027.")

    run_async(go)


def attempts_cell(run: Run) -> str:
    """`2/3`: the run's attempt (its pod) out of the most it may have (--retries + 1)."""
    return f"{run.attempt}/{(run.spec.retries or 0) + 1}"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def runs(obj: Context, as_json: bool) -> None:
    """List runs with their status, last loss and cost."""

    async def go() -> None:
        async with obj.client() as client:
            found = await client.runs()
        if as_json:
            emit_json(found)
            return
        now = time.time()
        rows = []
        for r in found:
            loss = "-" if r.last_loss is None else f"{r.last_loss:.4g}"
            age = format_duration((r.ended_at or now) - (r.started_at or r.created_at))
            gpu = r.gpu_type or "-" if r.spec.nodes <= 1 else f"{r.spec.nodes}x{r.spec.gpu_count} {r.gpu_type or '-'}"
            rows.append([r.id, r.name, r.provider, gpu, status_label(r), attempts_cell(r),
                         "-" if r.last_step is None else str(r.last_step), loss, f"${r.spent_usd:.2f}", age,
                         data_wait_text(r.data_wait_s, r.data_wait_usd), (r.status_reason or "")[:60]])
        table(rows, ["ID", "NAME", "PROVIDER", "GPU", "STATUS", "TRY", "STEP", "LOSS", "SPENT", "TIME", "DATA WAIT",
                     "REASON"])
        for r in found:
            if r.pod_end_failed:
                click.secho(f"{r.name} ({r.id}): {r.pod_end_failed}", fg="red", bold=True, err=True)

    run_async(go)


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--tail", type=int, default=None, help="Only the last N lines first.")
@click.option("--node", type=click.IntRange(0, MAX_NODES - 1), default=None,
              help="A run of several nodes: only node K's lines (every node's by default, each tagged [node K]).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (seq, ts, stream, text; node "
              "with several nodes).")
@click.pass_obj
def logs(obj: Context, run_ref: str, follow: bool, tail: int | None, node: int | None, as_json: bool) -> None:
    """Print a run's log lines."""

    async def go() -> None:
        async with obj.client() as client:
            run = await resolve_run(client, run_ref)
            several = run.spec.nodes > 1
            if node is not None and node >= run.spec.nodes:
                raise click.UsageError(f"run {run.id} has {run.spec.nodes} node(s), numbered from 0: no node {node}")
            # Each node numbers its lines in its own range (NODE_SEQ_STRIDE apart): each range is followed apart,
            # so a node that prints later is not skipped past.
            ranks = [node] if node is not None else list(range(run.spec.nodes))
            after = {k: k * NODE_SEQ_STRIDE - 1 for k in ranks}
            before = {k: (k + 1) * NODE_SEQ_STRIDE if several else None for k in ranks}

            def show(lines: list[LogLine]) -> None:
                for line in sorted(lines, key=lambda x: x.ts) if len(ranks) > 1 else lines:
                    # one pod's later attempts number their lines from 10**12 up too (issue 26): node 0 all the same
                    k = node_of_seq(line.seq) if several else ranks[0]
                    if as_json:
                        click.echo(json.dumps({**line.model_dump(mode="json"), **({"node": k} if several else {})}))
                    else:
                        click.echo(f"[node {k}] {line.text}" if several else line.text)
                    after[k] = max(after[k], line.seq)

            async def page(k: int, limit: int, last: bool = False) -> list[LogLine]:
                got = await client.logs(run.id, after_seq=after[k], limit=limit, tail=last, before_seq=before[k])
                return got.lines

            if tail:
                show([x for k in ranks for x in await page(k, min(tail, 10_000), last=True)])
            link = PlaneLink(client.url)
            while True:
                try:
                    pages = {k: await page(k, 5000) for k in ranks}
                except ControlPlaneUnreachable:
                    if not follow:
                        raise
                    if link.failed(time.time()):  # following: the run goes on, and so do we
                        click.echo(f"-- {link.describe('')}; the run goes on", err=True)
                    await asyncio.sleep(link.retry_delay())
                    continue
                if link.answered():
                    click.echo(f"-- the control plane at {client.url} answers again", err=True)
                show([x for lines in pages.values() for x in lines])
                if any(len(lines) == 5000 for lines in pages.values()):
                    continue
                if not follow:
                    return
                try:
                    run = await client.run(run.id)
                except ControlPlaneUnreachable:
                    continue  # the next read says it and waits
                if run.status.is_final:
                    show([x for k in ranks for x in await page(k, 5000)])
                    click.echo(f"-- run {run.status.value}: {run.status_reason or ''}", err=True)
                    return
                await asyncio.sleep(1.0)

    run_async(go)


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--csv", "as_csv", is_flag=True, help="name,step,value,ts,attempt rows.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--name", help="Only this metric.")
@click.pass_obj
def metrics(obj: Context, run_ref: str, as_csv: bool, as_json: bool, name: str | None) -> None:
    """Print a run's metrics."""

    async def go() -> None:
        async with obj.client() as client:
            run = await resolve_run(client, run_ref)
            page = await client.metrics(run.id, name=name)
        if as_json:
            emit_json(page)
        elif as_csv:
            writer = csv.writer(sys.stdout)
            writer.writerow(["name", "step", "value", "ts", "attempt"])
            for metric, series in page.series.items():
                attempts = series.attempts or [1] * len(series.steps)
                for step, value, ts, attempt in zip(series.steps, series.values, series.ts, attempts, strict=True):
                    writer.writerow([metric, step, value, ts, attempt])
        else:
            rows = []
            for metric, series in page.series.items():
                values = series.values
                rows.append([metric, str(len(values)), str(series.steps[-1]) if series.steps else "-",
                             f"{values[-1]:.5g}" if values else "-",
                             f"{min(values):.5g}" if values else "-"])
            table(rows, ["METRIC", "POINTS", "LAST STEP", "LAST", "MIN"])
            if run.metrics_source:
                click.echo(f"read from: {run.metrics_source}")

    run_async(go)


@main.command()
@click.option("--terminate", "do_terminate", is_flag=True, help="Terminate them (asks first unless --yes).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def orphans(obj: Context, do_terminate: bool, yes: bool, as_json: bool) -> None:
    """Pods named like podtui's that no run knows (they bill unseen), and terminating them."""

    async def find() -> list[OrphanPod]:
        async with obj.client() as client:
            return await client.orphans()

    found = run_async(find)
    if as_json and not do_terminate:
        emit_json(found)
        return
    if not found:
        click.echo("no orphan pods")
        return
    table([[o.provider, o.pod_id, o.name, o.phase, "-" if o.price_per_hour is None else f"${o.price_per_hour:.2f}"]
           for o in found], ["PROVIDER", "POD", "NAME", "PHASE", "$/H"])
    if not do_terminate:
        click.echo("terminate them with `podtui orphans --terminate`")
        return
    if not yes and not click.confirm(f"Terminate these {len(found)} pods?", default=False):
        click.echo("left running")
        return

    async def end_all() -> None:
        async with obj.client() as client:
            for orphan in found:
                await client.terminate_orphan(orphan.provider, orphan.pod_id)
                click.echo(f"terminated {orphan.pod_id}")

    run_async(end_all)


@main.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--json", "as_json", is_flag=True, help="Print the terminated run as JSON.")
@click.pass_obj
def terminate(obj: Context, run_ref: str, yes: bool, as_json: bool) -> None:
    """Terminate a run's pod (it stops billing)."""

    async def find() -> Run:
        async with obj.client() as client:
            return await resolve_run(client, run_ref)

    run = run_async(find)
    lost = f" Outputs not home yet are lost: `podtui outputs {run.id} --sync` brings them home first." \
        if run.pod_in_use(time.time()) else ""
    if not yes and not click.confirm(f"Terminate {run.name} ({run.id}, {run.status.value})?{lost}", default=False):
        click.echo("left running")
        return

    async def go() -> None:
        async with obj.client() as client:
            done = await client.terminate(run.id)
        if as_json:
            emit_json(done)
        else:
            click.echo(f"{done.name}: {done.status.value} ({done.status_reason or ''})")

    run_async(go)


# Verbs in their own modules use the helpers above.
from .launch import event_lines, follow_outputs, follow_run, interrupted_note, launch  # noqa: E402
from .outputs import outputs  # noqa: E402
from .volumes import register as register_volumes  # noqa: E402

main.add_command(launch)
main.add_command(outputs)
register_volumes(main)
__all__ = ["event_lines", "follow_outputs", "follow_run", "interrupted_note", "main"]

if __name__ == "__main__":
    main()

"""`podtui launch`: a run from the command line, followed to its end with --wait (its events, steps, outputs home;
Ctrl+C says what keeps running and billing)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import click
from pydantic import ValidationError

from ..client import Client, ControlPlaneError, ControlPlaneUnreachable
from ..fmt import format_duration
from ..models import LaunchSpec, Run, RunEvent, RunStatus
from ..plane_link import PlaneLink
from ..wording import outputs_line, volume_outputs_line
from . import Context, emit_json, launch_problems, options_named, run_async


@click.command()
@click.option("--dataset", required=True, help="Dataset name or id (`demo` is always there).")
@click.option("--gpu", "gpu_types", multiple=True, help="GPU type id; repeat for fallbacks, tried in order.")
@click.option("--command", help="Training command (the demo trainer when omitted with --dataset demo).")
@click.option("--workdir", type=click.Path(exists=True, file_okay=False), help="Code folder shipped to the pod.")
@click.option("--image", help="Container image.")
@click.option("--provider", type=click.Choice(["local", "runpod"]), help="Where the pod runs.")
@click.option("--gpu-count", type=int, default=1, show_default=True, help="GPUs per node.")
@click.option("--nodes", type=int, default=1, show_default=True, help="Pods (nodes) of the run, each with "
              "--gpu-count GPUs: more than one is a RunPod Instant Cluster (or that many local pods). Every pod "
              "gets MASTER_ADDR, NODE_RANK, NUM_NODES, ... and $PODTUI_TORCHRUN: --command '$PODTUI_TORCHRUN "
              "train.py' runs on 1 GPU, 8, or N nodes.")
@click.option("--outputs-from", type=click.Choice(["0", "all"]), default="0", show_default=True,
              help="Whose outputs come home: node 0's, or every node's (under node<k>/).")
@click.option("--cloud", "cloud_type", type=click.Choice(["SECURE", "COMMUNITY", "ALL"]), default="SECURE",
              show_default=True)
@click.option("--spot", is_flag=True, help="Interruptible (spot) pricing: RunPod's GraphQL API, retired early 2027.")
@click.option("--min-cuda", "min_cuda_version", help="Lowest CUDA version of the host, e.g. 12.8 (default: the "
              "image tag's).")
@click.option("--connect", type=click.Choice(["push", "pull"]), help="push: pods call the control plane at its "
              "public URL; pull: the control plane calls the pods through RunPod's proxy (no public URL needed). "
              "Default: push with a public https URL, else pull.")
@click.option("--ssh", is_flag=True, help="Expose 22/tcp and start sshd (narrows Community capacity).")
@click.option("--min-gpu-util", "min_gpu_util", help="Warn when GPU use stays below PCT while training; "
              "PCT or PCT/DURATION, e.g. 30 or 30/15m (default duration 10m).")
@click.option("--metrics", "metrics_mode", type=click.Choice(["auto", "json", "off"]), help="How the pod reads "
              "metrics from the output: auto (JSON, key=value, Trainer dicts, progress bars), json (JSON lines "
              "only), off. Default: the PODTUI_METRICS setting (auto).")
@click.option("--metrics-ranks", type=click.Choice(["0", "all"]), help="With a launcher's rank prefixes "
              "([rank1]:), count rank 0's metrics (default) or every rank's, named rank<N>/<metric>.")
@click.option("--max-runtime", help="Terminate after this long, e.g. 2h (0: no limit, the default).")
@click.option("--budget", type=float, help="Terminate once the pod has cost this many dollars (0: no limit, the "
              "default).")
@click.option("--keep-alive", default="30m", show_default=True, help="After the command ends, the longest the pod "
              "may stay to bring its outputs home (it ends as soon as they are); 0 ends it at once.")
@click.option("--outputs", "outputs_dir", help="The pod's outputs folder ($PODTUI_OUTPUT_DIR), relative to the "
              "workdir (default: outputs).")
@click.option("--sync-outputs", help="Also bring the outputs home every this long while the command runs, e.g. 10m.")
@click.option("--retries", type=int, help="Replace a lost pod (gone, exited, restarted, silent, failed to boot) up to "
              "N times; the new pod resumes from the outputs home in $PODTUI_RESUME_DIR (default: 2 on RunPod, 0 "
              "on the local provider).")
@click.option("--retry-failed", is_flag=True, help="Also retry when the training command itself exits non-zero.")
@click.option("--volume", help="Mount this volume (`podtui volumes`): datasets are cached on it and reused by "
              "later runs with no transfer; HF_HOME points into it. RunPod: the pod runs in the volume's data "
              "center, Secure Cloud.")
@click.option("--outputs-on-volume", is_flag=True, help="With --volume: the command writes its outputs to the "
              "volume (podtui/outputs/RUN/), where they stay with nothing sent through this machine; `podtui "
              "outputs RUN` says where, `--to DIR` fetches them.")
@click.option("--dataset-changed-ok", is_flag=True, help="Launch even though the local dataset changed since it "
              "was registered: hash it again and register it as it is now (otherwise the launch is refused).")
@click.option("--name", help="Run name.")
@click.option("--env", "env_pairs", multiple=True, help="KEY=VALUE for the training command; repeatable.")
@click.option("--wait", is_flag=True, help="Follow the run; exit 0 on success, non-zero otherwise.")
@click.option("--json", "as_json", is_flag=True, help="Print the (final) run as JSON.")
@click.pass_obj
def launch(obj: Context, dataset: str, gpu_types: tuple[str, ...], command: str | None, workdir: str | None,
           image: str | None, provider: str | None, gpu_count: int, nodes: int, outputs_from: str,
           cloud_type: str, spot: bool,
           min_cuda_version: str | None, connect: str | None, ssh: bool, min_gpu_util: str | None,
           metrics_mode: str | None, metrics_ranks: str | None, max_runtime: str | None,
           budget: float | None, keep_alive: str, outputs_dir: str | None, sync_outputs: str | None,
           retries: int | None, retry_failed: bool, volume: str | None, outputs_on_volume: bool,
           dataset_changed_ok: bool, name: str | None,
           env_pairs: tuple[str, ...], wait: bool,
           as_json: bool) -> None:
    """Launch a run."""
    env = {}
    for pair in env_pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    chosen_provider = provider or obj.settings.default_provider
    gpus = list(gpu_types) or (["local"] if chosen_provider == "local" else [])
    if not gpus:
        raise click.UsageError("give at least one --gpu (see `podtui gpus`)")
    if outputs_on_volume and not volume:
        raise click.UsageError("--outputs-on-volume writes the outputs to a volume: choose it with --volume NAME "
                               "(`podtui volumes` lists them)")
    fields: dict[str, Any] = {
        "dataset": dataset, "gpu_types": gpus, "command": command,
        "workdir": os.path.abspath(workdir) if workdir else None, "provider": provider, "name": name,
        "gpu_count": gpu_count, "cloud_type": cloud_type, "spot": spot, "max_runtime_s": max_runtime,
        "budget_usd": budget, "keep_alive_s": keep_alive, "env": env, "min_cuda_version": min_cuda_version,
        "ssh": ssh or None, "connect": connect, "metrics": metrics_mode, "metrics_ranks": metrics_ranks,
        "outputs": outputs_dir, "sync_outputs_s": sync_outputs, "retries": retries,
        "retry_failed": retry_failed or None, "dataset_changed_ok": dataset_changed_ok or None, "volume": volume,
        "nodes": nodes, "outputs_from": outputs_from, "outputs_on_volume": outputs_on_volume or None,
    }
    if min_gpu_util:
        pct, _, duration = min_gpu_util.partition("/")
        fields["min_gpu_util_pct"] = pct.strip().rstrip("%")
        if duration:
            fields["min_gpu_util_s"] = duration
    if image:
        fields["image"] = image
    try:
        spec = LaunchSpec.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise click.UsageError(launch_problems(exc)) from None

    launched: list[Run] = []  # the run, once the control plane has made it (Ctrl+C needs to say which)

    async def go() -> int:
        async with obj.client() as client:
            if chosen_provider != "local" and not as_json:  # a large local dataset through this uplink: say so
                said = (await client.data_estimate(spec)).get("message")
                if said:
                    click.echo(f"note: {said}", err=True)
            try:
                run = await client.launch(spec)
            except ControlPlaneError as exc:
                if exc.status != 422:
                    raise
                raise ControlPlaneError(options_named(exc.message), exc.status, exc.code) from None
            launched.append(run)
            if not wait:
                if as_json:
                    emit_json(run)
                else:
                    click.echo(f"launched {run.name} ({run.id}) on {run.provider} ({run.connect}); follow it "
                               f"with `podtui logs {run.id} --follow`")
                return 0
            if not as_json:
                click.echo(f"launched {run.name} ({run.id}) on {run.provider}")
            run = await follow_run(client, run.id, quiet=as_json)
            if not as_json:
                await follow_outputs(client, run)
            if as_json:
                emit_json(run)
            return 0 if run.status == RunStatus.succeeded else 1

    code = run_async(go, on_interrupt=lambda: launch_interrupted(obj, launched[-1] if launched else None, as_json))
    sys.exit(code)


def launch_interrupted(obj: Context, run: Run | None, as_json: bool) -> int:
    """Ctrl+C while a launch was followed: what keeps running and billing, the commands to follow or end it, and
    (at a terminal) whether to terminate it now; the answer defaults to keeping it. The exit code: 130."""
    server = f"--server {obj.server_arg} " if obj.server_typed and obj.server_arg else ""
    if run is None:
        click.echo(f"\nstopped before the control plane said the run was made; it may have been: `podtui {server}runs` "
                   "lists the runs, `podtui terminate RUN` ends one", err=True)
        return 130

    run_id = run.id

    async def fresh() -> Run:
        async with obj.client() as client:
            return await asyncio.wait_for(client.run(run_id), 10)

    try:
        run = asyncio.run(fresh())
    except (ControlPlaneError, TimeoutError, KeyboardInterrupt):
        pass  # say what we knew
    click.echo(interrupted_note(run, server, time.time()), err=True)
    if not run.pod_in_use(time.time()) or as_json or not sys.stdin.isatty():
        return 130
    try:
        end_it = click.confirm(f"Terminate {run.name} now?", default=False, err=True)
    except click.Abort:
        end_it = False
    if not end_it:
        click.echo(f"{run.name} keeps running", err=True)
        return 130

    async def terminate_it() -> Run:
        async with obj.client() as client:
            return await client.terminate(run_id)

    try:
        done = asyncio.run(terminate_it())
    except ControlPlaneError as exc:
        click.echo(f"error: {exc.message}; `podtui {server}terminate {run.id}` tries again", err=True)
        return 1
    click.echo(f"{done.name}: {done.status.value} ({done.status_reason or ''})", err=True)
    return 130


def interrupted_note(run: Run, server: str, now: float) -> str:
    """What the user is told on Ctrl+C during `launch --wait`: whether the pod goes on billing, and how to follow
    or terminate it."""
    if not run.pod_in_use(now):
        return f"\nstopped following {run.name} ({run.id}): it has ended ({run.status.value}), nothing bills"
    rate = f" at ${run.price_per_hour:.2f}/h" if run.price_per_hour else ""
    limits = []
    if run.spec.max_runtime_s:
        limits.append(f"max runtime {format_duration(run.spec.max_runtime_s)}")
    if run.spec.budget_usd:
        limits.append(f"budget ${run.spec.budget_usd:.2f}")
    until = f"its command ends or a limit stops it ({', '.join(limits)})" if limits else \
        "its command ends (it has no time or budget limit)"
    state = "its pod stays to bring its outputs home" if run.status.is_final else f"it is {run.status.value}"
    billing = f"keeps running and billing{rate} (${run.cost_at(now):.2f} so far)" \
        if run.price_per_hour or run.provider != "local" else "keeps running (a local pod: nothing bills)"
    return (f"\nstopped following; {run.name} ({run.id}) goes on: {state}, and its pod {billing} until {until}.\n"
            f"  follow it:     podtui {server}logs {run.id} --follow\n"
            f"  terminate it:  podtui {server}terminate {run.id}")


async def follow_outputs(client: Client, run: Run, poll_s: float = 1.0) -> None:
    """After the command ended: wait while the outputs come home (at most until the pod's keep-alive bound)."""
    shown = ""
    while True:
        page = await client.outputs(run.id)
        if page.volume is not None:  # --outputs-on-volume: they stay there; nothing to wait for
            click.echo(f"  {volume_outputs_line(page.volume)}")
            return
        line = outputs_line(page)
        if line != shown and page.summary.state != "none":
            click.echo(f"  {line}")
            shown = line
        fresh = await client.run(run.id)
        if fresh.pod_end_failed:
            click.secho(f"  {fresh.pod_end_failed}", fg="red", bold=True, err=True)
            return
        if page.summary.state == "home" or not fresh.pod_in_use(time.time()):
            if page.summary.state == "home":
                click.echo(f"  in {page.folder} (`podtui outputs {run.id} --to DIR` copies them)")
            return
        await asyncio.sleep(poll_s)


def event_lines(event: RunEvent) -> str:
    """A run event as `launch --wait` prints it: whole, its later lines indented under the first (a failure's
    tail is the command's last lines)."""
    first, *rest = (event.message or "").rstrip("\n").split("\n")
    head = f"{time.strftime('%H:%M:%S', time.localtime(event.ts))} {event.kind}: {first}"
    return "\n".join([head, *("    " + line for line in rest)])


async def follow_run(client: Client, run_id: str, quiet: bool = False, poll_s: float = 1.0) -> Run:
    """Print a run's events and progress until it ends; return the final run."""
    last_event = 0
    last_step_shown: int | None = None
    source_shown: str | None = None
    link = PlaneLink(client.url)
    while True:
        try:
            run = await client.run(run_id)
            events = await client.run_events(run_id, last_event)
        except ControlPlaneUnreachable:
            # the run goes on without us: say so (on stderr, also with --json) and keep asking, backing off
            if link.failed(time.time()):
                click.echo(f"{link.describe('')}; the run goes on (Ctrl+C stops following, not the run)", err=True)
            await asyncio.sleep(link.retry_delay())
            continue
        if link.answered():
            click.echo(f"the control plane at {client.url} answers again", err=True)
        if not quiet and run.metrics_source and run.metrics_source != source_shown:
            source_shown = run.metrics_source
            click.echo(f"  metrics read from: {run.metrics_source}")
        for event in events:
            last_event = event.id
            if not quiet:
                click.secho(event_lines(event), fg="red" if event.kind == "pod_end_failed" else None)
        if not quiet and run.last_step is not None and run.last_step != last_step_shown:
            last_step_shown = run.last_step
            click.echo(f"  step {run.last_step}  loss {run.last_loss:.5g}  spent ${run.spent_usd:.4f}")
        if run.status.is_final:
            if not quiet:
                click.echo(f"run {run.status.value}: {run.status_reason or ''}")
            return run
        await asyncio.sleep(poll_s)

"""`podtui outputs RUN`: a run's outputs brought home from its pod: listed, copied out (never over a file the user
changed, without --force), or asked for now."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click

from ..client import ControlPlaneError
from ..fmt import format_bytes
from ..wording import outputs_line, volume_outputs_line
from . import Context, emit_json, resolve_run, run_async, table


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--to", "to_dir", type=click.Path(file_okay=False), help="Copy the files that are home into DIR "
              "(a run with --outputs-on-volume: fetched from its volume first) "
              "(resumable; sha256 checked; identical files are skipped).")
@click.option("--force", is_flag=True, help="With --to: also replace files changed in DIR since the last copy, "
              "and files podtui did not put there.")
@click.option("--sync", "sync_now", is_flag=True, help="Ask the running pod for its outputs now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def outputs(obj: Context, run_ref: str, to_dir: str | None, force: bool, sync_now: bool, as_json: bool) -> None:
    """List a run's outputs (files brought home from its pod, or left on its volume with --outputs-on-volume),
    copy them out, or ask for a sync now."""
    async def go() -> None:
        async with obj.client() as client:
            run = await resolve_run(client, run_ref)
            if sync_now:
                await client.sync_outputs(run.id)
                if not as_json:
                    click.echo(f"asked {run.name} ({run.id}) for its outputs; `podtui outputs {run.id}` shows them "
                               "as they arrive")
            if to_dir is not None and run.spec.outputs_on_volume:
                await fetch_from_volume(client, run.id, as_json)
            page = await client.outputs(run.id, fresh=True)
            if to_dir is not None:
                await copy_outputs(client, run.id, page, Path(to_dir), force, as_json)
                return
            if as_json:
                emit_json(page)
                return
            rows = []
            for f in page.files:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f.home_at)) if f.home_at else "-"
                moving = "" if f.moving_size is None else \
                    f"moving {format_bytes(f.received)}/{format_bytes(f.moving_size)}"
                rows.append([f.path, "-" if f.size is None else format_bytes(f.size), (f.sha256 or "-")[:16], when,
                             moving])
            if page.volume is not None:
                on_volume = [[f.path, format_bytes(f.size or 0), time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.localtime(f.mtime)) if f.mtime else "-"] for f in page.volume.files]
                if on_volume:
                    table(on_volume, ["ON THE VOLUME", "SIZE", "CHANGED AT"])
                click.echo(volume_outputs_line(page.volume))
                if not page.files:
                    return
                click.echo("fetched here:")
            if rows:
                table(rows, ["NAME", "SIZE", "SHA256", "HOME AT", ""])
            click.echo(outputs_line(page, run.pod_in_use(time.time()))
                       + (f"  ({page.folder})" if page.files else ""))

    run_async(go)


async def copy_outputs(client: Any, run_id: str, page: Any, folder: Path, force: bool, as_json: bool) -> None:
    """Copy the files that are home into `folder`, never over one the user changed there since the last copy (or
    one podtui did not put there) without `force`; those kept are an error that names them."""
    from ..bootstrap.agent.output_names import output_name_problem
    from ..output_copies import plan_copy, read_record, write_record

    record = read_record(folder)  # what earlier copies wrote: a file changed since is the user's
    copied: list[dict[str, Any]] = []
    kept: list[str] = []
    for f in page.files:
        if f.size is None or f.sha256 is None or output_name_problem(f.path):
            if f.size is not None:  # a bad name: download_output refuses it with the reason
                await client.download_output(run_id, f, folder)
            continue
        plan = await asyncio.to_thread(plan_copy, folder / f.path, f.sha256, record.get(f.path))
        if plan in ("changed", "foreign") and not force:
            why = "changed since the last copy" if plan == "changed" else "not copied there by podtui"
            kept.append(f.path)
            copied.append({"path": f.path, "to": str(folder / f.path), "copied": False, "sha256": f.sha256,
                           "kept": plan})
            if not as_json:
                click.echo(f"kept {folder / f.path}: {why} (--force replaces it)", err=True)
            continue
        path, fresh = await client.download_output(run_id, f, folder)
        record[f.path] = f.sha256
        write_record(folder, record)
        copied.append({"path": f.path, "to": str(path), "copied": fresh, "sha256": f.sha256})
        if not as_json:
            click.echo(f"{'copied ' if fresh else 'already there '}{f.path} -> {path}")
    if as_json:
        emit_json({"run_id": run_id, "files": copied})
    elif not copied:
        click.echo("no output is home yet")
    if kept:
        many = len(kept) > 1
        raise ControlPlaneError(f"{len(kept)} file{'s' if many else ''} in {folder} not replaced "
                                f"(changed there since the last copy, or not podtui's): "
                                f"{', '.join(kept[:5])}; --force replaces {'them' if many else 'it'}")


async def fetch_from_volume(client: Any, run_id: str, quiet: bool) -> None:
    """Bring the outputs a run wrote to its volume home (progress on a terminal's stderr); files that could not be
    fetched are named on stderr, and nothing at all is an error."""
    import sys

    async for line in client.fetch_volume_outputs(run_id):
        if "error" in line:
            raise ControlPlaneError(f"cannot fetch the outputs from the volume: {line['error']}")
        if "result" in line:
            done = line["result"]
            if sys.stderr.isatty():
                click.echo("", err=True)
            if not quiet:
                click.echo(f"fetched from the volume: {done['fetched']} file(s), {format_bytes(done['bytes'])}"
                           + (f"; {done['skipped']} already here" if done["skipped"] else ""), err=True)
            for failed in done["failed"]:
                click.echo(f"not fetched: {failed}", err=True)
            return
        if sys.stderr.isatty() and not quiet:
            click.echo(f"\r  {format_bytes(line['done'])} of {format_bytes(line['total'])}", nl=False, err=True)

"""`podtui volumes`: storage that outlives pods (RunPod network volumes, local folders), where datasets are
cached so a later run moves no byte."""

from __future__ import annotations

from typing import Any

import click

from ..fmt import format_bytes
from ..models import VolumeCreate
from ..wording import spec_problems, volume_losses

OPTION_OF_FIELD = {"name": "NAME", "size_gb": "--size", "data_center": "--dc", "type": "--type",
                   "provider": "--provider"}
"""`volumes create`'s argument or option of a VolumeCreate field, for its problems."""


def register(main: click.Group) -> None:
    """Add the `volumes` group to the command line."""
    main.add_command(volumes)


@click.group(invoke_without_command=True)
@click.option("--provider", type=click.Choice(["local", "runpod"]), help="Only this provider's volumes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def volumes(ctx: click.Context, provider: str | None, as_json: bool) -> None:
    """List volumes: name, data center, size, type, $/month, runs using them, datasets cached on them."""
    if ctx.invoked_subcommand is not None:
        return
    from . import emit_json, run_async, table  # the package's helpers (it imports this module at its end)

    obj = ctx.obj

    async def go() -> None:
        async with obj.client() as client:
            found = await client.volumes(provider)
        if as_json:
            emit_json(found)
            return
        rows = []
        for v in found:
            size = f"{v.size_gb} GB" if v.size_gb is not None else \
                (format_bytes(v.used_bytes) + " used" if v.used_bytes is not None else "-")
            price = f"${v.price_per_month:.2f}" if v.price_per_month is not None else "-"
            rows.append([v.name, v.provider, v.data_center or "-", size, v.type or "-", price,
                         ", ".join(v.in_use_by) or "-", ", ".join(v.cached) or "-"])
        table(rows, ["NAME", "PROVIDER", "DC", "SIZE", "TYPE", "$/MONTH", "IN USE BY", "CACHED"])

    run_async(go)


@volumes.command("create")
@click.argument("name")
@click.option("--size", "size_gb", type=int, help="GB, 10 to 4096 (RunPod; it can grow later, never shrink).")
@click.option("--dc", "data_center", help="RunPod data center, e.g. EU-RO-1: pods using the volume run there.")
@click.option("--type", "volume_type", type=click.Choice(["STANDARD", "HIGH_PERFORMANCE"]), help="RunPod tier.")
@click.option("--provider", type=click.Choice(["local", "runpod"]), help="Default: the control plane's provider.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def volumes_create(obj: Any, name: str, size_gb: int | None, data_center: str | None, volume_type: str | None,
                   provider: str | None, as_json: bool) -> None:
    """Create a volume (a RunPod network volume bills every month until removed)."""
    from pydantic import ValidationError

    from . import emit_json, run_async

    try:
        body = VolumeCreate.model_validate({"name": name, "size_gb": size_gb, "data_center": data_center,
                                            "type": volume_type, "provider": provider})
    except ValidationError as exc:
        raise click.UsageError(spec_problems(exc, lambda field: OPTION_OF_FIELD.get(field, field))) from None

    async def go() -> None:
        async with obj.client() as client:
            made = await client.create_volume(body)
        if as_json:
            emit_json(made)
        elif made.provider == "runpod":
            click.echo(f"created {made.name} ({made.id}) in {made.data_center}, {made.size_gb} GB, about "
                       f"${made.price_per_month:.2f}/month until `podtui volumes rm {made.name}`")
        else:
            click.echo(f"created local volume {made.name} at {made.path}")

    run_async(go)


@volumes.command("rm")
@click.argument("name")
@click.option("--provider", type=click.Choice(["local", "runpod"]), help="Default: the control plane's provider.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.pass_obj
def volumes_rm(obj: Any, name: str, provider: str | None, yes: bool) -> None:
    """Delete a volume and everything on it (refused while a pod uses it)."""
    from . import run_async

    async def losses() -> str | None:
        async with obj.client() as client:
            volume = next((v for v in await client.volumes(provider) if v.name == name), None)
            return None if volume is None else volume_losses(volume, await client.runs())

    said = None if yes else run_async(losses)  # None: an unknown name, the delete gets the control plane's answer
    question = f"Delete volume {name} and everything on it?" + (f" {said}" if said else "")
    if said is not None and not click.confirm(question, default=False):
        click.echo("kept")
        return

    async def go() -> None:
        async with obj.client() as client:
            gone = await client.remove_volume(name, provider)
        click.echo(f"deleted {gone.provider} volume {gone.name}")

    run_async(go)

"""`podtui doctor`: settings, data dir, store, provider, public URL (with a round trip that proves it reaches
this control plane), datasets, and the start script. Non-zero exit on any failure."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from ..actions import keymap_problems
from ..bootstrap.script import render_start_script
from ..client import Client, ControlPlaneError
from ..config import (
    Settings,
    config_file_path,
    load_settings,
    public_url_problem,
    resolve_admin_token,
    unknown_settings,
)
from ..models import Dataset, DoctorCheck

Status = Literal["ok", "warn", "fail"]


@dataclass
class Report:
    """Every check's outcome, the CLI's and the control plane's."""

    checks: list[DoctorCheck] = field(default_factory=list)

    def add(self, name: str, status: Status, message: str) -> None:
        self.checks.append(DoctorCheck(name=name, status=status, message=message))

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.model_dump() for c in self.checks]}


def check_data_dir(settings: Settings, report: Report) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.data_dir, prefix=".doctor-"):
            pass
        report.add("data dir", "ok", f"{settings.data_dir} is writable")
    except OSError as exc:
        report.add("data dir", "fail", f"{settings.data_dir} is not writable ({exc.strerror}); set PODTUI_DATA_DIR")


def check_keymap(settings: Settings, report: Report) -> None:
    """A [keymap] the dashboard would refuse at start."""
    if not settings.keymap:
        return
    problems = keymap_problems(settings.keymap)
    report.add("keymap", "fail" if problems else "ok",
               "; ".join(problems) or f"{len(settings.keymap)} key(s) remapped, none taken from another binding")


def check_start_script(report: Report) -> None:
    dataset = Dataset(id="0" * 64, name="doctor", path="/x", kind="file", size_bytes=1, file_count=1,
                      sha256="0" * 64, created_at=time.time())
    script = render_start_script(run_id="doctor", dataset=dataset, dataset_file="x.csv", download_token="t",
                                 pod_url="https://example.invalid", command="python3 train.py --lr 1e-4",
                                 has_bundle=True)
    try:
        proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        report.add("start script", "fail", f"cannot run bash -n: {exc}")
        return
    if proc.returncode == 0:
        report.add("start script", "ok", "renders and passes bash -n")
    else:
        report.add("start script", "fail", f"bash -n: {proc.stderr.strip()[:300]}")


async def check_public_url(settings: Settings, client: Client, report: Report, public_url: str | None) -> None:
    provider = settings.default_provider
    if not public_url:
        problem = public_url_problem(None, provider)
        report.add("public URL", "fail" if problem else "ok",
                   problem or "unset: fine for local pods (they use the local address)")
        return
    problem = public_url_problem(public_url, provider)
    if problem:
        report.add("public URL", "fail", problem)
        return
    if urlsplit(public_url).scheme != "https":
        report.add("public URL scheme", "warn", f"{public_url} is plain http: tokens travel in clear; use https")
    try:
        nonce = (await client._call("POST", "/api/v1/doctor/nonce"))["nonce"]
    except ControlPlaneError as exc:
        report.add("public URL reachability", "fail", f"cannot ask the control plane for a nonce: {exc.message}")
        return
    url = f"{public_url.rstrip('/')}/api/v1/doctor/echo/{nonce}"
    try:
        async with httpx.AsyncClient(timeout=15, trust_env=True, follow_redirects=True) as http:
            response = await http.get(url)
        echoed = response.json().get("nonce") if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        report.add("public URL reachability", "fail", f"{public_url} does not answer ({exc!r}); pods could not "
                   "reach the control plane either")
        return
    if echoed == nonce:
        report.add("public URL reachability", "ok", f"{public_url} reaches this control plane")
    else:
        report.add("public URL reachability", "fail",
                   f"{public_url} answers (HTTP {response.status_code}), but not from this control plane: point it "
                   "(or your tunnel) at this control plane's port")


async def check_proxy(settings: Settings, report: Report) -> None:
    """Pull mode needs RunPod's proxy host to resolve and answer (TLS for https) from this machine."""
    url = settings.runpod_proxy_url.format(pod_id="podtui-doctor", port=settings.pod_port)
    parts = urlsplit(url)
    host, secure = parts.hostname or "", parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=context, server_hostname=host if secure else None), 10)
        writer.close()
    except socket.gaierror as exc:
        report.add("RunPod proxy", "fail", f"{host} does not resolve ({exc.strerror}): podtui could not reach "
                   "pods in pull mode; check DNS or your network")
        return
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        report.add("RunPod proxy", "fail", f"{host}:{port} does not answer{' TLS' if secure else ''} ({exc!r})")
        return
    report.add("RunPod proxy", "ok", f"{host} resolves and answers{' TLS' if secure else ''} on port {port}")


async def run_doctor(server: str | None, token: str | None) -> Report:
    """Every check; starts a temporary control plane when none runs locally."""
    report = Report()
    try:
        settings = load_settings()
        path = config_file_path()
        report.add("settings", "ok", f"read from {path}" if path.is_file()
                   else f"no config file at {path}: the defaults and PODTUI_* variables")
        for unknown in unknown_settings(path):
            report.add("settings file", "warn", unknown)
    except ValueError as exc:
        report.add("settings", "fail", str(exc))
        return report
    check_keymap(settings, report)
    check_data_dir(settings, report)
    check_start_script(report)
    url = server or settings.local_url
    admin, token_source = resolve_admin_token(settings, token)
    plane = None
    client = Client(url, admin, token_source=token_source)
    try:
        try:
            await client.health()
            report.add("control plane", "ok", f"answers at {url}")
        except ControlPlaneError as exc:
            if server:
                report.add("control plane", "fail", exc.message)
                return report
            from ..server.app import ControlPlane

            plane = ControlPlane(settings)
            try:
                await plane.start()
            except OSError as err:
                report.add("control plane", "fail", f"none answers at {url} and it cannot start: {err.strerror}")
                return report
            await client.close()
            client = Client(plane.url, plane.admin_token)
            report.add("control plane", "ok", f"none was running; started one for these checks at {plane.url}")
        try:
            for check in map(DoctorCheck.model_validate, await client._call("GET", "/api/v1/doctor")):
                report.checks.append(check)
                if check.name == "provider runpod" and settings.runpod_api_key and "no RunPod key" in check.message:
                    report.add("RunPod key", "fail", "RUNPOD_API_KEY is set here, but the control plane already "
                               f"running at {url} was started without it: restart it with the key (one kept in "
                               f"the background stops with `kill $(cat {settings.data_dir / 'serve.pid'})`)")
        except ControlPlaneError as exc:
            report.add("server checks", "fail", exc.message)
        if settings.default_provider == "runpod" and settings.default_connect("runpod") == "pull":
            report.add("connect", "ok", "pull: no public https URL is set, so podtui reaches RunPod pods through "
                       "RunPod's HTTPS proxy (`--connect push` with PODTUI_PUBLIC_URL for a server)")
            await check_proxy(settings, report)
            if settings.public_url:
                problem = public_url_problem(settings.public_url, "runpod", settings.allow_loopback_public_url)
                report.add("public URL", "warn" if problem else "ok",
                           problem or f"{settings.public_url} (used by runs launched with --connect push)")
        else:
            if settings.default_provider == "runpod":
                report.add("connect", "ok", f"push: RunPod pods report to {settings.public_url}")
            await check_public_url(settings, client, report, settings.public_url)
    finally:
        await client.close()
        if plane is not None:
            await plane.stop()
    return report


def format_report(report: Report) -> str:
    marks = {"ok": "✓", "warn": "!", "fail": "✗"}
    lines = [f"{marks[c.status]} {c.name}: {c.message}" for c in report.checks]
    lines.append("all checks passed" if report.ok else "some checks failed")
    return "\n".join(lines)



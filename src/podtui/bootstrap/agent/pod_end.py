"""The pod's own end: a RunPod pod asks RunPod's REST API to end it and stays up, idle, until it ends (PID 1 never
exits: RunPod would restart the container); another provider's pod runs its terminate command (a part of `Agent`)."""

from __future__ import annotations

import subprocess
import sys
import time
import typing
import urllib.error
import urllib.parse
import urllib.request

from .links import PullLink


class PodEnd:
    """Ending the pod the agent runs in (a part of `Agent`)."""

    link: typing.Any
    terminate_cmd: str
    runpod_api: str
    runpod_pod: str
    runpod_key: str
    end_proof: float

    def end_pod_through_api(self) -> str:
        """Ask RunPod to end this pod: DELETE /v2/pods/$RUNPOD_POD_ID with the pod's own pod-scoped RUNPOD_API_KEY
        (REST v2). Returns what RunPod answered. No answer proves the pod ended: RunPod's 404 reads "not found or
        not accessible to the caller", and a 204 is proven only when this process ends with its pod."""
        api, pod, key = self.runpod_api, self.runpod_pod, self.runpod_key
        req = urllib.request.Request(api.rstrip("/") + "/v2/pods/" + urllib.parse.quote(pod, safe=""),
                                     method="DELETE", headers={"Authorization": "Bearer " + key})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                r.read()
            return f"{r.status}"
        except urllib.error.HTTPError as exc:
            return f"{exc.code}"
        except Exception as exc:
            return f"no answer ({type(exc).__name__})"

    def run_terminate_cmd(self) -> bool:
        """PODTUI_TERMINATE_CMD, when the provider gave one; True when it exited 0."""
        if not self.terminate_cmd:
            return False
        try:
            result = subprocess.run(["bash", "-c", self.terminate_cmd], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"podtui agent: ending the pod failed ({exc})", file=sys.stderr)
            return False
        if result.returncode != 0:
            print(f"podtui agent: ending the pod failed ({result.stderr.strip()[:300]})", file=sys.stderr)
        return result.returncode == 0

    def terminate_pod(self) -> None:
        """End the pod. A local pod (no API, no command) ends with this process; another provider's pod ends when
        its terminate command succeeds; a RunPod pod only by its own end (end_runpod_pod never returns)."""
        if self.runpod_api and self.runpod_pod and self.runpod_key:
            self.end_runpod_pod()
        if not self.terminate_cmd:
            return
        for attempt in range(5):
            if self.run_terminate_cmd():
                return
            time.sleep(5 * (attempt + 1))

    def end_runpod_pod(self) -> None:
        """Ask RunPod to end this pod, then stay up, idle: PID 1 never exits, since RunPod restarts a container
        whose process exits and the training would run again. Still alive PODTUI_END_PROOF_S after asking, the pod
        did not end: tell the control plane (`pod_end_failed`, which ends it with the user's key) and ask again
        with backoff, telling it again at every ask, until the pod ends and this process with it."""
        first = time.time()
        asks = 0
        while True:
            said = self.end_pod_through_api()
            asks += 1
            time.sleep(self.end_proof if asks == 1 else min(600.0, self.end_proof * 2 ** (asks - 1)))
            detail = (f"the pod could not end itself; it bills until podtui ends it (RunPod answered {said} to "
                      f"its DELETE, asked {asks} time(s); still running {int(time.time() - first)} s after the "
                      "first ask)")
            print(f"podtui agent: {detail}", file=sys.stderr, flush=True)
            self.tell_end_failed(detail)

    def tell_end_failed(self, detail: str) -> None:
        """Tell the control plane that this pod could not end itself (push: a report; pull: the next report it
        fetches). Best effort: a control plane away now hears it at the next ask."""
        if isinstance(self.link, PullLink):
            self.link.timeout = min(self.link.timeout, 60.0)
        try:
            self.link.post({"heartbeat_ts": time.time(), "pod_end_failed": detail[:500]})
        except Exception as exc:
            print(f"podtui agent: could not tell the control plane ({exc})", file=sys.stderr)

"""`python3 agent.pyz run -- COMMAND [ARG ...]` (push mode) | `python3 agent.pyz pull` (pull mode)."""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import typing

from .links import PullLink
from .pod_port import PodPort
from .supervisor import Agent


def pull_main(env: typing.Mapping[str, str]) -> int:
    """Pull mode: serve the pod's port, wait for the control plane's inputs and its start, then run the start
    script under the agent as in push mode (reports leave through the port)."""
    home = env.get("PODTUI_HOME") or os.path.join(os.path.expanduser("~"), "podtui")
    os.makedirs(home, exist_ok=True)
    link = PullLink()
    port = PodPort(home, env["PODTUI_POD_TOKEN"], link)
    port.serve(int(env.get("PODTUI_POD_PORT") or 8419))
    os.environ["PODTUI_UPLOADS"] = port.data_dir  # the start script takes the dataset's uploaded files from there
    agent = Agent(["bash", port.path("script")], env, link=link)
    port.output_dir, port.outputs_done = agent.output_dir, agent.outputs_done
    signal.signal(signal.SIGTERM, agent.on_signal)
    # No control plane came to start it (a laptop closed before the upload): the pod must not bill forever.
    # Counted from the control plane's last request, so a slow upload is not cut short.
    patience = float(env.get("PODTUI_BOOT_TIMEOUT_S") or 1800)
    while not port.started.wait(1.0):
        if agent.signalled:
            return 143
        if time.time() > port.last_contact + patience:
            print("podtui agent: no control plane started this pod in time; ending it", file=sys.stderr)
            agent.terminate_pod()
            return 1
    return run_guarded(agent)


def run_guarded(agent: Agent) -> int:
    """agent.run(); a crash still ends the pod: PID 1 must not exit with the pod up, since RunPod would restart the
    container and the training would run again."""
    try:
        return agent.run()
    except Exception:
        traceback.print_exc()
        agent.terminate_pod()
        return 1


def main(argv: list) -> int:
    if argv == ["pull"]:
        return pull_main(os.environ)
    if len(argv) < 3 or argv[0] != "run" or argv[1] != "--":
        print("usage: agent.pyz run -- COMMAND [ARG ...] | agent.pyz pull", file=sys.stderr)
        return 2
    return run_guarded(Agent(argv[2:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

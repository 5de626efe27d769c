"""The torchrun env contract the agent gives the command (agent.cluster_env), on one pod and on a cluster's node."""

from podtui.bootstrap.agent.nodes import NODE_SEQ_STRIDE as AGENT_STRIDE
from podtui.bootstrap.agent.nodes import cluster_env, node_rank_of
from podtui.models import NODE_SEQ_STRIDE, node_of_seq


def test_one_pod_gets_single_node_defaults():
    env = cluster_env({"PODTUI_NODES": "1", "PODTUI_GPU_COUNT": "8"})
    assert env["MASTER_ADDR"] == env["PRIMARY_ADDR"] == "127.0.0.1"
    assert env["MASTER_PORT"] == env["PRIMARY_PORT"] == "29500"
    assert (env["NODE_RANK"], env["NUM_NODES"], env["NUM_TRAINERS"], env["WORLD_SIZE"]) == ("0", "1", "8", "8")
    assert env["PODTUI_TORCHRUN"] == ("torchrun --nnodes=1 --node_rank=0 --nproc_per_node=8 "
                                      "--master_addr=127.0.0.1 --master_port=29500")
    assert "NCCL_SOCKET_IFNAME" not in env
    assert node_rank_of({"PODTUI_NODES": "1", "NODE_RANK": "3"}) == 0  # a stray NODE_RANK on one pod
    assert node_rank_of({"PODTUI_NODES": "1", "NUM_NODES": "2", "NODE_RANK": "1"}) == 0  # the user's own env


def test_a_cluster_node_keeps_runpods_values_and_gets_nccl_on_ens1():
    runpod = {"MASTER_ADDR": "10.65.0.2", "PRIMARY_ADDR": "10.65.0.2", "MASTER_PORT": "29400",
              "PRIMARY_PORT": "29400", "NODE_RANK": "3", "NUM_NODES": "4", "NUM_TRAINERS": "8", "WORLD_SIZE": "32",
              "PODTUI_NODES": "4", "PODTUI_GPU_COUNT": "8", "PODTUI_CLUSTER": "runpod"}
    env = cluster_env(runpod)
    assert env["PODTUI_TORCHRUN"] == ("torchrun --nnodes=4 --node_rank=3 --nproc_per_node=8 "
                                      "--master_addr=10.65.0.2 --master_port=29400")
    assert env["WORLD_SIZE"] == "32" and env["NCCL_SOCKET_IFNAME"] == "ens1"
    assert node_rank_of(runpod) == 3
    assert "NCCL_SOCKET_IFNAME" not in cluster_env({**runpod, "NCCL_SOCKET_IFNAME": "ib0"})
    assert "NCCL_SOCKET_IFNAME" not in cluster_env({**runpod, "PODTUI_CLUSTER": ""})  # local nodes: loopback


def test_bad_values_fall_back_instead_of_crashing():
    env = cluster_env({"NUM_NODES": "x", "NUM_TRAINERS": "0", "NODE_RANK": "y"})
    assert (env["NODE_RANK"], env["NUM_NODES"], env["NUM_TRAINERS"]) == ("0", "1", "1")


def test_line_numbers_of_nodes_never_meet():
    assert AGENT_STRIDE == NODE_SEQ_STRIDE
    assert node_of_seq(0) == 0 and node_of_seq(NODE_SEQ_STRIDE - 1) == 0 and node_of_seq(3 * NODE_SEQ_STRIDE) == 3


def test_only_node_0_ends_a_quiet_command_as_stalled(tmp_path):
    """torchrun's ranks other than 0 often print nothing: a quiet node k > 0 is no stall (the run's own output and
    the control plane, which sees every node's, decide)."""
    import time

    from podtui.bootstrap.agent.links import PullLink
    from podtui.bootstrap.agent.supervisor import Agent

    def agent_of(rank: str):
        env = {"PODTUI_HOME": str(tmp_path / rank), "PODTUI_STALL_TIMEOUT_S": "60", "NUM_NODES": "2",
               "NODE_RANK": rank}
        agent = Agent(["true"], env=env, link=PullLink())
        agent.status = "training"
        agent.last_line_at -= 3600
        return agent

    assert agent_of("0").guard_reason(time.time()).startswith("stalled")
    assert agent_of("1").guard_reason(time.time()) is None


def test_a_node_other_than_0_sends_no_metrics_and_does_not_parse_for_them(tmp_path):
    from podtui.bootstrap.agent.links import PullLink
    from podtui.bootstrap.agent.supervisor import Agent

    def read(rank: str) -> tuple:
        """(the metrics sent, how they were read) after one JSON line."""
        env = {"PODTUI_HOME": str(tmp_path / rank), "NUM_NODES": "2", "NODE_RANK": rank}
        agent = Agent(["true"], env=env, link=PullLink())
        agent.line("stdout", '{"step": 1, "loss": 0.5}')
        return [item["name"] for kind, item in agent.outbox.peek()[0] if kind == "m"], agent.reader.sources

    assert read("0") == (["loss"], ["JSON lines, step from their step field"])
    assert read("1") == ([], [])

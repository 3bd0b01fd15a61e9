"""The replicated cluster's configuration as the launcher writes it: no JVM."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.kafka.localkafka import (
    LocalKafka,
    LocalKafkaCluster,
    NodePorts,
    cluster_layout,
    main,
)


def _properties(node: LocalKafka) -> dict[str, str]:
    lines = node._server_properties().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_every_node_knows_the_three_voters_and_replicates_on_its_own_listener(
    tmp_path: Path,
) -> None:
    layout = cluster_layout(19092, 3)
    proxied = layout[2]
    layout[2] = NodePorts(3, proxied.port, proxied.controller_port, proxied.internal_port, 29999)
    cluster = LocalKafkaCluster(state_dir=tmp_path, nodes=layout)

    props = [_properties(node) for node in cluster.nodes]

    voters = "1@127.0.0.1:19095,2@127.0.0.1:19096,3@127.0.0.1:19097"
    assert {p["controller.quorum.voters"] for p in props} == {voters}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert {p["inter.broker.listener.name"] for p in props} == {"INTERNAL"}
    assert props[0]["listeners"] == (
        "PLAINTEXT://127.0.0.1:19092,INTERNAL://127.0.0.1:19098,CONTROLLER://127.0.0.1:19095"
    )
    # Clients are sent to the proxy; the brokers reach each other directly.
    assert props[2]["advertised.listeners"] == (
        "PLAINTEXT://127.0.0.1:29999,INTERNAL://127.0.0.1:19100"
    )
    assert cluster.bootstrap == "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:29999"
    for p in props:
        assert p["default.replication.factor"] == "3"
        assert p["min.insync.replicas"] == "2"
        assert p["offsets.topic.replication.factor"] == "3"
        assert p["transaction.state.log.min.isr"] == "2"
        assert "controller.quorum.bootstrap.servers" not in p
    assert len({node.state_dir for node in cluster.nodes}) == 3
    assert len({node.cluster_id for node in cluster.nodes}) == 1


def test_a_single_node_keeps_its_own_quorum_and_replication_factor_one(tmp_path: Path) -> None:
    props = _properties(LocalKafka(port=19092, state_dir=tmp_path))

    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:19093"
    assert "controller.quorum.voters" not in props
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["offsets.topic.replication.factor"] == "1"
    assert "min.insync.replicas" not in props


def test_a_two_node_cluster_asks_for_no_more_replicas_than_it_has(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(state_dir=tmp_path, nodes=cluster_layout(19092, 2))

    props = _properties(cluster.nodes[0])

    assert props["default.replication.factor"] == "2"
    assert props["min.insync.replicas"] == "2"


def test_the_layout_is_recorded_for_down_status_and_node(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(state_dir=tmp_path, nodes=cluster_layout(19092, 3))
    cluster._record()

    again = LocalKafkaCluster.recorded(tmp_path)

    assert again is not None
    assert again.layout == cluster.layout
    assert again.cluster_id == cluster.cluster_id
    assert not again.is_running()


def test_node_without_a_cluster_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["node", "kill", "2", "--state-dir", str(tmp_path)])

    assert code == 2
    assert capsys.readouterr().err == f"localkafka: no cluster in {tmp_path / 'cluster'}\n"

#!/usr/bin/env python3
"""Drops what tests made on a long-lived stack, so that a developer's stack does not grow
run after run until Cassandra runs out of memory: the Kafka topics and consumer groups, the
Cassandra keyspaces and the Redis keys whose names carry the process id of one of the given
test processes (pulse-testkit's names: `<test>_<pid>_<count>_<nanos>`).

    scripts/sweep_test_data.py PID...

Runs with the tools virtualenv's Python (confluent-kafka, cassandra-driver, redis from PyPI;
scripts/setup installs them). The servers are those of the tests: PULSE_TEST_BROKERS,
PULSE_TEST_CQL_NODES, PULSE_TEST_REDIS_URL, or the local stack's defaults.
"""

import os
import re
import sys

import redis
from cassandra.cluster import Cluster
from confluent_kafka.admin import AdminClient


def made_by(pids):
    """Whether a name was made by one of `pids` (the pid, a count and nanoseconds follow the
    test's name)."""
    pattern = re.compile(r"_(" + "|".join(map(re.escape, pids)) + r")_\d+_\d+")
    return lambda name: bool(pattern.search(name))


def sweep_kafka(brokers, ours):
    admin = AdminClient({"bootstrap.servers": brokers})
    topics = [t for t in admin.list_topics(timeout=15).topics if t.startswith("test.") and ours(t)]
    for topic, done in admin.delete_topics(topics, operation_timeout=30).items() if topics else []:
        done.result()
    groups = [
        g.group_id for g in admin.list_consumer_groups(request_timeout=15).result().valid
        if g.group_id.startswith("test.") and ours(g.group_id)
    ]
    for group, done in admin.delete_consumer_groups(groups, request_timeout=30).items() if groups else []:
        try:
            done.result()
        except Exception as error:  # a group with a member still joined stays: said, not fatal
            print(f"sweep: consumer group {group} kept: {error}", file=sys.stderr)
    return len(topics), len(groups)


def sweep_cassandra(nodes, ours):
    contact = [node.rsplit(":", 1) for node in nodes.split(",")]
    hosts = [host for host, _ in contact]
    port = int(contact[0][1]) if len(contact[0]) > 1 else 9042
    cluster = Cluster(hosts, port=port, connect_timeout=15)
    try:
        session = cluster.connect()
        rows = session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
        keyspaces = [row.keyspace_name for row in rows if row.keyspace_name.startswith("t_") and ours(row.keyspace_name)]
        for keyspace in keyspaces:
            session.execute(f'DROP KEYSPACE IF EXISTS "{keyspace}"', timeout=60)
        return len(keyspaces)
    finally:
        cluster.shutdown()


def sweep_redis(url, ours):
    client = redis.Redis.from_url(url)
    doomed = [key for key in client.scan_iter(match="pulse-test:*", count=1000) if ours(key.decode("utf-8", "replace"))]
    for start in range(0, len(doomed), 500):
        client.delete(*doomed[start:start + 500])
    return len(doomed)


def main():
    pids = sys.argv[1:]
    if not pids:
        return
    ours = made_by(pids)
    topics, groups = sweep_kafka(os.environ.get("PULSE_TEST_BROKERS", "127.0.0.1:9092"), ours)
    keyspaces = sweep_cassandra(os.environ.get("PULSE_TEST_CQL_NODES", "127.0.0.1:9042"), ours)
    keys = sweep_redis(os.environ.get("PULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379"), ours)
    print(f"sweep: dropped {topics} topics, {groups} consumer groups, {keyspaces} keyspaces and "
          f"{keys} Redis keys of {len(pids)} passed tests", file=sys.stderr)


if __name__ == "__main__":
    main()

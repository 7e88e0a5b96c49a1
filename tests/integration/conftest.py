"""One Ray cluster of three nodes on this machine, shared by every test of the session."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import ray
import ray.cloudpickle
from ray.cluster_utils import Cluster

from tests import helpers

NODES = 3


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Everything Ray writes, its "current cluster" file included, stays in a folder of our own.
    temp_dir = tempfile.mkdtemp(prefix="myriad-test-")
    os.environ["RAY_TMPDIR"] = temp_dir
    os.makedirs(os.path.join(temp_dir, "ray"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(NODES - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    # Test-only agent kinds travel to the workers by value: the workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(helpers)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)

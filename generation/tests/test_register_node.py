import pytest
from django.core.management import CommandError, call_command

from generation.demo import seed_catalog
from generation.models import Node

pytestmark = pytest.mark.django_db


def test_register_node_adds_nodes_serving_every_model_routed_to_the_pool():
    seed_catalog()
    call_command("register_node", "node1=http://node1:5000/", "node2=http://node2:5000")
    call_command("register_node", "node1=http://node1:5000")  # idempotent
    reference = Node.objects.get(name="reference-1")
    for name in ("node1", "node2"):
        node = Node.objects.get(name=name)
        assert node.pool == reference.pool and node.slots == 1
        assert set(node.served_models.all()) == set(reference.served_models.all())
        assert node.served_models.count() == 4
    assert Node.objects.get(name="node1").base_url == "http://node1:5000"


@pytest.mark.parametrize("spec", ["node1", "node1=ftp://x", "=http://x:1"])
def test_register_node_refuses_malformed_specs_and_changes_nothing(spec):
    with pytest.raises(CommandError):
        call_command("register_node", spec)
    assert not Node.objects.exists()


def test_register_node_with_a_model_routes_only_that_model_to_its_own_pool():
    seed_catalog()
    call_command(
        "register_node", "gpu1=http://gpu1:5000", "--pool", "gpu", "--model", "wan2.1-t2v-1.3b"
    )
    gpu = Node.objects.get(name="gpu1")
    assert gpu.pool.slug == "gpu"
    assert [m.slug for m in gpu.served_models.all()] == ["wan2.1-t2v-1.3b"]


def test_register_node_refuses_an_unknown_model_and_changes_nothing():
    seed_catalog()
    with pytest.raises(CommandError, match="no such model in the catalog: sora"):
        call_command("register_node", "gpu1=http://gpu1:5000", "--pool", "gpu", "--model", "sora")
    assert not Node.objects.filter(name="gpu1").exists()

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

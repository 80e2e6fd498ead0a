"""The client side: ``Client`` (client.py) and ``ScalerFuture`` (future.py), with the agent thread,
the future manager, task encoding and objects (encoder.py, objects.py, object_reference.py), graphs
(graph.py), task output (output.py) and serializers."""

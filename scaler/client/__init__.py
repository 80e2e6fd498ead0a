"""The client side: ``Client``, ``ScalerFuture``, ``ClientFutureManager``, serializers and the agent thread."""

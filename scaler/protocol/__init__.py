"""The wire protocol: typed messages (``messages``), one codec (``codec``) and its version (``version``).

Import message classes from ``scaler.protocol.messages`` and the codec from ``scaler.protocol.codec``.
"""

"""The wire protocol version. Bump it whenever a message gains, loses or changes a field."""

PROTOCOL_VERSION = 7

"""The wire protocol version.

Bump it whenever a message gains, loses or changes a field, or when the meaning of bytes on the
wire changes: 8 moved big payloads into frames of their own and content ids to BLAKE3, both
unreadable to a peer of version 7. 9 added segmented payloads (a pickle's head in the envelope,
its out-of-band buffers as frames: layout entries ``[ordinal, count]``) and their content ids.
"""

PROTOCOL_VERSION = 9

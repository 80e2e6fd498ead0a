"""Every message that crosses a socket, as one typed class each.

Messages are msgspec structs (array-like: a message travels as ``[TYPE, field, ...]``); their
field annotations are the schema that ``scaler.protocol.codec`` validates on decode. Every field
is required on the wire, even those with a default here (see ``struct_meta``); they still work
with ``dataclasses.fields``, ``replace`` and ``asdict``. A message's wire ``TYPE`` code never changes
meaning: a new or changed message needs a new code and a new ``PROTOCOL_VERSION``.
Payload fields (functions, arguments, results) are opaque bytes: only clients and worker
processors ever unpickle them, never the scheduler.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import msgspec

from scaler.protocol.struct_meta import StructMeta


class TaskStatus(enum.IntEnum):
    """How a task ended; anything but ``SUCCESS`` becomes an exception at the client."""

    SUCCESS = 0
    FAILED = 1  # user code raised; payload is the pickled (exception, traceback text)
    PROCESSOR_DIED = 2  # payload is utf-8 text
    WORKER_DIED = 3  # payload is utf-8 text
    TIMEOUT = 4  # payload is utf-8 text
    REJECTED = 5  # the scheduler refused it; payload is utf-8 text
    NO_WORKER = 6  # refused: no connected worker has the capabilities it needs; payload is utf-8 text
    MISSING_OBJECTS = 7  # refused: it names an object the scheduler does not hold; payload is utf-8 text


class CancelConfirmType(enum.IntEnum):
    """The scheduler's answer to a ``TaskCancel``."""

    CANCELED = 0
    CANCEL_FAILED = 1
    CANCEL_NOT_FOUND = 2


class DisconnectType(enum.IntEnum):
    """Why a client says goodbye."""

    DISCONNECT = 0
    SHUTDOWN = 1  # also asks the scheduler (and so the cluster) to stop


class ArgumentKind(enum.IntEnum):
    """How a task argument travels."""

    INLINE = 0  # serialized bytes inside the Task message
    OBJECT = 1  # ``data`` is an object id: a client object, or the result of a graph node (id = its task id)


class ObjectInstructionType(enum.IntEnum):
    """What an ``ObjectInstruction`` does."""

    CREATE = 0  # store these objects (client -> scheduler)
    DELETE = 1  # drop these objects (client -> scheduler, scheduler -> worker, agent -> processor)
    CLEAR = 2  # drop every object this client holds (client -> scheduler)
    DELETE_FUNCTIONS = 3  # drop these functions: no client uses them now (scheduler -> worker, agent -> processor)


class LogStream(enum.IntEnum):
    """Which stream a ``TaskLog`` line came from."""

    STDOUT = 1
    STDERR = 2


class Message(msgspec.Struct, metaclass=StructMeta, array_like=True, forbid_unknown_fields=True, tag=None):
    """Base of all messages; ``TYPE`` is the wire code (and each subclass's msgspec tag)."""

    TYPE: ClassVar[int] = -1


class Record(msgspec.Struct, metaclass=StructMeta, array_like=True, forbid_unknown_fields=True):
    """Base of small structs nested inside messages (encoded as a msgpack array)."""


class TaskArgument(Record):
    """One argument of a task: ``name`` is empty for positional arguments."""

    name: str
    kind: ArgumentKind
    data: bytes


class ObjectContent(Record):
    """An object's bytes, attached to a ``Task`` for a receiver that does not hold it yet."""

    object_id: bytes
    data: bytes


class Task(Message):
    """Run ``function_id(*args, **kwargs)``; ``function`` carries the pickled function the first time.

    ``objects`` is empty from clients: the scheduler (to a worker) and the agent (to a processor)
    attach the bytes of OBJECT arguments the receiver does not hold yet; receivers cache them
    until an ``ObjectInstruction(DELETE)``. ``timeout_seconds`` 0 means the worker's default.
    ``parent_task_id`` names the task this one was submitted from (empty for a top-level task);
    only clients fill it, and the scheduler stops a task's children when the task is stopped.
    """

    TYPE: ClassVar[int] = 1
    task_id: bytes
    function_id: bytes
    function: bytes
    args: list[TaskArgument]
    attempt: int
    priority: int = 0  # higher runs first among queued tasks
    capabilities: dict[str, int] = msgspec.field(default_factory=dict)  # only workers having every key may run it
    timeout_seconds: float = 0.0
    profiling: bool = False
    stream_output: bool = False
    objects: list[ObjectContent] = msgspec.field(default_factory=list)
    parent_task_id: bytes = b""
    function_name: str = ""  # for the status feed and logs: the scheduler never unpickles ``function``


class TaskResult(Message):
    """The outcome of one attempt of a task."""

    TYPE: ClassVar[int] = 2
    task_id: bytes
    status: TaskStatus
    payload: bytes
    attempt: int
    # Set by the scheduler for a big result it keeps: ``payload`` is then empty and the client
    # fetches the object (ObjectRequest) when asked for the value, then deletes it.
    result_object_id: bytes = b""
    duration_seconds: float = 0.0  # profiling, measured in the processor; zeros when not asked
    cpu_seconds: float = 0.0
    peak_memory_bytes: int = 0
    load_seconds: float = 0.0  # profiling: the processor fetching and unpickling the function and arguments
    serialize_seconds: float = 0.0  # profiling: the processor pickling the result
    result_bytes: int = 0  # profiling: the pickled result's size
    queue_wait_seconds: float = 0.0  # profiling, filled in by the scheduler: submitted -> started
    transfer_seconds: float = 0.0  # profiling, filled in by the scheduler: sent to a worker -> started there


class TaskStarted(Message):
    """Worker -> scheduler: a processor began running this attempt of the task.

    Only a task that started can be to blame when its worker dies, so only such tasks use up
    their retry budget; tasks that merely sat in a dead worker's queue are requeued for free.
    """

    TYPE: ClassVar[int] = 23
    task_id: bytes
    attempt: int


class TaskCredit(Message):
    """Scheduler -> client: you may send ``count`` more tasks (backpressure).

    A client that got one never has more tasks waiting in the scheduler's queue than its credits
    allow: the first message grants ``max_number_of_tasks_waiting``, and each later one returns the
    credits of tasks that left the queue (to a worker, or ended). ``submit`` blocks at zero
    credits, so neither the client nor the scheduler grows without bound. With no limit, the
    scheduler sends none.
    """

    TYPE: ClassVar[int] = 24
    count: int


class TaskCancel(Message):
    """Ask that a task be cancelled, whether queued or running."""

    TYPE: ClassVar[int] = 3
    task_id: bytes


class TaskCancelConfirm(Message):
    """The answer to a ``TaskCancel``."""

    TYPE: ClassVar[int] = 4
    task_id: bytes
    confirm: CancelConfirmType


class ClientHeartbeat(Message):
    """A client is alive; the scheduler echoes it."""

    TYPE: ClassVar[int] = 5
    timestamp: float


class ClientHeartbeatEcho(Message):
    """The scheduler is alive, as seen by a client."""

    TYPE: ClassVar[int] = 6
    timestamp: float
    scheduler_id: bytes  # changes when the scheduler restarts: the client's tasks are then lost


class WorkerHeartbeat(Message):
    """A worker is alive, and how loaded it is."""

    TYPE: ClassVar[int] = 7
    timestamp: float
    queued_tasks: int
    cpu_percent: float
    rss_bytes: int
    capabilities: dict[str, int] = msgspec.field(default_factory=dict)
    processors_running: int = 0  # for the status feed: processors running a task
    processors_parked: int = 0  # running a task that waits on its own children
    processors_idle: int = 0


class WorkerHeartbeatEcho(Message):
    """The scheduler is alive, as seen by a worker."""

    TYPE: ClassVar[int] = 8
    timestamp: float
    scheduler_id: bytes  # changes when the scheduler restarts: the worker's tasks are then void


class ClientDisconnect(Message):
    """A client leaves; with ``SHUTDOWN`` it also asks the scheduler to stop."""

    TYPE: ClassVar[int] = 9
    kind: DisconnectType


class ClientShutdownResponse(Message):
    """Whether a shutdown request was accepted, and if not, why."""

    TYPE: ClassVar[int] = 10
    accepted: bool
    reason: str


class DisconnectRequest(Message):
    """A worker leaves on purpose; its queued tasks go back to the scheduler's queue.

    With ``drain`` the worker first finishes the tasks it has started: the scheduler sends it no
    more, requeues the ones that did not start, and answers once the last started one has ended.
    Without it, the worker is gone now and everything it held is requeued.
    """

    TYPE: ClassVar[int] = 11
    drain: bool = False


class DisconnectResponse(Message):
    """The scheduler has taken back a leaving worker's tasks; the worker may exit."""

    TYPE: ClassVar[int] = 12


class SchedulerShutdown(Message):
    """The scheduler is stopping; workers exit and clients fail their pending futures."""

    TYPE: ClassVar[int] = 13
    reason: str


class ClientDropped(Message):
    """The scheduler no longer serves this client (it timed out or left); its tasks were cancelled."""

    TYPE: ClassVar[int] = 14
    reason: str


class GraphNode(Record):
    """One node of a graph: a task whose OBJECT arguments may name other nodes' task ids."""

    task_id: bytes
    function_id: bytes
    function: bytes
    args: list[TaskArgument]
    dependencies: list[bytes]  # task ids of the nodes whose results it needs
    function_name: str = ""


class GraphTask(Message):
    """A whole task graph, sent once; the scheduler runs each node when its dependencies are done.

    Only ``targets`` report back to the client (a ``TaskResult`` or a ``TaskCancelConfirm`` each);
    other nodes' results stay on the scheduler as objects until their dependents are done. A
    failed node fails every target that depends on it with the same error. Cancelling any
    target cancels the whole graph. ``parent_task_id`` is every node's parent, as in ``Task``.
    """

    TYPE: ClassVar[int] = 15
    graph_id: bytes
    nodes: list[GraphNode]
    targets: list[bytes]
    profiling: bool = False
    stream_output: bool = False
    parent_task_id: bytes = b""


class TaskLog(Message):
    """Text a task wrote to stdout or stderr (processor -> agent -> scheduler -> client).

    ``dropped_bytes``: how much of this stream's output was dropped just before ``text``, over an
    output limit (``scaler/io/output_limits.py``); a final notice may have no text.
    """

    TYPE: ClassVar[int] = 16
    task_id: bytes
    stream: LogStream
    text: str
    dropped_bytes: int = 0


class ObjectInstruction(Message):
    """Create, delete or clear objects; ``payloads`` pairs with ``object_ids`` for CREATE only."""

    TYPE: ClassVar[int] = 17
    kind: ObjectInstructionType
    object_ids: list[bytes]
    payloads: list[bytes]


class ObjectRequest(Message):
    """A client asks for objects' bytes (a delayed result, or an object it sent)."""

    TYPE: ClassVar[int] = 18
    object_ids: list[bytes]


class TaskResultWanted(Message):
    """Client -> scheduler: someone already waits for these tasks' results, so send a big one straight on.

    A result over the scheduler's ``inline_result_bytes`` is otherwise kept there until the client
    asks for it (``ObjectRequest``): one more round trip for a value that is awaited anyway. Only a
    hint: ids of tasks that are not this client's, or that ended already, are ignored, and their
    results are kept and fetched as before.
    """

    TYPE: ClassVar[int] = 30
    task_ids: list[bytes]


class ObjectResponse(Message):
    """The answer to an ``ObjectRequest``; ``found[i]`` is False (and ``payloads[i]`` empty) if unknown."""

    TYPE: ClassVar[int] = 19
    object_ids: list[bytes]
    payloads: list[bytes]
    found: list[bool]


class BalanceRequest(Message):
    """The scheduler asks a worker to hand back these queued tasks, for idler workers."""

    TYPE: ClassVar[int] = 20
    task_ids: list[bytes]


class BalanceResponse(Message):
    """The tasks a worker handed back: those still queued there (never a running one)."""

    TYPE: ClassVar[int] = 21
    task_ids: list[bytes]


class ProcessorBlocked(Message):
    """Processor -> agent: the running task waits on other tasks (True) or goes on (False).

    While it waits, the agent runs the worker's next tasks on another processor, so a parent
    blocking on its children never holds the worker's only slot.
    """

    TYPE: ClassVar[int] = 22
    blocked: bool


# -- the status feed ------------------------------------------------------------------------------
# The scheduler publishes ``StatusSnapshot`` every status interval and ``StatusEvents`` with what
# happened since the last one (at most every 50 ms, and only when something did), on its monitor
# socket (PUB); a client asks for one snapshot with
# ``StatusRequest`` on its own connection. Times named ``time`` are the scheduler's monotonic
# clock; each message carries ``now`` (that clock) and ``wall_time`` (epoch seconds) at sending,
# so a reader converts: wall = wall_time - (now - time).


class WorkerState(enum.IntEnum):
    """A worker as the status feed shows it."""

    ACTIVE = 0
    DRAINING = 1  # stopping gracefully: it gets nothing new and leaves once it holds nothing
    LOST = 2  # its heartbeats are late; it is declared dead if they stay away past the worker timeout


class TaskEventKind(enum.IntEnum):
    """What happened to a task, in a ``StatusEvents`` message."""

    SUBMITTED = 0
    STARTED = 1
    FINISHED = 2
    FAILED = 3
    CANCELLED = 4
    RETRIED = 5  # its worker died while running it, and it runs again


class PeerEventKind(enum.IntEnum):
    """What happened to a worker or a client, in a ``StatusEvents`` message."""

    WORKER_JOINED = 0
    WORKER_LEFT = 1
    WORKER_DIED = 2
    WORKER_DRAINING = 3
    CLIENT_JOINED = 4
    CLIENT_LEFT = 5


class SchedulerStatus(Record):
    """The scheduler's own figures in a snapshot."""

    scheduler_id: bytes
    version: str
    uptime_seconds: float
    cpu_percent: float
    rss_bytes: int
    messages_in_per_second: float
    messages_out_per_second: float
    tasks_by_state: dict[str, int]  # live tasks: waiting, queued, assigned, running, balancing, canceling
    tasks_total: dict[str, int]  # since start: submitted, finished, failed, cancelled, retried
    objects: int
    object_bytes: int
    feed_dropped: int  # status messages the monitor socket could not send (a slow subscriber), since start


class ClientStatus(Record):
    """One connected client in a snapshot."""

    client_id: bytes
    queued: int
    running: int
    done: int  # since it connected
    failed: int
    cancelled: int
    credits_in_use: int
    connected_seconds: float


class RunningTask(Record):
    """A task a worker runs now."""

    task_id: bytes
    function_name: str
    client_id: bytes
    running_seconds: float


class WorkerStatus(Record):
    """One connected worker in a snapshot."""

    worker_id: bytes
    state: WorkerState
    capabilities: dict[str, int]
    queued: int  # tasks it holds that have not started
    running: list[RunningTask]
    processors_running: int
    processors_parked: int
    processors_idle: int
    cpu_percent: float
    rss_bytes: int
    heartbeat_age_seconds: float
    done: int  # tasks it finished since it joined


class StatusRequest(Message):
    """Client -> scheduler: send me one ``StatusSnapshot`` (``Client.status()``)."""

    TYPE: ClassVar[int] = 25
    request_id: int


class StatusSnapshot(Message):
    """The whole cluster at one moment: published every status interval, and the answer to a ``StatusRequest``."""

    TYPE: ClassVar[int] = 26
    request_id: int  # the StatusRequest it answers; 0 on the feed
    now: float
    wall_time: float
    scheduler: SchedulerStatus
    clients: list[ClientStatus]
    workers: list[WorkerStatus]


class TaskEventRecord(Record):
    """One thing that happened to a task; times and sizes are zeros where they do not apply."""

    kind: TaskEventKind
    time: float
    task_id: bytes
    client_id: bytes
    worker_id: bytes  # empty while it has none
    function_name: str
    attempt: int
    queue_wait_seconds: float  # STARTED and later: submitted -> started
    run_seconds: float  # FINISHED, FAILED, CANCELLED, RETRIED: started -> ended
    peak_memory_bytes: int  # FINISHED and FAILED with profiling on
    detail: str  # FAILED: how (the TaskStatus name); RETRIED: why


class PeerEventRecord(Record):
    """A worker or a client came, went or changed."""

    kind: PeerEventKind
    time: float
    peer_id: bytes
    detail: str


class StatusEvents(Message):
    """What happened since the previous ``StatusEvents``: sent at most every 50 ms, only when something did."""

    TYPE: ClassVar[int] = 27
    now: float
    wall_time: float
    tasks: list[TaskEventRecord]
    peers: list[PeerEventRecord]
    dropped: int  # events left out since the last message: the feed keeps at most a bounded number a turn


# -- worker managers ------------------------------------------------------------------------------
# A worker manager starts and stops workers on some engine (local processes, Slurm jobs, Kubernetes
# pods). It connects like a client, announces itself every heartbeat, and does what the scheduler's
# scaling policy (scaler/scheduler/scaling_policy.py) answers. Its workers carry the names it gave
# them (the NAME in a worker identity ``worker|NAME|pid|...``), which is how the scheduler knows whose
# each worker is.


class ManagedWorkerState(enum.IntEnum):
    """Where a worker a manager started is, as the manager sees it."""

    STARTING = 0  # asked of the engine, not yet running (a pending Slurm job, say)
    RUNNING = 1
    FAILED = 2  # the engine could not start it (an impossible constraint, say); ``detail`` says why


class ManagedWorkerRecord(Record):
    """One worker a manager started, by the name it gave it."""

    worker_name: str
    state: ManagedWorkerState
    detail: str


class WorkerManagerHeartbeat(Message):
    """Manager -> scheduler: who it is, what its workers offer, its limits, and the workers it started."""

    TYPE: ClassVar[int] = 28
    name: str
    capabilities: dict[str, int]
    min_workers: int
    max_workers: int
    tasks_per_worker: int
    start_seconds: float  # how long a worker takes to start, if it knows; 0 when it does not
    workers: list[ManagedWorkerRecord]


class WorkerManagerCommand(Message):
    """Scheduler -> manager: run ``target`` workers, and stop these (idle; each drains before it exits)."""

    TYPE: ClassVar[int] = 29
    target: int
    stop_workers: list[str]  # worker names, as the manager gave them


ALL_MESSAGES: tuple[type[Message], ...] = (
    Task,
    TaskResult,
    TaskCancel,
    TaskCancelConfirm,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
    ClientDisconnect,
    ClientShutdownResponse,
    DisconnectRequest,
    DisconnectResponse,
    SchedulerShutdown,
    ClientDropped,
    GraphTask,
    TaskLog,
    ObjectInstruction,
    ObjectRequest,
    ObjectResponse,
    TaskResultWanted,
    BalanceRequest,
    BalanceResponse,
    ProcessorBlocked,
    TaskStarted,
    TaskCredit,
    StatusRequest,
    StatusSnapshot,
    StatusEvents,
    WorkerManagerHeartbeat,
    WorkerManagerCommand,
)

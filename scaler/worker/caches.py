"""The worker agent's caches of function and object bytes, and what each processor holds of them.

The agent keeps each function's bytes (the first ``Task`` naming it carries them) and each
object's bytes (from ``Task.objects`` or ``ObjectInstruction(CREATE)``). It attaches them to the
task it hands a processor only if that processor has not had them yet, so each crosses each pipe
once. ``ObjectInstruction(DELETE)`` / ``(DELETE_FUNCTIONS)`` drop them here and in every processor
holding them: an idle processor is told at once, a busy one when it next becomes idle, so the
agent never writes to a pipe that nobody reads. Pure: no pipe, no clock.
"""

from __future__ import annotations

from scaler.protocol.messages import ArgumentKind, ObjectContent, ObjectInstruction, ObjectInstructionType, Task
from scaler.worker.processor_table import ProcessorRecord, check


class WorkerCaches:
    """Function and object bytes by id, and the bookkeeping of which processor holds which."""

    def __init__(self) -> None:
        self.functions: dict[bytes, bytes] = {}
        self.objects: dict[bytes, bytes] = {}

    def keep(self, task: Task) -> None:
        """Keep the function and object bytes a task from the scheduler carries."""
        if task.function:
            self.functions[task.function_id] = task.function
        if task.objects:
            for content in task.objects:
                self.objects[content.object_id] = content.data

    def create(self, object_ids: list[bytes], payloads: list[bytes]) -> None:
        """Keep objects the scheduler sent on their own."""
        for object_id, payload in zip(object_ids, payloads, strict=False):
            self.objects[object_id] = payload

    def clear(self) -> None:
        """Forget everything (a new scheduler sends it all afresh)."""
        self.functions.clear()
        self.objects.clear()

    def drop(
        self, ids: list[bytes], functions: bool, processors: list[ProcessorRecord]
    ) -> list[tuple[int, ObjectInstruction]]:
        """Drop these objects (or functions) here; return the deletes to send idle processors now.

        A busy processor that holds some of them gets them as stale, sent by ``stale_deletes``
        once its task ends.
        """
        cache = self.functions if functions else self.objects
        for dropped_id in ids:
            cache.pop(dropped_id, None)
        now_deletes: list[tuple[int, ObjectInstruction]] = []
        for processor in processors:
            holds = processor.functions if functions else processor.objects
            held = [dropped_id for dropped_id in ids if dropped_id in holds]
            if not held:
                continue
            holds.difference_update(held)
            if processor.task is None:
                now_deletes.append((processor.processor_id, delete_instruction(held, functions)))
            elif functions:
                processor.stale_functions += held
            else:
                processor.stale_objects += held
        return now_deletes

    @staticmethod
    def stale_deletes(processor: ProcessorRecord) -> list[ObjectInstruction]:
        """The deletes a processor missed while busy (call when it becomes idle); it then owes none."""
        deletes = []
        if processor.stale_objects:
            deletes.append(delete_instruction(processor.stale_objects))
            processor.stale_objects = []
        if processor.stale_functions:
            deletes.append(delete_instruction(processor.stale_functions, functions=True))
            processor.stale_functions = []
        return deletes

    def attach(self, processor: ProcessorRecord, task: Task) -> None:
        """Set the task's function and object bytes to what this processor does not hold yet, and note it holds them."""
        function_id = task.function_id
        if function_id in processor.functions:
            task.function = b""
        else:
            task.function = self.functions.get(function_id, b"")
            processor.functions.add(function_id)
        if self.objects:
            task.objects = self._objects_for(processor, task)
        elif task.objects:
            task.objects = []

    def _objects_for(self, processor: ProcessorRecord, task: Task) -> list[ObjectContent]:
        """The bytes of the task's OBJECT arguments that this processor does not hold yet."""
        attached = []
        for argument in task.args:
            if argument.kind == ArgumentKind.OBJECT:
                object_id = argument.data
                if object_id not in processor.objects:
                    data = self.objects.get(object_id)
                    if data is None:
                        continue  # the processor reports the missing object as the task's failure
                    processor.objects.add(object_id)
                    attached.append(ObjectContent(object_id, data))
        return attached

    def validate(self, processors: list[ProcessorRecord]) -> None:
        """Processors hold only what the agent holds; raise ``WorkerInvariantError`` if not."""
        for processor in processors:
            check(processor.functions <= self.functions.keys(), "processors hold only functions the agent holds")
            check(processor.objects <= self.objects.keys(), "processors hold only objects the agent holds")

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {"functions": len(self.functions), "objects": len(self.objects)}


def delete_instruction(ids: list[bytes], functions: bool = False) -> ObjectInstruction:
    """The ``ObjectInstruction`` that deletes these objects (or functions) in a processor."""
    kind = ObjectInstructionType.DELETE_FUNCTIONS if functions else ObjectInstructionType.DELETE
    return ObjectInstruction(kind, list(ids), [])

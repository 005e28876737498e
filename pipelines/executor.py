"""Steps of a run on threads of the run's own process: the run's steps in parallel, seen by Dagster.

Dagster's in-process executor runs one step at a time, and its multiprocess executor starts a
process per step (seconds of imports each, and every value written then read back). The steps
of this pipeline spend most of their time in code that releases the GIL (GEOS, Arrow, DuckDB,
zlib, file writes), so two steps on two threads of one process overlap well: the outlines are
simplified while the indicators are scored. Each step is an ordinary Dagster step (start, logs,
outputs, checks, failure, retries, hooks in the event log and the UI); the run's values stay in
the IO manager's memory as with the in-process executor.

Interruption (Ctrl-C, a run cancelled from the UI): no new step starts, the steps at work are
interrupted as the in-process executor interrupts its one step (`DagsterExecutionInterruptedError`
raised in the step's thread, at its next Python instruction), then the run ends interrupted once
they have stopped. An error escaping a step (raised when `raise_on_error`, as `materialize`
does) starts no other step; the steps at work finish, then the error is raised again.

`materialize` is `dagster.materialize` run by this executor (Dagster's own always runs its steps
one after the other); `fragilite run`, the département partitions and the benchmarks use it,
the UI's and the daemon's runs use the executor through the jobs and `Definitions`.
"""

from __future__ import annotations

import ctypes
import gc
import os
import queue
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext, StepExecutionContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import (
    _handle_compute_log_setup_error,
    _handle_compute_log_teardown_error,
    _trigger_hook,
    dagster_event_sequence_for_step,
)
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor

DEFAULT_THREADS = 2  # this pipeline's steps fill two cores; more threads mostly wait for the GIL
POLL_SECONDS = 0.1  # how often the orchestrating thread looks for an interruption
RUN_JOB = "__fragilite_run"
_DONE = object()


@dataclass
class _Running:
    """One step at work on its thread."""

    context: StepExecutionContext
    messages: queue.SimpleQueue
    events: list[DagsterEvent] = field(default_factory=list)
    error: BaseException | None = None
    thread_id: int | None = None
    active: bool = True  # inside the step's own code: an interruption may be raised in it
    interrupted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> str:
        return self.context.step.key

    def run(self) -> None:
        """The step's events, handed to the orchestrating thread as they come."""
        with self.lock:
            self.thread_id = threading.get_ident()
        try:
            try:
                for event in dagster_event_sequence_for_step(self.context):
                    self.messages.put((self, event))
            finally:
                with self.lock:
                    self.active = False
        except BaseException as exc:  # raised again by the orchestrating thread
            self.error = exc
        finally:
            self.messages.put((self, _DONE))

    def interrupt(self) -> None:
        """Raise `DagsterExecutionInterruptedError` in the step's thread (once), as Dagster's
        signal handler raises it in the one step of the in-process executor."""
        with self.lock:
            if self.active and not self.interrupted and self.thread_id is not None:
                self.interrupted = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread_id), ctypes.py_object(DagsterExecutionInterruptedError)
                )


class ThreadExecutor(Executor):
    """At most `max_concurrent` steps at once, each on a thread of this process."""

    def __init__(self, max_concurrent: int, retries: RetryMode) -> None:
        self.max_concurrent = max_concurrent
        self._retries = retries

    @property
    def retries(self) -> RetryMode:
        return self._retries

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        _return_large_blocks()
        with _long_lived_set_aside():
            yield from self._execute(plan_context, execution_plan)

    def _execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        yield DagsterEvent.engine_event(
            plan_context,
            f"Étapes exécutées dans ce processus (pid {os.getpid()}), {self.max_concurrent} à la fois",
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=self._plan_iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        )

    def _plan_iterator(
        self, job_context: PlanExecutionContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        """Dagster's `inner_plan_execution_iterator`, with the steps on threads."""
        with ExitStack() as stack:
            concurrency = stack.enter_context(InstanceConcurrencyContext(job_context.instance, job_context.dagster_run))
            active = stack.enter_context(
                ActiveExecution(
                    execution_plan,
                    retry_mode=job_context.retry_mode,
                    max_concurrent=self.max_concurrent,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=job_context.step_dependency_config,
                )
            )
            with ExitStack() as capture:
                compute_logs = job_context.instance.compute_log_manager
                log_key = compute_logs.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
                step_keys = [step.key for step in execution_plan.get_steps_to_execute_in_topo_order()]
                try:
                    log_context = capture.enter_context(compute_logs.capture_logs(log_key))
                    yield DagsterEvent.capture_logs(job_context, step_keys, log_key, log_context)
                except Exception:
                    yield from _handle_compute_log_setup_error(job_context, sys.exc_info())
                yield from self._steps(job_context, active)
                try:
                    capture.close()
                except Exception:
                    yield from _handle_compute_log_teardown_error(job_context, sys.exc_info())

    def _steps(self, job_context: PlanExecutionContext, active: ActiveExecution) -> Iterator[DagsterEvent]:
        messages: queue.SimpleQueue = queue.SimpleQueue()
        running: list[_Running] = []  # a step retried at once has two: its attempts' ends may cross
        threads: list[threading.Thread] = []
        stopping, error = False, None
        try:
            while running or not (stopping or active.is_complete):
                if stopping and error is None:
                    for work in running:
                        work.interrupt()  # a step whose thread had not started yet
                elif not stopping and active.check_for_interrupts():
                    stopping = True
                    active.mark_interrupted()
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Interruption reçue : les étapes en cours sont arrêtées, aucune autre ne démarre",
                        EngineEventData.interrupted([work.key for work in running]),
                    )
                    for work in running:
                        work.interrupt()
                if not stopping:
                    for step in active.get_steps_to_execute(limit=self.max_concurrent - len(running)):
                        work = _Running(job_context.for_step(step, active.get_known_state()), messages)
                        running.append(work)
                        thread = threading.Thread(target=work.run, name=f"fragilite-etape-{step.key}", daemon=True)
                        threads.append(thread)
                        thread.start()
                    yield from active.concurrency_event_iterator(job_context)
                if not running:
                    active.sleep_til_ready()
                    continue
                try:
                    work, event = messages.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if event is not _DONE:
                    work.events.append(event)
                    yield event
                    active.handle_event(event)
                    continue
                running.remove(work)
                if all(other.key != work.key for other in running):  # not retried already
                    active.verify_complete(job_context, work.key)
                yield from active.plan_events_iterator(job_context)
                yield from _trigger_hook(work.context, work.events)
                if work.error is not None and not isinstance(
                    work.error, DagsterExecutionInterruptedError | KeyboardInterrupt
                ):
                    # raise_on_error: the run stops, as in process; the steps at work finish
                    # (an interruption raised in them could land inside a lock, e.g. logging's).
                    error = error or work.error
                    stopping = True
        except BaseException:
            for work in running:
                work.interrupt()
            raise
        finally:
            for thread in threads:
                thread.join()
        if error is not None:
            raise error
        if stopping:
            raise DagsterExecutionInterruptedError()


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK = 1 << 23


def _return_large_blocks() -> None:
    """Blocks of 8 MiB and more (table columns, geometry buffers) allocated apart and given back
    to the system when freed. glibc otherwise raises this threshold as large blocks are freed
    and serves them from its per-thread heaps, where freed memory stays with the process: with
    steps on several threads, 100 to 200 MB more at the national scale for the same work
    (smaller blocks apart cost more system calls than they save). Linux with
    glibc only; elsewhere nothing changes."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)


# Full collections during a run: one every 4 × the usual number of middle-generation ones.
FULL_COLLECTIONS_APART = 4


@contextmanager
def _long_lived_set_aside() -> Iterator[None]:
    """The cyclic garbage collector's full collections, which stop every thread while they walk
    all tracked objects, made rarer and shorter for the run: what is alive when it starts
    (modules, definitions, the instance: some 300,000 objects) is set aside (`gc.freeze`), and
    full collections come 4 times less often (the young generations still collect the run's
    short-lived cycles). A national run spent 1.2 s in a dozen of them, 0.3 s in five since.
    Both are undone when the run ends (a process may run several). A `fragilite` process has
    frozen its start-up already (`pipelines.cli.console`): that freeze is its own, left as is."""
    frozen_by_caller = gc.get_freeze_count() > 0
    if not frozen_by_caller:
        gc.collect()
        gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, old * FULL_COLLECTIONS_APART)
    try:
        yield
    finally:
        gc.set_threshold(young, middle, old)
        if not frozen_by_caller:
            gc.unfreeze()


@dg.executor(
    name="fils",
    config_schema={
        "max_concurrent": dg.Field(
            int,
            default_value=DEFAULT_THREADS,
            description="Nombre d'étapes exécutées en même temps, chacune sur un fil de ce processus.",
        ),
        "retries": get_retries_config(),
    },
)
def thread_executor(init_context: dg.InitExecutorContext) -> ThreadExecutor:
    """The run's steps on threads of its own process, `max_concurrent` at a time (see the module)."""
    config = init_context.executor_config
    return ThreadExecutor(max(1, int(config["max_concurrent"])), RetryMode.from_config(config["retries"]))


def materialize(
    assets: Sequence[Any],
    *,
    selection: Any,
    resources: Mapping[str, object],
    instance: dg.DagsterInstance,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    partition_key: str | None = None,
    raise_on_error: bool = True,
    capture_outputs: bool = False,
) -> dg.ExecuteInProcessResult:
    """`dagster.materialize` with the steps on threads (`thread_executor`): same definitions,
    selection, resources, run tags and partition, same result object. `capture_outputs`: keep
    every value for `result.output_for_node` (tests); otherwise each value is released once the
    run's last step that reads it has (pipelines/storage.py)."""
    defs = dg.Definitions(
        jobs=[dg.define_asset_job(RUN_JOB, selection=selection, executor_def=thread_executor)],
        assets=assets,
        resources=resources,
    )
    job = defs.resolve_job_def(RUN_JOB)
    run_config = dict(run_config or {})
    if partition_key and not run_config and job.partitioned_config:
        run_config = dict(job.partitioned_config.get_run_config_for_partition_key(partition_key))
    # The job as `execute_in_process` prepares it (resources bound), with this executor again.
    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={}).with_executor_def(thread_executor)
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral),
        run_config=run_config,
        instance=instance,
        output_capturing_enabled=capture_outputs,
        raise_on_error=raise_on_error,
        run_tags=merge_run_tags(
            job_def=job,
            partition_key=partition_key,
            tags=tags,
            asset_selection=None,
            instance=instance,
            run_config=run_config,
        ),
    )

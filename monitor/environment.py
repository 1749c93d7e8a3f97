"""Where the monitor runs, and so what each of its figures covers.

On Lambda (the default, "on-demand") one runtime process has the execution environment
to itself: its resident memory is the environment's, its ``/tmp`` is its own. On a
*Lambda Managed Instance* the Python runtime starts one process per concurrent request
(``PerExecutionEnvironmentMaxConcurrency`` of them) in one execution environment: the
processes share its memory and its ``/tmp``, each with a monitor of its own. The Lambda
developer guide ("Python runtime for Lambda Managed Instances") says so: each concurrent
request has a process and a memory space of its own, the environment's memory use is
the per-process use times the number of processes, and ``/tmp`` is shared by all the
concurrent requests of the environment.

How a Managed Instance is told apart, from the environment Lambda sets:

* ``AWS_LAMBDA_INITIALIZATION_TYPE`` is ``lambda-managed-instances`` (it is ``on-demand``,
  ``provisioned-concurrency`` or ``snap-start`` elsewhere; the value the Datadog Lambda
  libraries test for), or
* ``AWS_LAMBDA_MAX_CONCURRENCY`` is set to something: the runtimes' signal to serve
  several requests per environment (the Node.js, Go, Rust and .NET runtime clients read
  it), and the number of processes the Python runtime runs. Set but empty (or blank) is
  not set: an on-demand function with ``AWS_LAMBDA_MAX_CONCURRENCY=`` is Lambda.

Lambda sets ``AWS_LAMBDA_MAX_CONCURRENCY`` from the function's
``PerExecutionEnvironmentMaxConcurrency``, 1 to :data:`MAX_PROCESSES` (1,600: the valid
range in the Lambda API reference, ``LambdaManagedInstancesCapacityProviderConfig``, and
the CloudFormation ``AWS::Lambda::Function`` property). Anything else (not a whole number
of ASCII digits, 0, more than 1,600, or so many that a process's share of the memory is
under :data:`MIN_PROCESS_MEMORY_BUDGET`) is one ConfigurationError naming the variable,
never a zero budget that fails later in the sampling thread.

So each figure has a scope (:class:`~monitor.metrics.Scope`, per metric in
:data:`~monitor.metrics.METRIC_SCOPES`): resident memory is the writing process's
(``MemoryScope``), ``/tmp`` the environment's (``TmpScope``), the memory limit the
environment's, and ``TmpAttributedBytes`` the request's (:mod:`monitor.attribution`).
Every samples, invocation and level-change record states them with the process id
(:attr:`ExecutionEnvironment.properties`).

Memory thresholds account for the sharing: a process may use its *budget*, the
environment's memory over the processes sharing it (the guide's rule above, turned
round), so its warning comes while the environment as a whole still has room; the
memory percentages are of that budget. On Lambda the budget is the whole limit.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from monitor import records as r
from monitor.errors import ConfigurationError
from monitor.metrics import Scope
from monitor.sampler import memory_limit_bytes

INITIALIZATION_TYPE_ENV = "AWS_LAMBDA_INITIALIZATION_TYPE"
MANAGED_INSTANCES_INITIALIZATION = "lambda-managed-instances"
MAX_CONCURRENCY_ENV = "AWS_LAMBDA_MAX_CONCURRENCY"
MAX_PROCESSES = 1600
"""The largest ``PerExecutionEnvironmentMaxConcurrency`` Lambda accepts (Lambda API
reference, ``LambdaManagedInstancesCapacityProviderConfig``: valid range 1 to 1600)."""
MIN_PROCESS_MEMORY_BUDGET = 1024 * 1024
"""Bytes: the smallest share of the memory a process may be given (1 MiB). A Managed
Instance has at least 2 GiB (2,048 MB, Lambda developer guide), so 1,600 processes still
get 1.28 MiB each; below this the figures would be meaningless (an idle Python runtime
is larger)."""

log = logging.getLogger("tmpwarden.monitor")


class ExecutionModel(enum.StrEnum):
    """How requests share an execution environment (the ``ExecutionModel`` property)."""

    LAMBDA = "lambda"
    """One request at a time, one runtime process per environment."""
    MANAGED_INSTANCES = "managed-instances"
    """Several requests at once, each in its own runtime process (Python)."""


@dataclass(frozen=True, slots=True)
class ExecutionEnvironment:
    """The execution environment as one monitored process sees it.

    ``memory_limit``: the environment's memory in bytes (the function's configured
    memory, shared by all its processes); ``processes``: how many runtime processes
    share it (1 on Lambda; ``AWS_LAMBDA_MAX_CONCURRENCY`` on a Managed Instance, None
    when Lambda did not say); ``process_id``: this process.
    """

    model: ExecutionModel
    memory_limit: int
    processes: int | None
    process_id: int
    properties: dict[str, object] = field(init=False, compare=False, repr=False)
    """What every samples, invocation and level-change record states (see
    :data:`monitor.records.ENVIRONMENT_PROPERTIES`); made once."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "properties",
            {
                r.PROCESS_ID: self.process_id,
                r.EXECUTION_MODEL: self.model.value,
                r.ENVIRONMENT_PROCESSES: self.processes,
                r.MEMORY_LIMIT_BYTES: self.memory_limit,
                r.PROCESS_MEMORY_BUDGET_BYTES: self.process_memory_budget,
                r.MEMORY_SCOPE: Scope.PROCESS.value,
                r.TMP_SCOPE: Scope.ENVIRONMENT.value,
            },
        )

    @property
    def shared(self) -> bool:
        """Whether other processes may use this environment's memory and ``/tmp``."""
        return self.model is ExecutionModel.MANAGED_INSTANCES and self.processes != 1

    @property
    def process_memory_budget(self) -> int:
        """Bytes of resident memory this process may use: the environment's memory over
        the processes sharing it (the whole of it when their number is unknown).
        :meth:`detect` keeps it at least :data:`MIN_PROCESS_MEMORY_BUDGET`; made by hand,
        it may be 0, which the sampling path treats as no limit known."""
        return self.memory_limit // (self.processes or 1)

    @classmethod
    def detect(
        cls, environ: Mapping[str, str] | None = None, memory_limit: int | None = None
    ) -> ExecutionEnvironment:
        """Read the variables above from ``environ`` (``os.environ``). ``memory_limit``
        (bytes): the environment's memory, else :func:`~monitor.sampler.memory_limit_bytes`.

        An ``AWS_LAMBDA_MAX_CONCURRENCY`` that is not a whole number from 1 to
        :data:`MAX_PROCESSES`, or that leaves a process less than
        :data:`MIN_PROCESS_MEMORY_BUDGET`, and a ``memory_limit`` below 0, are each a
        ConfigurationError naming the value. An empty or blank variable is an unset one.
        """
        env = os.environ if environ is None else environ
        if memory_limit is not None and memory_limit < 0:
            raise ConfigurationError(
                f"memory_limit={memory_limit!r} is negative; give the environment's memory "
                "in bytes, or leave it out to read it from Lambda"
            )
        limit = memory_limit or memory_limit_bytes(dict(env))
        concurrency = (env.get(MAX_CONCURRENCY_ENV) or "").strip()
        managed = env.get(INITIALIZATION_TYPE_ENV, "").strip() == MANAGED_INSTANCES_INITIALIZATION
        if not managed and not concurrency:
            return cls(ExecutionModel.LAMBDA, limit, 1, os.getpid())
        processes = _processes(concurrency, limit)
        if processes is None:
            log.warning(
                "tmpwarden monitor: a Lambda Managed Instance without %s; memory "
                "thresholds are of the whole environment's memory, not of this "
                "process's share",
                MAX_CONCURRENCY_ENV,
            )
        return cls(ExecutionModel.MANAGED_INSTANCES, limit, processes, os.getpid())


def _processes(value: str, memory_limit: int) -> int | None:
    """The number of processes ``value`` (stripped; empty: None) says share
    ``memory_limit`` bytes; ConfigurationError when Lambda could not have set it."""
    if not value:
        return None
    # ASCII digits only: int() would also take "1_000", "+4" and other scripts' digits
    processes = int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= processes <= MAX_PROCESSES:
        raise ConfigurationError(
            f"{MAX_CONCURRENCY_ENV}={value!r} is not a whole number of concurrent requests "
            f"from 1 to {MAX_PROCESSES} (Lambda's PerExecutionEnvironmentMaxConcurrency); "
            "Lambda sets it on a Managed Instance: unset it elsewhere"
        )
    if memory_limit // processes < MIN_PROCESS_MEMORY_BUDGET:
        raise ConfigurationError(
            f"{MAX_CONCURRENCY_ENV}={value!r} processes sharing {memory_limit} bytes of memory "
            f"leave each less than {MIN_PROCESS_MEMORY_BUDGET // 1024} KiB; give the function "
            "more memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE) or fewer concurrent requests"
        )
    return processes

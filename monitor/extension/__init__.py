"""tmpwarden's external Lambda extension: the sidecar that outlives the runtime.

It runs as its own process (``/opt/extensions/tmpwarden-monitor`` from the monitor
layer), so an out-of-memory kill or a timeout of the function does not take it: it
samples ``/tmp`` and the runtime's RSS on its own, subscribes to the Telemetry API, and
when an invocation dies writes one ``incident`` EMF line (``monitor.records``) with the
last samples and a Classification (``monitor.extension.classify``).

The contract (stable; an emulator such as ``python -m handler invoke`` relies on it):

* executable: ``deploy/layer/extensions/tmpwarden-monitor`` in a checkout,
  ``/opt/extensions/tmpwarden-monitor`` in Lambda (``#!/usr/bin/env python3``; it finds
  this package in ``/opt/python`` or in the checkout it lies in). It registers under
  its file name.
* ``AWS_LAMBDA_RUNTIME_API`` (required): host:port of the Extensions and Telemetry APIs.
* ``TMPWARDEN_EXTENSION_HOST``: the host the telemetry listener binds and names in its
  subscription (default ``sandbox.localdomain``; an emulator sets ``127.0.0.1``).
* ``TMPWARDEN_EXTENSION_PORT``: its port (default 0: any free port).
* ``TMPWARDEN_RUNTIME_PID``: the process whose RSS is sampled (default: found by
  scanning ``/proc``, see ``monitor.extension.probe``).
* ``TMPWARDEN_EXTENSION_INTERVAL_MS``: the longest sample interval (default 500; 10 to
  60,000); near a threshold it shrinks to the monitor's ``TMPWARDEN_SAMPLE_INTERVAL_MS``
  (headroom-aware, as the in-process monitor; ``TMPWARDEN_SAMPLING=fixed``: fixed).
* the monitor's ``TMPWARDEN_PATH``, ``TMPWARDEN_NAMESPACE``, ``AWS_LAMBDA_FUNCTION_NAME``
  and ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, read as the in-process monitor reads them;
  the in-process monitor's shared state is read from ``<TMPWARDEN_PATH>/.tmpwarden/``
  (``monitor.shared_state``).

Exit status: 0 after SHUTDOWN, 1 when it cannot register or fails (reported to
``/extension/init/error`` or ``/extension/exit/error``), 2 without
``AWS_LAMBDA_RUNTIME_API``. Standard library only; no import of the sidecar.
"""

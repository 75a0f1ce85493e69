"""Dynamic micro-batching for ``taskbert serve``, apart from the HTTP layer.

Requests arrive on many threads (or an event loop); one worker thread runs the model. Each
request is a job: a list of inputs and a :class:`concurrent.futures.Future` for its list of
outputs. The worker takes the oldest job, then keeps taking jobs until the batch holds
``max_batch`` inputs or ``max_wait_ms`` have passed since that oldest job arrived, calls the
model once on all their inputs, and hands each job back its own slice, in its own order.
A job is never split: one larger than ``max_batch`` runs alone (the model function still
chunks it to its own batch size). The queue is bounded in jobs: :meth:`MicroBatcher.submit`
raises :class:`QueueFull` rather than let waiting requests pile up without limit, which the
HTTP layer answers with 503 and ``Retry-After``. An exception in the model fails the futures
of that batch only; the worker goes on with the next.
"""

import collections
import queue
import threading
import time
from concurrent.futures import Future

__all__ = ["MicroBatcher", "QueueFull", "BatchStats", "percentile"]


#: the defaults of ``taskbert serve --max-batch``, ``--max-wait-ms`` and ``--max-queue``
MAX_BATCH, MAX_WAIT_MS, MAX_QUEUE = 32, 0.0, 256


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` jobs already: try again later."""


class BatchStats:
    """Counts and recent samples a ``/metrics`` endpoint reports: model calls, their sizes
    (inputs per call), and request latencies in seconds (the last ``keep`` of each)."""

    def __init__(self, keep=10_000):
        self._lock = threading.Lock()
        self.batches = 0
        self.batch_inputs = 0
        self.batch_sizes = collections.deque(maxlen=keep)
        self.latencies = collections.deque(maxlen=keep)
        self.status_counts = collections.Counter()

    def add_batch(self, n_inputs):
        """Record one model call on ``n_inputs`` inputs."""
        with self._lock:
            self.batches += 1
            self.batch_inputs += n_inputs
            self.batch_sizes.append(n_inputs)

    def add_request(self, status, seconds):
        """Record one answered request: its HTTP status and how long it took."""
        with self._lock:
            self.status_counts[int(status)] += 1
            self.latencies.append(seconds)

    def snapshot(self):
        """A JSON-ready dict: request counts by status, latency p50/p99 (ms) of the recent
        requests, model calls and their size distribution."""
        with self._lock:
            lat = sorted(self.latencies)
            sizes = sorted(self.batch_sizes)
            counts = dict(sorted(self.status_counts.items()))
            batches, inputs = self.batches, self.batch_inputs
        return {
            "requests": sum(counts.values()),
            "requests_by_status": {str(k): v for k, v in counts.items()},
            "latency_ms": {"p50": _ms(percentile(lat, 50)), "p99": _ms(percentile(lat, 99)),
                           "max": _ms(lat[-1] if lat else None), "samples": len(lat)},
            "batches": batches,
            "inputs": inputs,
            "batch_size": {"mean": round(inputs / batches, 3) if batches else None,
                           "p50": percentile(sizes, 50), "max": sizes[-1] if sizes else None,
                           "histogram": dict(sorted(collections.Counter(sizes).items()))},
        }


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 3)


def percentile(sorted_values, q):
    """The ``q``-th percentile of an already sorted list (nearest rank), None when empty."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))   # ceil(n * q / 100), at least 1
    return sorted_values[int(rank) - 1]


class _Job:
    __slots__ = ("inputs", "future", "arrived")

    def __init__(self, inputs):
        self.inputs = inputs
        self.future = Future()
        self.arrived = time.monotonic()


class MicroBatcher:
    """Group concurrent jobs into model calls of up to ``max_batch`` inputs, waiting at most
    ``max_wait_ms`` for a batch to fill; ``model(inputs) -> outputs`` (one output per input,
    in order) runs on one worker thread only, so it needs no lock of its own."""

    def __init__(self, model, max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, max_queue=MAX_QUEUE, stats=None):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self.model = model
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.stats = stats if stats is not None else BatchStats()
        self._queue = queue.Queue(maxsize=max_queue)
        self._held = None       # a job taken from the queue that did not fit the last batch
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskbert-batcher", daemon=True)
        self._thread.start()

    def submit(self, inputs):
        """Queue ``inputs`` (a non-empty list); a Future of their outputs, in order.
        Raises :class:`QueueFull` when ``max_queue`` jobs are waiting, RuntimeError once stopped."""
        if self._stopping.is_set():
            raise RuntimeError("the batcher is stopped")
        job = _Job(list(inputs))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)") from None
        return job.future

    def pending(self):
        """About how many jobs wait for the worker (for metrics)."""
        return self._queue.qsize() + (self._held is not None)

    def stop(self, timeout=None):
        """Stop taking jobs, let the worker finish those queued, and join it (up to ``timeout``
        seconds); True when the worker has ended."""
        self._stopping.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _next_job(self, timeout):
        if self._held is not None:
            job, self._held = self._held, None
            return job
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _collect(self):
        """The next batch of jobs (None when stopping and nothing is left)."""
        while True:
            try:
                first = self._next_job(0.05)   # wake now and then to see a stop
                break
            except queue.Empty:
                if self._stopping.is_set():
                    return None
        batch, size = [first], len(first.inputs)
        deadline = first.arrived + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                # once stopping, no one else can arrive: take what is queued, do not wait
                job = self._next_job(0 if self._stopping.is_set() else left)
            except queue.Empty:
                break
            if size + len(job.inputs) > self.max_batch:
                self._held = job      # it starts the next batch, keeping arrival order
                break
            batch.append(job)
            size += len(job.inputs)
        return batch

    def _run(self):
        while (batch := self._collect()) is not None:
            # a request whose client went away was cancelled: skip it; once running, a
            # future can no longer be cancelled, so setting its result cannot fail
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            inputs = [x for job in batch for x in job.inputs]
            try:
                outputs = list(self.model(inputs))
                if len(outputs) != len(inputs):
                    raise RuntimeError(f"the model gave {len(outputs)} outputs for {len(inputs)} inputs")
            except Exception as exc:  # noqa: BLE001 (a failed batch fails its requests, not the worker)
                for job in batch:
                    job.future.set_exception(exc)
                continue
            self.stats.add_batch(len(inputs))
            start = 0
            for job in batch:
                job.future.set_result(outputs[start:start + len(job.inputs)])
                start += len(job.inputs)

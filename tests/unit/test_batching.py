"""The serve micro-batcher on its own (no HTTP, no model): grouping, waiting, refusing, order,
and a failing model call. Timings are generous bounds, never speed checks."""

import contextlib
import threading
import time

import pytest

from taskbert.cli.batching import BatchStats, MicroBatcher, QueueFull, percentile


class Recorder:
    """A model that records each call's inputs; ``gate`` (when set) holds calls until opened."""

    def __init__(self, gate=None, fail_on=None):
        self.calls, self.gate, self.fail_on = [], gate, fail_on
        self.started = threading.Event()

    def __call__(self, inputs):
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        self.calls.append(list(inputs))
        if self.fail_on is not None and self.fail_on in inputs:
            raise ValueError(f"cannot take {self.fail_on!r}")
        return [f"out:{x}" for x in inputs]


@contextlib.contextmanager
def held_worker(first=("x",), fail_on=None, **options):
    """A MicroBatcher (``options``) whose worker is in the model call on ``first``, held there
    by a shut gate, so what is submitted now queues behind it: yields ``(batcher, model, gate,
    blocker)``, ``gate.set()`` lets the worker go. The batcher is stopped on the way out."""
    gate = threading.Event()
    model = Recorder(gate, fail_on)
    batcher = MicroBatcher(model, **options)
    try:
        blocker = batcher.submit(list(first))
        assert model.started.wait(5)       # taken off the queue by the worker
        yield batcher, model, gate, blocker
    finally:
        gate.set()                         # a failed test must not leave the worker stuck
        batcher.stop(5)


def test_concurrent_requests_are_grouped_up_to_max_batch_in_order():
    with held_worker(["first"], max_batch=4, max_wait_ms=50, max_queue=100) as (b, model, gate, blocker):
        futures = [b.submit([f"t{i}"]) for i in range(10)]
        gate.set()
        assert blocker.result(5) == ["out:first"]
        # each request gets its own output, whatever batch it ran in
        assert [f.result(5) for f in futures] == [[f"out:t{i}"] for i in range(10)]
    # the ten queued while the model was busy ran as 4 + 4 + 2, in arrival order
    assert model.calls == [["first"], ["t0", "t1", "t2", "t3"], ["t4", "t5", "t6", "t7"], ["t8", "t9"]]
    assert b.stats.batches == 4 and list(b.stats.batch_sizes) == [1, 4, 4, 2]


def test_multi_input_requests_keep_their_order_and_are_not_split():
    with held_worker(max_batch=4, max_wait_ms=50) as (b, model, gate, blocker):
        f1 = b.submit(["a1", "a2", "a3"])
        f2 = b.submit(["b1", "b2"])        # would make 5 with the first: starts the next batch
        f3 = b.submit(["c1", "c2", "c3", "c4", "c5", "c6"])   # more than max_batch: alone
        f4 = b.submit(["d1"])
        gate.set()
        blocker.result(5)
        assert f1.result(5) == ["out:a1", "out:a2", "out:a3"]
        assert f2.result(5) == ["out:b1", "out:b2"]
        assert f3.result(5) == [f"out:c{i}" for i in range(1, 7)]
        assert f4.result(5) == ["out:d1"]
    assert model.calls[1:] == [["a1", "a2", "a3"], ["b1", "b2"], ["c1", "c2", "c3", "c4", "c5", "c6"], ["d1"]]


def test_max_wait_holds_a_lone_request_then_runs_it():
    model = Recorder()
    b = MicroBatcher(model, max_batch=8, max_wait_ms=300)
    try:
        start = time.monotonic()
        f = b.submit(["alone"])
        time.sleep(0.05)
        g = b.submit(["joins"])            # arrives within the wait: same model call
        assert f.result(5) == ["out:alone"] and g.result(5) == ["out:joins"]
        waited = time.monotonic() - start
    finally:
        b.stop(5)
    assert model.calls == [["alone", "joins"]]
    assert waited >= 0.29              # the batch was not run before max_wait passed


def test_max_wait_zero_takes_only_what_is_queued():
    with held_worker(max_batch=8, max_wait_ms=0) as (b, model, gate, _):
        queued = [b.submit(["a"]), b.submit(["b"])]
        gate.set()
        time.sleep(0.2)
        late = b.submit(["c"])   # a batcher that waited for more after taking a and b would add c
        assert [f.result(5) for f in queued + [late]] == [["out:a"], ["out:b"], ["out:c"]]
    # both queued requests in one call, and nothing that came after them
    assert model.calls == [["x"], ["a", "b"], ["c"]]


def test_a_full_queue_refuses_and_frees_up_after():
    with held_worker(["r"], max_batch=1, max_wait_ms=0, max_queue=3) as (b, _, gate, running):
        queued = [b.submit([f"q{i}"]) for i in range(3)]
        with pytest.raises(QueueFull, match=r"the queue is full \(3 requests waiting\)"):
            b.submit(["one too many"])
        gate.set()
        assert running.result(5) == ["out:r"] and [f.result(5) for f in queued] == [["out:q0"], ["out:q1"], ["out:q2"]]
        assert b.submit(["later"]).result(5) == ["out:later"]


def test_a_failing_model_call_fails_only_its_batch():
    with held_worker(fail_on="bad", max_batch=2, max_wait_ms=50) as (b, _, gate, blocker):
        same_batch = [b.submit(["ok1"]), b.submit(["bad"])]
        next_batch = [b.submit(["ok2"]), b.submit(["ok3"])]
        gate.set()
        blocker.result(5)
        for f in same_batch:
            with pytest.raises(ValueError, match="cannot take 'bad'"):
                f.result(5)
        assert [f.result(5) for f in next_batch] == [["out:ok2"], ["out:ok3"]]
    assert b.stats.batches == 2   # the failed call is not counted as a served batch


def test_a_model_giving_the_wrong_number_of_outputs_fails_the_batch():
    b = MicroBatcher(lambda xs: xs[:-1], max_batch=4, max_wait_ms=0)
    try:
        with pytest.raises(RuntimeError, match="1 outputs for 2 inputs"):
            b.submit(["a", "b"]).result(5)
    finally:
        b.stop(5)


def test_stop_finishes_what_is_queued_then_refuses():
    # a full batch first: runs at once
    with held_worker(["x", "y"], max_batch=2, max_wait_ms=10_000) as (b, _, gate, blocker):
        queued = [b.submit([f"q{i}"]) for i in range(3)]
        stopper = threading.Thread(target=b.stop, args=(10,))
        stopper.start()
        time.sleep(0.05)
        gate.set()
        stopper.join(10)
        # queued work ran without waiting out the 10 s max_wait
        assert not stopper.is_alive()
        assert blocker.result(0) == ["out:x", "out:y"]
        assert [f.result(0) for f in queued] == [["out:q0"], ["out:q1"], ["out:q2"]]
        with pytest.raises(RuntimeError, match="stopped"):
            b.submit(["after"])


def test_a_cancelled_request_is_skipped():
    with held_worker(max_batch=4, max_wait_ms=0) as (b, model, gate, _):
        gone, kept = b.submit(["gone"]), b.submit(["kept"])
        assert gone.cancel()
        gate.set()
        assert kept.result(5) == ["out:kept"]
    assert model.calls == [["x"], ["kept"]]


def test_stats_percentiles_by_hand():
    assert percentile([], 50) is None
    values = list(range(1, 101))           # 1..100
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7], 99) == 7
    stats = BatchStats()
    for size in (1, 4, 4, 2):
        stats.add_batch(size)
    for status, secs in ((200, 0.010), (200, 0.030), (503, 0.001), (200, 0.020)):
        stats.add_request(status, secs)
    snap = stats.snapshot()
    assert snap["requests"] == 4 and snap["requests_by_status"] == {"200": 3, "503": 1}
    assert snap["latency_ms"]["p50"] == 10.0 and snap["latency_ms"]["p99"] == 30.0
    assert snap["batches"] == 4 and snap["inputs"] == 11 and snap["batch_size"]["mean"] == 2.75
    assert snap["batch_size"]["histogram"] == {1: 1, 2: 1, 4: 2} and snap["batch_size"]["max"] == 4

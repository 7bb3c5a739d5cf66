#!/usr/bin/env python3
"""Benchmark: bounded memory. `ingest -> profile -> export` through the gigo
binary on generated Parquet files of N rows x 20 numeric columns, beside
DuckDB's SUMMARIZE and polars' describe (in memory and lazy) of the same
file. Whole processes: wall time and peak RSS (the kernel's ru_maxrss of
each child, from wait4). Prints figures; asserts nothing.

    PY=$(../shared/bench/peers/setup.sh)
    cargo nextest run --workspace --no-run   # builds target/debug/gigo
    $PY benches/memory.py                    # 10M rows
    GIGO_BENCH_ROWS=10000000,50000000 $PY benches/memory.py

Environment: GIGO_BENCH_ROWS (comma-separated row counts), GIGO_BENCH_DIR
(where the files go; default a temporary directory, removed after each
size), GIGO_BENCH_SMOTE=0 (skip the SMOTE section: 100k x 20 through `gigo
run` beside imbalanced-learn's whole process), GIGO_BENCH_SMOTE_ROWS (rows of
the bounded SMOTE section, default 10M; 0 skips it: `ingest -> rebalance
-> export` with SMOTE in the budget beside imbalanced-learn), GIGO_BENCH_CLEAN_ROWS (rows of the
same with the methods in GIGO_BENCH_CLEAN_METHODS, default 200k of
`tomek,borderline_smote`; 0 skips it), GIGO_BENCH_RANKED_ROWS (rows of the ranking-filter section, default 10M;
0 skips it: the same file with `filter_by: prune_by_noise_rate` beside
cleanlab's find_label_issues), GIGO_BENCH_NOISE_ROWS
(rows of the label_noise section, default 100M; 0 skips it: `ingest ->
label_noise` from two pred_probs columns with `filter_by:
confident_learning`, beside cleanlab's `find_label_issues_batched` on the
same columns), GIGO_BENCH_TRAIN_ROWS (rows of the train section, default
50M; 0 skips it: `ingest -> train` for one epoch beside scikit-learn's
MLPClassifier.partial_fit over the same file), GIGO_BENCH_CV_ROWS (rows of the
cross-validation section, default 10M; 0 skips it: `ingest -> label_noise`
cross-validating logistic regression beside cleanlab + scikit-learn;
GIGO_BENCH_CV_FILTER sets `filter_by` on both sides, default
confident_learning),
GIGO_BENCH_PRETRAIN_ROWS (rows of the pretrain section, default 10M:
one epoch of a denoising autoencoder under GIGO_BENCH_MEMORY and under
GIGO_BENCH_PRETRAIN_HELD, default 16GB, where the matrix is held),
GIGO_BENCH_SHARED_ROWS (rows of the shared-budget section, default 2M; 0
skips it: two cross-validating label_noise stages with two jobs under
GIGO_BENCH_SHARED_MEMORY, default 3GB, where one waits for the other, and
under 16GB, where they run side by side),
GIGO_BENCH_JSONL_ROWS (rows
of the JSON lines section, default 5M, about 2 GB; 0 skips it: `ingest ->
profile -> export` of a JSON lines file beside DuckDB's read_json),
GIGO_BENCH_POLARS=0 (skip polars: its lazy describe
spills about 55 GB at 100M rows), GIGO_BENCH_MEMORY (gigo's --memory, default 1GB), GIGO_BIN (default
target/debug/gigo: the dev profile, whose dependencies and gigo-stages are
optimised; a release build is a 30-minute build on 2 cores).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

# numpy and pyarrow are imported by the generators only, which run in a
# child process: a forked child's peak RSS (ru_maxrss) starts at its
# parent's, so the process that measures must stay small.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = 20
CHUNK = 1_000_000

PIPELINE = """name: bench_memory
seed: 1
stages:
  ingest:
    type: ingest
    path: {data}
  profile:
    type: profile
    inputs: ingest
  export:
    type: export
    inputs: profile
    path: {out}
"""

DUCKDB = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
rows = con.execute("SUMMARIZE SELECT * FROM read_parquet(?)", [sys.argv[1]]).fetchall()
print(len(rows))
"""

POLARS_EAGER = """
import polars as pl, sys
print(pl.read_parquet(sys.argv[1]).describe().shape)
"""

POLARS_LAZY = """
import polars as pl, sys
print(pl.scan_parquet(sys.argv[1]).describe().shape)
"""


def columns(rng, n):
    """n rows of the 20 columns the issue describes: normals, small
    integers, skewed and partly missing values; yields (values, whether
    NaN means missing)."""
    import numpy as np

    for c in range(COLUMNS):
        if c < 10:
            v = rng.standard_normal(n)
        elif c < 14:
            v = rng.integers(0, 10, n).astype(np.float64)
        elif c < 18:
            v = rng.lognormal(0.0, 1.0, n)
        else:
            v = rng.standard_normal(n)
            v[rng.random(n) < 0.05] = np.nan
        yield v, c >= 18


def generate(path, rows):
    """N rows x 20 columns (`columns`); snappy, row groups of 1M rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    schema = pa.schema([(f"x{c}", pa.float64()) for c in range(COLUMNS)])
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            cols = [pa.array(v, mask=np.isnan(v) if missing else None)
                    for v, missing in columns(rng, n)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=CHUNK)


EAGER_BYTES_PER_ROW = 390


def generate_jsonl(path, rows):
    """The rows of `generate` as JSON lines (missing values as null)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(7)
    with open(path, "wb") as f:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            cols = {f"x{c}": pl.Series(v, nan_to_null=missing)
                    for c, (v, missing) in enumerate(columns(rng, n))}
            pl.DataFrame(cols).write_ndjson(f)


# The profile pipeline, its output beside the pipeline file.
JSONL_PIPELINE = PIPELINE.replace("{out}", "out.parquet")

DUCKDB_JSONL = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO 2")
con.execute("SET memory_limit = '1GB'")
sql = "SUMMARIZE SELECT * FROM read_json(?, format = 'newline_delimited')"
print(len(con.execute(sql, [sys.argv[1]]).fetchall()))
"""


def available_memory():
    """MemAvailable from /proc/meminfo, in bytes (Linux)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(cmd, cwd):
    """Runs cmd; returns (seconds, peak RSS in bytes, exit status)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"  {cmd[0]} failed ({code}): {err[-2000:]}", file=sys.stderr)
    return wall, usage.ru_maxrss * 1024, code


SMOTE_PIPELINE = """name: bench_smote
seed: 1
stages:
  ingest:
    type: ingest
    path: {data}
    label: label
  rebalance:
    type: rebalance
    inputs: ingest
    method: {method}
  export:
    type: export
    inputs: rebalance
    path: {out}
"""


def generate_smote(path, n=100_000):
    """n x 20 normals (default 100k), 10% minority shifted by 1.5."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    minority = n // 10
    y = np.zeros(n, dtype=np.int64)
    y[:minority] = 1
    x = rng.standard_normal((n, COLUMNS)) + y[:, None] * 1.5
    cols = {f"x{c}": x[:, c] for c in range(COLUMNS)}
    cols["label"] = y
    pq.write_table(pa.table(cols), path, compression="snappy")


def generate_noise(path, rows):
    """A label and two probabilities (10% of the labels flipped), as a model
    scoring a binary task would leave them."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    schema = pa.schema([("label", pa.int64()), ("p0", pa.float64()), ("p1", pa.float64())])
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            clean = rng.integers(0, 2, n)
            p1 = np.clip(np.where(clean == 1, 0.75, 0.25) + rng.normal(0, 0.2, n), 0.0, 1.0)
            label = np.where(rng.random(n) < 0.1, 1 - clean, clean)
            w.write_table(pa.table([label, 1.0 - p1, p1], schema=schema), row_group_size=CHUNK)


def generate_train(path, rows):
    """20 float32 normals and a label from a noisy linear rule."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(13)
    coef = rng.standard_normal(COLUMNS)
    fields = [(f"x{c}", pa.float32()) for c in range(COLUMNS)] + [("label", pa.int64())]
    schema = pa.schema(fields)
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.standard_normal((n, COLUMNS), dtype=np.float32)
            label = (x @ coef + rng.normal(0, 1.0, n) > 0).astype(np.int64)
            cols = [pa.array(x[:, c]) for c in range(COLUMNS)] + [pa.array(label)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=CHUNK)


def generate_cv(path, rows):
    """20 normals, a label from a noisy linear rule with 10% of the labels
    flipped, and `is_flipped`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(17)
    coef = rng.standard_normal(COLUMNS)
    fields = [(f"x{c}", pa.float64()) for c in range(COLUMNS)]
    schema = pa.schema(fields + [("label", pa.int64()), ("is_flipped", pa.bool_())])
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            x = rng.standard_normal((n, COLUMNS))
            clean = (x @ coef + rng.normal(0, 0.5, n) > 0).astype(np.int64)
            flip = rng.random(n) < 0.1
            label = np.where(flip, 1 - clean, clean)
            cols = [pa.array(x[:, c]) for c in range(COLUMNS)] + [pa.array(label), pa.array(flip)]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=CHUNK)


def in_child(generator, *args):
    """Runs one of the generators above in a child process."""
    subprocess.run([sys.executable, os.path.abspath(__file__), "--generate", generator,
                    *[str(a) for a in args]], check=True)


def smote_section(gigo, py, method="smote"):
    """SMOTE on 100k x 20 (10% minority) through `gigo run` (ingest ->
    rebalance -> export, cold cache) beside imbalanced-learn's whole process
    (`../shared/bench/peers/smote.py`: Python, pyarrow, the resampling).
    Best of three of each."""
    work = tempfile.mkdtemp(prefix="gigo-bench-smote-", dir=os.environ.get("GIGO_BENCH_DIR"))
    try:
        data = os.path.join(work, "smote.parquet")
        in_child("generate_smote", data)
        peer = os.path.join(ROOT, "..", "shared", "bench", "peers", "smote.py")
        pipeline = os.path.join(work, "smote.yaml")
        with open(pipeline, "w") as f:
            f.write(SMOTE_PIPELINE.format(data=data, out=os.path.join(work, "out.parquet"), method=method))
        imb = min(measure([py, peer, data, "--repeat", "1"], work)[0] for _ in range(3))
        runs = []
        for i in range(3):
            cache = os.path.join(work, f"cache{i}")
            runs.append(measure([gigo, "run", pipeline, "-q", "--run-id", f"r{i}", "--cache-dir", cache], work)[0])
        g = min(runs)
        print(f"SMOTE 100k x 20, whole processes: gigo run {g:.2f} s, imbalanced-learn {imb:.2f} s: {g / imb:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def smote_scale_section(gigo, py, rows, memory, method="smote"):
    """SMOTE at scale: `ingest -> rebalance -> export` (the 10% minority grown
    to the majority's size) in the memory budget, beside imbalanced-learn's
    whole process (which holds the table, and its output, in memory). With
    `method: tomek`, Tomek links removed instead (the neighbour search over
    the features of every row)."""
    work = tempfile.mkdtemp(prefix="gigo-bench-smote-scale-", dir=os.environ.get("GIGO_BENCH_DIR"))
    try:
        data = os.path.join(work, "smote.parquet")
        in_child("generate_smote", data, rows)
        pipeline = os.path.join(work, "smote.yaml")
        with open(pipeline, "w") as f:
            f.write(SMOTE_PIPELINE.format(data=data, out=os.path.join(work, "out.parquet"), method=method))
        peer = os.path.join(ROOT, "..", "shared", "bench", "peers", "smote.py")
        peer_method = {"borderline_smote": "borderline"}.get(method, method)
        imb = measure([py, peer, data, "--repeat", "1", "--method", peer_method], work)
        g = measure([gigo, "run", pipeline, "--memory", memory, "-q", "--run-id", "r"], work)
        what = ("SMOTE (10% minority, grown to the majority)" if method == "smote"
                else f"{method} (10% minority, a neighbour search over every row)")
        print(f"{what}, {rows} x 20 (file: {os.path.getsize(data) / 1e6:.0f} MB), whole processes:")
        print(f"  gigo run --memory {memory}: {g[0]:.1f} s, {g[1] / 1e9:.2f} GB peak (exit {g[2]})")
        print(f"  imbalanced-learn:       {imb[0]:.1f} s, {imb[1] / 1e9:.2f} GB peak (exit {imb[2]})")
        if imb[0] > 0:
            print(f"  gigo / imbalanced-learn: {g[0] / imb[0]:.2f}x time, {g[1] / max(imb[1], 1):.2f}x memory")
    finally:
        shutil.rmtree(work, ignore_errors=True)


NOISE_PIPELINE = """name: bench_noise
seed: 1
stages:
  ingest:
    type: ingest
    path: {data}
    label: label
  label_noise:
    type: label_noise
    inputs: ingest
    pred_probs: [p0, p1]
    filter_by: confident_learning
"""

CLEANLAB_BATCHED = """
import sys, numpy as np, pyarrow.parquet as pq
from cleanlab.experimental.label_issues_batched import find_label_issues_batched
src, work = sys.argv[1], sys.argv[2]
f = pq.ParquetFile(src)
n = f.metadata.num_rows
labels = np.lib.format.open_memmap(work + "/labels.npy", mode="w+", dtype=np.int64, shape=(n,))
probs = np.lib.format.open_memmap(work + "/probs.npy", mode="w+", dtype=np.float64, shape=(n, 2))
at = 0
for b in f.iter_batches(batch_size=1_000_000, columns=["label", "p0", "p1"]):
    m = b.num_rows
    labels[at:at + m] = b.column(0).to_numpy()
    probs[at:at + m, 0] = b.column(1).to_numpy()
    probs[at:at + m, 1] = b.column(2).to_numpy()
    at += m
labels.flush(); probs.flush(); del labels, probs
issues = find_label_issues_batched(labels_file=work + "/labels.npy", pred_probs_file=work + "/probs.npy",
                                   batch_size=1_000_000, n_jobs=1, verbose=False)
print(len(issues))
"""


RANKED_PIPELINE = NOISE_PIPELINE.replace("confident_learning", "prune_by_noise_rate")

CLEANLAB_RANKED = """
import sys, numpy as np, pyarrow.parquet as pq
from cleanlab.filter import find_label_issues
t = pq.read_table(sys.argv[1], columns=["label", "p0", "p1"])
labels = t.column("label").to_numpy()
probs = np.stack([t.column("p0").to_numpy(), t.column("p1").to_numpy()], axis=1)
del t
issues = find_label_issues(labels=labels, pred_probs=probs, filter_by="prune_by_noise_rate", n_jobs=1)
print(int(issues.sum()))
"""


CV_PIPELINE = """name: bench_cv
seed: 1
stages:
  ingest:
    type: ingest
    path: {data}
    label: label
    roles: {{is_flipped: truth}}
  label_noise:
    type: label_noise
    inputs: ingest
    model: logistic_regression
    filter_by: confident_learning
"""


SHARED_PIPELINE = CV_PIPELINE + """  label_noise_3:
    type: label_noise
    inputs: ingest
    model: logistic_regression
    filter_by: confident_learning
    folds: 3
"""


TRAIN_PIPELINE = """name: bench_train
seed: 1
stages:
  ingest:
    type: ingest
    path: {data}
    label: label
  train:
    type: train
    inputs: ingest
    epochs: 1
    batch_size: 512
    lr: 0.001
    encoder: {{depth: 2, width: 64}}
"""

# the same stage and levers as the train section's
PRETRAIN_PIPELINE = TRAIN_PIPELINE.replace("train", "pretrain")

SKLEARN_MLP = """
import sys, numpy as np, pyarrow.parquet as pq
from sklearn.neural_network import MLPClassifier
f = pq.ParquetFile(sys.argv[1])
features = [c for c in f.schema_arrow.names if c != "label"]
net = MLPClassifier(hidden_layer_sizes=(64, 64), batch_size=512, learning_rate_init=0.001,
                    random_state=1)
seen = right = 0
for b in f.iter_batches(batch_size=1_048_576):
    x = np.column_stack([b.column(c).to_numpy() for c in features]).astype(np.float32)
    y = b.column("label").to_numpy()
    if seen:
        right += int((net.predict(x) == y).sum())
    net.partial_fit(x, y, classes=[0, 1])
    seen += len(y)
print(seen, right)
"""


def beside(gigo, memory, what, rows, generator, pipeline_text, runs, peer, note,
           name="data.parquet"):
    """Generates `rows` rows with `generator` into file `name`, then runs
    `pipeline_text` through gigo and `peer(data, work)` (a command) on the
    same file, and prints both processes' time and peak RSS and their
    ratio."""
    work = tempfile.mkdtemp(prefix="gigo-bench-", dir=os.environ.get("GIGO_BENCH_DIR"))
    try:
        data = os.path.join(work, name)
        t0 = time.monotonic()
        in_child(generator, data, rows)
        size = os.path.getsize(data)
        print(f"{what}: {rows} rows (file: {size / 1e9:.2f} GB, "
              f"generated in {time.monotonic() - t0:.0f} s), gigo --memory {memory}")
        pipeline = os.path.join(work, "pipeline.yaml")
        with open(pipeline, "w") as f:
            f.write(pipeline_text.format(data=data))
        g = measure([gigo, "run", pipeline, "--memory", memory, "-q", "--run-id", "r"], work)
        o = measure(peer(data, work), work)
        for name, (wall, rss, code) in zip(runs, [g, o]):
            mark = "" if code == 0 else f" (exit {code})"
            print(f"  {name:<36} {wall:>8.1f} s {rss / 1e9:>6.2f} GB{mark}")
        print(f"  gigo / {runs[1].split()[0]}: {g[0] / o[0]:.2f}x ({note})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def noise_section(gigo, py, rows, memory):
    """`label_noise` from pred_probs columns on `rows` rows: a label and two
    probabilities (10% of the labels flipped), as a model scoring a
    binary task would leave them."""
    beside(gigo, memory, "label_noise from pred_probs", rows, "generate_noise", NOISE_PIPELINE,
           ["gigo ingest -> label_noise", "cleanlab find_label_issues_batched"],
           lambda data, work: [py, "-c", CLEANLAB_BATCHED, data, work],
           "cleanlab's rule ranks by self-confidence; gigo's confident_learning flags the "
           "rows off the confident joint's diagonal")


def ranked_section(gigo, py, rows, memory):
    """`label_noise` from pred_probs columns with cleanlab's default filter
    (`prune_by_noise_rate`, which ranks every row), beside cleanlab's
    `find_label_issues` with the same filter on the same columns, in
    memory."""
    beside(gigo, memory, "label_noise from pred_probs, prune_by_noise_rate", rows,
           "generate_noise", RANKED_PIPELINE,
           ["gigo ingest -> label_noise", "cleanlab find_label_issues"],
           lambda data, work: [py, "-c", CLEANLAB_RANKED, data],
           "gigo holds every row's class and probabilities, not the table, and writes "
           "every row with its verdict")


def train_section(gigo, py, rows, memory):
    """`train` for one epoch on `rows` rows x 20 float32 features (a label
    from a noisy linear rule), beside scikit-learn's MLPClassifier fitted
    out of core (`partial_fit` on batches of 1M rows read from the same
    file): the same 2 x 64 relu network, Adam, batches of 512."""
    beside(gigo, memory, f"train, one epoch, {COLUMNS} float32 features", rows, "generate_train",
           TRAIN_PIPELINE, ["gigo ingest -> train", "scikit-learn MLP partial_fit"],
           lambda data, work: [py, "-c", SKLEARN_MLP, data],
           "gigo also ingests the file into its store and writes every row's probabilities")


def cv_section(gigo, py, rows, memory, filter_by="confident_learning"):
    """`label_noise` cross-validating logistic regression (5 folds,
    `filter_by: confident_learning`) on `rows` rows x 20 features, beside
    cleanlab on scikit-learn's 5-fold cross_val_predict of the same model
    (`../shared/bench/peers/label_noise.py`), which holds every row."""
    peer = os.path.join(ROOT, "..", "shared", "bench", "peers", "label_noise.py")
    beside(gigo, memory, f"label_noise, cross-validated logistic regression, {filter_by}", rows,
           "generate_cv", CV_PIPELINE.replace("confident_learning", filter_by),
           ["gigo ingest -> label_noise", "cleanlab + scikit-learn"],
           lambda data, work: [py, peer, data, "--filter-by", filter_by],
           "gigo cross-validates a stratified sample when the rows do not fit its budget, "
           "and writes every row with its verdict")


def shared_section(gigo, rows, budget, roomy):
    """Two `label_noise` stages cross-validating logistic regression (5 and
    3 folds) on the same `rows` rows, with two jobs: under `budget`, where
    each fits but the two together do not, so that one waits for the other;
    and under `roomy`, where they run side by side. Prints each run's time,
    peak RSS and the stages that waited for memory (from run.json)."""
    import json
    work = tempfile.mkdtemp(prefix="gigo-bench-", dir=os.environ.get("GIGO_BENCH_DIR"))
    try:
        data = os.path.join(work, "data.parquet")
        in_child("generate_cv", data, rows)
        print(f"shared budget: two cross-validating label_noise stages, {rows} rows "
              f"(file: {os.path.getsize(data) / 1e9:.2f} GB), --jobs 2")
        pipeline = os.path.join(work, "pipeline.yaml")
        with open(pipeline, "w") as f:
            f.write(SHARED_PIPELINE.format(data=data))
        for memory in [budget, roomy]:
            wall, rss, code = measure([gigo, "run", pipeline, "--memory", memory, "--jobs", "2",
                                       "-q", "--run-id", memory, "--force"], work)
            record = os.path.join(work, "runs", memory, "run.json")
            waits = []
            if code == 0:
                with open(record) as f:
                    stages = json.load(f)["stages"]
                waits = [f"{k} waited {v['memory_wait_ms'] / 1000:.1f} s"
                         for k, v in stages.items() if v.get("memory_wait_ms")]
            mark = "" if code == 0 else f" (exit {code})"
            print(f"  --memory {memory:<8} {wall:>8.1f} s {rss / 1e9:>6.2f} GB{mark}  "
                  f"{', '.join(waits) or 'no stage waited'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pretrain_section(gigo, rows, memory, held):
    """`pretrain` (denoising autoencoder, swap noise) for one epoch on
    `rows` rows x 20 float32 features, under `memory` (the rows stream from
    the store through the shuffle buffer) beside the same run under `held`
    (the encoded matrix is held): no peer pretrains tabular rows
    self-supervised among the pinned tools, so the two budgets are set side
    by side."""
    beside(gigo, memory, f"pretrain, one epoch, {COLUMNS} float32 features", rows,
           "generate_train", PRETRAIN_PIPELINE,
           ["gigo ingest -> pretrain, streamed", f"held (gigo --memory {held})"],
           lambda data, work: [gigo, "run", os.path.join(work, "pipeline.yaml"), "--memory",
                               held, "-q", "--run-id", "held", "--force"],
           "the same run holding the encoded matrix")


def jsonl_section(gigo, py, rows, memory):
    """`ingest -> profile -> export` of a JSON lines file (the rows of the
    profile section), beside DuckDB's SUMMARIZE of read_json on the same
    file (with DuckDB held to the same memory limit)."""
    beside(gigo, memory, "JSON lines: ingest -> profile -> export", rows, "generate_jsonl",
           JSONL_PIPELINE, ["gigo ingest -> profile -> export", "duckdb SUMMARIZE read_json"],
           lambda data, work: [py, "-c", DUCKDB_JSONL, data],
           "gigo reads the file twice (types, then rows) and writes it to its store",
           name="data.jsonl")


def main():
    sizes = [int(s) for s in os.environ.get("GIGO_BENCH_ROWS", "10000000").split(",") if s]
    memory = os.environ.get("GIGO_BENCH_MEMORY", "1GB")
    gigo = os.environ.get("GIGO_BIN", os.path.join(ROOT, "target/debug/gigo"))
    py = sys.executable
    print(f"bounded memory: ingest -> profile -> export, gigo --memory {memory}, 2 cores")
    print(f"{'rows':>12} {'tool':<28} {'seconds':>8} {'peak RSS':>10} {'vs DuckDB':>10}")
    for rows in sizes:
        base = os.environ.get("GIGO_BENCH_DIR")
        work = tempfile.mkdtemp(prefix="gigo-bench-memory-", dir=base)
        # polars' lazy describe spills to its temporary directory (55 GB at
        # 100M rows, left behind when it is killed): keep it in `work`.
        os.environ["POLARS_TEMP_DIR"] = work
        try:
            data = os.path.join(work, "data.parquet")
            t0 = time.monotonic()
            in_child("generate", data, rows)
            size = os.path.getsize(data)
            print(f"{rows:>12} (file: {size / 1e9:.2f} GB, generated in {time.monotonic() - t0:.0f} s)")
            pipeline = os.path.join(work, "pipeline.yaml")
            with open(pipeline, "w") as f:
                f.write(PIPELINE.format(data=data, out=os.path.join(work, "out.parquet")))
            results = []
            duck = measure([py, "-c", DUCKDB, data], work)
            results.append(("duckdb SUMMARIZE", duck))
            # polars' in-memory describe holds the whole table (about 390
            # bytes a row here, measured at 10M): skipped where that would
            # not fit in the memory this machine has free.
            polars = os.environ.get("GIGO_BENCH_POLARS", "1") != "0"
            if not polars:
                pass
            elif rows * EAGER_BYTES_PER_ROW < 0.8 * available_memory():
                results.append(("polars read().describe()", measure([py, "-c", POLARS_EAGER, data], work)))
            else:
                need = rows * EAGER_BYTES_PER_ROW / 1e9
                print(f"{'':>12} polars read().describe()     skipped: needs about {need:.0f} GB, "
                      f"{available_memory() / 1e9:.0f} GB available")
            if polars:
                results.append(("polars scan().describe()", measure([py, "-c", POLARS_LAZY, data], work)))
            g = measure([gigo, "run", pipeline, "--memory", memory, "-q", "--run-id", "r"], work)
            results.append(("gigo run (cold cache)", g))
            # The cache is what fills the disk: drop it before the next size.
            for name, (wall, rss, code) in results:
                ratio = wall / duck[0] if duck[0] > 0 else float("nan")
                mark = "" if code == 0 else f" (exit {code})"
                print(f"{'':>12} {name:<28} {wall:>8.1f} {rss / 1e9:>8.2f} GB {ratio:>9.2f}x{mark}")
            sys.stdout.flush()
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if os.environ.get("GIGO_BENCH_SMOTE", "1") != "0":
        smote_section(gigo, py)
    smote_rows = int(os.environ.get("GIGO_BENCH_SMOTE_ROWS", "10000000"))
    if smote_rows > 0:
        smote_scale_section(gigo, py, smote_rows, memory)
    clean_rows = int(os.environ.get("GIGO_BENCH_CLEAN_ROWS", "200000"))
    for method in os.environ.get("GIGO_BENCH_CLEAN_METHODS", "tomek,borderline_smote").split(","):
        if clean_rows > 0 and method:
            smote_scale_section(gigo, py, clean_rows, memory, method)
    ranked_rows = int(os.environ.get("GIGO_BENCH_RANKED_ROWS", "10000000"))
    if ranked_rows > 0:
        ranked_section(gigo, py, ranked_rows, memory)
    noise_rows = int(os.environ.get("GIGO_BENCH_NOISE_ROWS", "100000000"))
    if noise_rows > 0:
        noise_section(gigo, py, noise_rows, memory)
    cv_rows = int(os.environ.get("GIGO_BENCH_CV_ROWS", "10000000"))
    if cv_rows > 0:
        cv_section(gigo, py, cv_rows, memory,
                   os.environ.get("GIGO_BENCH_CV_FILTER", "confident_learning"))
    shared_rows = int(os.environ.get("GIGO_BENCH_SHARED_ROWS", "2000000"))
    if shared_rows > 0:
        shared_section(gigo, shared_rows, os.environ.get("GIGO_BENCH_SHARED_MEMORY", "3GB"),
                       "16GB")
    jsonl_rows = int(os.environ.get("GIGO_BENCH_JSONL_ROWS", "5000000"))
    if jsonl_rows > 0:
        jsonl_section(gigo, py, jsonl_rows, memory)
    pretrain_rows = int(os.environ.get("GIGO_BENCH_PRETRAIN_ROWS", "10000000"))
    if pretrain_rows > 0:
        pretrain_section(gigo, pretrain_rows, memory,
                         os.environ.get("GIGO_BENCH_PRETRAIN_HELD", "16GB"))
    train_rows = int(os.environ.get("GIGO_BENCH_TRAIN_ROWS", "50000000"))
    if train_rows > 0:
        train_section(gigo, py, train_rows, memory)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--generate"]:
        name, *rest = sys.argv[2:]
        globals()[name](*[int(a) if a.isdigit() else a for a in rest])
    else:
        main()

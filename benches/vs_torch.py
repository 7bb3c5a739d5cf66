#!/usr/bin/env python3
"""Benchmark: gigo's `train` stage against the same training loop in
PyTorch, on CPU, at 1 and 2 threads, side by side in one run. Prints
seconds (the training loop as each reports it, and the whole process) and
the ratio PyTorch / gigo (above 1: gigo is faster); asserts nothing.

- `mlp`: 784-256-256-10 (relu) on the 10,000 official MNIST test images
  (`../shared/datasets/mnist/mnist_test.parquet`), 10 epochs, batches of
  128, Adam (lr 0.001), cross-entropy: the issue's figure.
- `gru`, `lstm`, `tcn`, `transformer`: the sequence encoders on 256
  generated series of 256 steps (one channel; as `sequence_kinds.py`),
  2 epochs, batches of 32, width 32: a GRU / LSTM of 32 units; 4 residual
  blocks of two dilated causal convolutions (kernel 3, dilations 1, 2, 4,
  8); 2 pre-norm Transformer encoder layers (4 heads, feed-forward 64,
  class token); each with a linear head. PyTorch's are `nn.GRU`,
  `nn.LSTM`, `nn.Conv1d` and `nn.TransformerEncoder`.

gigo's threads are rayon's (`RAYON_NUM_THREADS`); PyTorch's
`torch.set_num_threads`. The PyTorch side needs a python with torch:
`GIGO_TORCH_PYTHON`, else `~/.cache/gigo-torch/bin/python` (a venv:
`python3 -m venv ~/.cache/gigo-torch && ~/.cache/gigo-torch/bin/pip
install torch numpy pyarrow`).

    cargo build --bin gigo
    python3 benches/vs_torch.py            # GIGO_BENCH_MODELS=mlp,gru,... GIGO_BENCH_THREADS=1,2
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIGO = os.environ.get("GIGO", os.path.join(ROOT, "target", "debug", "gigo"))
TORCH = os.environ.get(
    "GIGO_TORCH_PYTHON", os.path.expanduser("~/.cache/gigo-torch/bin/python")
)
MNIST = os.path.join(ROOT, "..", "shared", "datasets", "mnist", "mnist_test.parquet")
MODELS = os.environ.get("GIGO_BENCH_MODELS", "mlp,gru,lstm,tcn,transformer").split(",")
THREADS = [int(t) for t in os.environ.get("GIGO_BENCH_THREADS", "1,2").split(",")]
LENGTH, WIDTH = 256, 32

# model -> (gigo encoder, epochs, batch size, lr)
GIGO_ENCODERS = {
    "mlp": ("{kind: mlp, depth: 2, width: 256}", 10, 128),
    "gru": (f"{{kind: rnn, cell: gru, depth: 1, width: {WIDTH}}}", 2, 32),
    "lstm": (f"{{kind: rnn, cell: lstm, depth: 1, width: {WIDTH}}}", 2, 32),
    "tcn": (f"{{kind: tcn, depth: 4, width: {WIDTH}, kernel: 3}}", 2, 32),
    "transformer": (f"{{kind: transformer, depth: 2, width: {WIDTH}, heads: 4}}", 2, 32),
}

TORCH_SCRIPT = r"""
import sys, time, json
import numpy as np, torch, torch.nn as nn, pyarrow.parquet as pq
model, data, threads, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
torch.manual_seed(0)
t = pq.read_table(data)
cols = [c for c in t.column_names if c != "label"]
x = np.stack([t.column(c).to_numpy().astype(np.float32) for c in cols], axis=1)
x = (x - x.mean(0)) / (x.std(0) + 1e-6)
y = torch.tensor(t.column("label").to_numpy().astype(np.int64))
x = torch.tensor(x)
W = 32
K = int(y.max()) + 1
class Tcn(nn.Module):
    def __init__(s):
        super().__init__()
        s.inp = nn.Conv1d(1, W, 1)
        s.convs = nn.ModuleList()
        for i in range(4):
            d = 2 ** i
            s.convs.append(nn.ModuleList([nn.Conv1d(W, W, 3, dilation=d), nn.Conv1d(W, W, 3, dilation=d)]))
        s.head = nn.Linear(W, K)
    def forward(s, x):
        h = s.inp(x.unsqueeze(1))
        for i, (a, b) in enumerate(s.convs):
            d = 2 ** i
            z = torch.relu(a(nn.functional.pad(h, (2 * d, 0))))
            z = torch.relu(b(nn.functional.pad(z, (2 * d, 0))))
            h = h + z
        return s.head(h.mean(2))
class Rnn(nn.Module):
    def __init__(s, cell):
        super().__init__()
        s.rnn = cell(1, W, batch_first=True)
        s.head = nn.Linear(W, K)
    def forward(s, x):
        out, _ = s.rnn(x.unsqueeze(2))
        return s.head(out[:, -1])
class Attn(nn.Module):
    def __init__(s, length):
        super().__init__()
        s.inp = nn.Linear(1, W)
        s.cls = nn.Parameter(torch.zeros(1, 1, W))
        pos = torch.arange(length).unsqueeze(1) / (10000 ** (torch.arange(0, W, 2) / W))
        s.register_buffer("pos", torch.cat([pos.sin(), pos.cos()], 1))
        layer = nn.TransformerEncoderLayer(W, 4, 2 * W, dropout=0.0, batch_first=True, norm_first=True)
        s.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        s.head = nn.Linear(W, K)
    def forward(s, x):
        h = s.inp(x.unsqueeze(2)) + s.pos
        h = torch.cat([s.cls.expand(h.shape[0], 1, W), h], 1)
        return s.head(s.enc(h)[:, 0])
net = {
    "mlp": lambda: nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, K)),
    "gru": lambda: Rnn(nn.GRU), "lstm": lambda: Rnn(nn.LSTM), "tcn": Tcn,
    "transformer": lambda: Attn(x.shape[1]),
}[model]()
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
started = time.perf_counter()
for _ in range(epochs):
    order = torch.randperm(len(y))
    for i in range(0, len(y), batch):
        idx = order[i:i + batch]
        opt.zero_grad()
        loss = loss_fn(net(x[idx]), y[idx])
        loss.backward()
        opt.step()
print(json.dumps({"train_s": time.perf_counter() - started}))
"""


def timed(cmd, env, cwd):
    started = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return p.stdout, wall


def gigo(workdir, model, data, threads):
    encoder, epochs, batch = GIGO_ENCODERS[model]
    yaml = os.path.join(workdir, f"{model}.yaml")
    with open(yaml, "w") as f:
        f.write(
            f"name: vs_torch\nseed: 0\nstages:\n  d:\n    type: ingest\n    path: {data}\n"
            f"    label: label\n  train:\n    type: train\n    inputs: d\n"
            f"    encoder: {encoder}\n    epochs: {epochs}\n    batch_size: {batch}\n"
            f"    lr: 0.001\n"
        )
    run_id = f"{model}_{threads}"
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MATMUL_NUM_THREADS": str(threads)}
    _, wall = timed([GIGO, "run", yaml, "--run-id", run_id, "--force"], env, workdir)
    with open(os.path.join(workdir, "runs", run_id, "run.json")) as f:
        messages = json.dumps(json.load(f)["stages"]["train"].get("messages", []))
    m = re.search(r"trained \d+ epochs \(\d+ updates\) on \d+ rows in ([0-9.]+) s", messages)
    return float(m.group(1)) if m else float("nan"), wall


def torch(workdir, model, data, threads):
    _, epochs, batch = GIGO_ENCODERS[model]
    script = os.path.join(workdir, "torch_train.py")
    with open(script, "w") as f:
        f.write(TORCH_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out, wall = timed(
        [TORCH, script, model, data, str(threads), str(epochs), str(batch)], env, workdir
    )
    return json.loads(out.strip().splitlines()[-1])["train_s"], wall


def main():
    if not os.path.exists(GIGO):
        sys.exit(f"no gigo binary at {GIGO}: cargo build --bin gigo")
    if not os.path.exists(TORCH):
        sys.exit(f"no python with torch at {TORCH}: see this script's docstring")
    tmp = tempfile.TemporaryDirectory(dir=os.environ.get("GIGO_BENCH_DIR"))
    workdir = tmp.name
    series = os.path.join(workdir, "series.parquet")
    # the generated series of sequence_kinds.py (256 of them)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import sequence_kinds

    sequence_kinds.series_file(series, LENGTH)
    print(f"{os.cpu_count()} cores; seconds: training loop (whole process)")
    print(f"{'model':<12} {'threads':>7} {'gigo':>16} {'pytorch':>16} {'ratio':>6}")
    results = []
    for model in MODELS:
        data = os.path.abspath(MNIST) if model == "mlp" else series
        for threads in THREADS:
            g, gw = gigo(workdir, model, data, threads)
            t, tw = torch(workdir, model, data, threads)
            results.append(
                {"model": model, "threads": threads, "gigo_train_s": g, "gigo_wall_s": gw,
                 "torch_train_s": t, "torch_wall_s": tw, "ratio": t / g, "wall_ratio": tw / gw}
            )
            print(
                f"{model:<12} {threads:>7} {g:>7.2f} ({gw:>6.2f}) {t:>7.2f} ({tw:>6.2f}) "
                f"{t / g:>6.2f}",
                flush=True,
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()

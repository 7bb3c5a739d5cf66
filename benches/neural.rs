//! Training throughput of an MLP 784-256-256-10 (relu), batch 128, Adam
//! (lr 1e-3), cross-entropy, on CPU: burn as gigo-neural drives it (a bare
//! loop, and gigo's full training loop with its per-step gradient norms and
//! per-epoch records), and PyTorch on the same network if a PyTorch venv
//! exists (`~/.cache/gigo-torch`, or the python named by `GIGO_TORCH_PYTHON`).
//!
//! `cargo bench --bench neural` prints samples/s and the ratio to PyTorch.
//! `GIGO_BENCH_SECONDS` sets the measuring time per variant (default 8).
//! Single-threaded comparison: `RAYON_NUM_THREADS=1 MATMUL_NUM_THREADS=1
//! GIGO_TORCH_THREADS=1 cargo bench --bench neural`. On a loaded machine
//! PyTorch's OpenMP threads suffer far more from oversubscription than
//! burn's rayon pool: compare on an idle machine, or single-threaded.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use gigo_neural::burn::optim::{AdamConfig, GradientsParams};
use gigo_neural::burn::tensor::{Tensor, TensorData};
use gigo_neural::config::{BatchSize, EncoderParams, EncoderSpec};
use gigo_neural::fit::{EncoderInit, TrainSet, fit};
use gigo_neural::loss::LossSpec;
use gigo_neural::net::{ClassifierNet, Encoder, linear};
use gigo_neural::train::TrainParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 128;
const ROWS: usize = 128 * 40;

fn seconds() -> f64 {
    std::env::var("GIGO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8.0)
}

fn data() -> (Vec<f32>, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x = (0..ROWS * 784)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let y = (0..ROWS).map(|_| rng.random_range(0..10u32)).collect();
    (x, y)
}

fn spec() -> EncoderSpec {
    let p = EncoderParams {
        depth: 2,
        width: 256,
        ..EncoderParams::default()
    };
    EncoderSpec::new(p, 784).expect("valid spec")
}

/// The bare burn loop: forward, loss, backward, Adam step.
fn burn_bare(x: &[f32], y: &[u32]) -> f64 {
    let device = gigo_neural::backend::training_device();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut net = ClassifierNet {
        encoder: Encoder::new(&spec(), &device, &mut rng),
        head: linear(256, 10, &device, &mut rng),
    };
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let loss = LossSpec::cross_entropy();
    let batches: Vec<(Tensor<2>, Tensor<2>, Tensor<1>)> = (0..ROWS / BATCH)
        .map(|b| {
            let xb = x[b * BATCH * 784..(b + 1) * BATCH * 784].to_vec();
            let mut q = vec![0.0f32; BATCH * 10];
            for i in 0..BATCH {
                q[i * 10 + y[b * BATCH + i] as usize] = 1.0;
            }
            (
                Tensor::from_data(TensorData::new(xb, [BATCH, 784]), &device),
                Tensor::from_data(TensorData::new(q, [BATCH, 10]), &device),
                Tensor::from_data(
                    TensorData::new(vec![1.0 / BATCH as f32; BATCH], [BATCH]),
                    &device,
                ),
            )
        })
        .collect();
    let budget = seconds();
    let mut step = |net: ClassifierNet, i: usize| {
        let (xb, q, w) = &batches[i % batches.len()];
        let l = loss.weighted(net.forward(xb.clone(), None), q.clone(), w.clone());
        let grads = GradientsParams::from_grads(l.backward(), &net);
        optim.step(1e-3, net, grads)
    };
    for i in 0..5 {
        net = step(net, i); // warm-up
    }
    let start = Instant::now();
    let mut steps = 0;
    while start.elapsed().as_secs_f64() < budget {
        net = step(net, steps);
        steps += 1;
    }
    let _ = net;
    (steps * BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// gigo's training loop (shuffling, per-step gradient norms, per-epoch records).
fn burn_gigo(x: &[f32], y: &[u32]) -> f64 {
    let m = gigo_neural::Matrix::new(ROWS, 784, x.to_vec());
    let p = TrainParams {
        epochs: 1,
        batch_size: BatchSize::Rows(BATCH),
        ..TrainParams::default()
    };
    let run = |epochs: usize| {
        let p = TrainParams {
            epochs,
            ..p.clone()
        };
        let (_, r) = fit(
            &p.settings(),
            EncoderInit::Fresh(spec()),
            10,
            &[1.0; 10],
            &mut TrainSet { x: &m, y, w: None },
            None,
            1,
            &mut |_| {},
        )
        .expect("training runs");
        r
    };
    run(1); // warm-up
    let t = Instant::now();
    let mut rows = 0;
    while t.elapsed().as_secs_f64() < seconds() {
        let r = run(1);
        rows += r.updates * BATCH;
    }
    rows as f64 / t.elapsed().as_secs_f64()
}

const TORCH: &str = r#"
import json, sys, time, torch
torch.manual_seed(0)
seconds = float(sys.argv[1])
if len(sys.argv) > 2 and int(sys.argv[2]) > 0:
    torch.set_num_threads(int(sys.argv[2]))
net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                          torch.nn.Linear(256, 256), torch.nn.ReLU(),
                          torch.nn.Linear(256, 10))
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
rows = 128 * 40
x = torch.rand(rows, 784) * 2 - 1
y = torch.randint(0, 10, (rows,))
loss_fn = torch.nn.CrossEntropyLoss()
def step(i):
    b = i % 40
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(net(x[b*128:(b+1)*128]), y[b*128:(b+1)*128])
    loss.backward()
    opt.step()
for i in range(5): step(i)
t = time.perf_counter(); n = 0
while time.perf_counter() - t < seconds:
    step(n); n += 1
el = time.perf_counter() - t
print(json.dumps({"samples_per_s": n * 128 / el, "torch": torch.__version__, "threads": torch.get_num_threads()}))
"#;

fn torch_python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("GIGO_TORCH_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join(".cache/gigo-torch/bin/python");
    p.is_file().then_some(p)
}

fn torch() -> Result<(f64, String), String> {
    let python = torch_python().ok_or(
        "no PyTorch venv at ~/.cache/gigo-torch (python -m venv ~/.cache/gigo-torch && \
         ~/.cache/gigo-torch/bin/pip install torch)",
    )?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(TORCH)
        .arg(seconds().to_string())
        .arg(std::env::var("GIGO_TORCH_THREADS").unwrap_or_else(|_| "0".into()))
        .output()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "PyTorch failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("PyTorch output: {e}"))?;
    Ok((
        v["samples_per_s"].as_f64().unwrap_or(0.0),
        format!("torch {} ({} threads)", v["torch"], v["threads"]),
    ))
}

fn main() {
    let (x, y) = data();
    println!(
        "MLP 784-256-256-10 (relu), batch {BATCH}, Adam, CPU, {} s per variant; backend {}",
        seconds(),
        gigo_neural::backend::backend_name()
    );
    let bare = burn_bare(&x, &y);
    println!(
        "burn, bare loop:          {bare:>9.0} samples/s ({:.0} steps/s)",
        bare / BATCH as f64
    );
    let gigo = burn_gigo(&x, &y);
    println!(
        "burn, gigo training loop: {gigo:>9.0} samples/s ({:.0} steps/s)",
        gigo / BATCH as f64
    );
    match torch() {
        Ok((t, version)) => {
            println!(
                "PyTorch, same MLP:        {t:>9.0} samples/s ({:.0} steps/s), {version}",
                t / BATCH as f64
            );
            println!(
                "ratio burn/PyTorch: bare {:.2}x, gigo loop {:.2}x",
                bare / t,
                gigo / t
            );
        }
        Err(why) => println!("PyTorch: not measured: {why}"),
    }
}

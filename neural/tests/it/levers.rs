//! Each lever does what it says, on tiny data: clipping bounds the norm, L1
//! drives weights to zero, dropout is off at inference, batch size sets the
//! number of updates, early stopping stops and restores, a frozen encoder
//! stays frozen; the diagnoses fire on the nets built to trigger them and not
//! on their fixed versions; same seed, same weights.

use gigo_ml::Matrix;
use gigo_neural::config::{
    Activation, BatchSize, EarlyStopping, EncoderParams, EncoderSpec, FullBatch, LossKind, Norm,
    OptimizerKind, Schedule, StopMetric,
};
use gigo_neural::diagnose::{Baseline, Diagnosis, Thresholds, diagnose};
use gigo_neural::fit::{EncoderInit, EvalRows, EvalSet, FitReport, Fitted, TrainSet, fit};
use gigo_neural::ssl::{Method, Noise, embed, pretrain};
use gigo_neural::train::TrainParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` rows: `informative` features whose sum decides the class (two
/// classes), then `noise` pure-noise features; `flip` of the labels flipped.
fn data(n: usize, informative: usize, noise: usize, flip: f64, seed: u64) -> (Matrix, Vec<u32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = informative + noise;
    let mut x = Vec::with_capacity(n * d);
    let mut y = Vec::with_capacity(n);
    for _ in 0..n {
        let row: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let s: f32 = row[..informative].iter().sum();
        let mut label = u32::from(s > 0.0);
        if rng.random::<f64>() < flip {
            label = 1 - label;
        }
        x.extend(row);
        y.push(label);
    }
    (Matrix::new(n, d, x), y)
}

fn encoder(depth: usize, width: usize) -> EncoderParams {
    EncoderParams {
        depth,
        width,
        ..EncoderParams::default()
    }
}

fn train(
    p: &TrainParams,
    x: &Matrix,
    y: &[u32],
    valid: Option<(&Matrix, &[u32])>,
    seed: u64,
) -> (Fitted, FitReport) {
    let spec = EncoderSpec::new(p.encoder.clone().unwrap_or_default(), x.cols).unwrap();
    let vy: Option<Vec<Option<u32>>> = valid.map(|(_, y)| y.iter().map(|&l| Some(l)).collect());
    let mut vset = valid.map(|(vx, _)| EvalSet {
        x: vx,
        y: vy.as_deref().unwrap(),
        w: None,
    });
    fit(
        &p.settings(),
        EncoderInit::Fresh(spec),
        2,
        &[1.0, 1.0],
        &mut TrainSet { x, y, w: None },
        vset.as_mut().map(|v| v as &mut dyn EvalRows),
        seed,
        &mut |_| {},
    )
    .unwrap()
}

fn verdicts(r: &FitReport, y: &[u32]) -> Vec<Diagnosis> {
    diagnose(
        &r.history,
        Some(Baseline::of(y, 2, true)),
        r.kept_epoch,
        &Thresholds::default(),
    )
}

fn kinds(d: &[Diagnosis]) -> Vec<&'static str> {
    d.iter().map(|d| d.kind).collect()
}

#[test]
fn clipping_by_norm_bounds_every_step() {
    let (x, y) = data(64, 4, 4, 0.0, 1);
    let p = TrainParams {
        encoder: Some(encoder(2, 32)),
        epochs: 3,
        batch_size: BatchSize::Rows(16),
        optimizer: OptimizerKind::Sgd,
        lr: 0.5,
        clip_norm: Some(0.05),
        ..TrainParams::default()
    };
    let (_, r) = train(&p, &x, &y, None, 3);
    for e in &r.history.epochs {
        assert!(e.grad_norm_max > 0.05, "the raw gradient exceeds the bound");
        assert!(
            e.clipped_norm_max <= 0.05 * (1.0 + 1e-4),
            "epoch {}: clipped {} > 0.05",
            e.epoch,
            e.clipped_norm_max
        );
    }
    // by value: every element within the bound, so the norm is at most v * sqrt(#params)
    let p = TrainParams {
        clip_norm: None,
        clip_value: Some(1e-3),
        ..p
    };
    let (_, r) = train(&p, &x, &y, None, 3);
    let bound = 1e-3 * (r.parameters as f64).sqrt();
    for e in &r.history.epochs {
        assert!(e.clipped_norm_max <= bound * (1.0 + 1e-4));
        assert!(e.clipped_norm_max < e.grad_norm_max);
    }
}

#[test]
fn l1_drives_the_weights_of_useless_inputs_to_zero() {
    // 2 informative inputs, 8 noise inputs; a one-layer encoder
    let (x, y) = data(200, 2, 8, 0.0, 2);
    let base = TrainParams {
        encoder: Some(encoder(1, 8)),
        epochs: 60,
        batch_size: BatchSize::Rows(50),
        optimizer: OptimizerKind::Sgd,
        lr: 0.1,
        ..TrainParams::default()
    };
    let noise_weights = |l1: f64| -> (f64, f64) {
        let (f, _) = train(&TrainParams { l1, ..base.clone() }, &x, &y, None, 5);
        // the first tensor is the first layer's weight [inputs, width]
        let (shape, w) = &f.weights.tensors[0];
        assert_eq!(shape, &vec![10, 8]);
        let noise: Vec<f64> = w[2 * 8..].iter().map(|v| v.abs() as f64).collect();
        let mean = noise.iter().sum::<f64>() / noise.len() as f64;
        let near_zero = noise.iter().filter(|v| **v < 1e-2).count() as f64 / noise.len() as f64;
        (mean, near_zero)
    };
    let (mean0, zero0) = noise_weights(0.0);
    let (mean1, zero1) = noise_weights(0.01);
    assert!(
        mean1 < 0.1 * mean0,
        "L1 should shrink useless weights: mean |w| {mean1} vs {mean0} without"
    );
    assert!(
        zero1 > 0.8 && zero0 < 0.2,
        "share of useless weights below 0.01: {zero1} with L1, {zero0} without"
    );
}

#[test]
fn dropout_is_off_at_inference() {
    let (x, y) = data(100, 4, 4, 0.0, 3);
    let p = TrainParams {
        encoder: Some(EncoderParams {
            dropout: 0.5,
            ..encoder(2, 32)
        }),
        epochs: 5,
        ..TrainParams::default()
    };
    let (f, _) = train(&p, &x, &y, None, 4);
    let a = f.predict_proba(&x).unwrap();
    assert_eq!(
        a,
        f.predict_proba(&x).unwrap(),
        "inference is deterministic"
    );
    // the same weights in a network without dropout give the same outputs
    let mut no_dropout = f.clone();
    no_dropout.spec.params.dropout = 0.0;
    assert_eq!(a, no_dropout.predict_proba(&x).unwrap());
    // while training, dropout does change the outputs (the training loss is
    // noisier than a dropout-free run's on the same data and seed)
    let net = f.net().unwrap();
    let device = gigo_neural::net::device_of(&net);
    let rows: Vec<usize> = (0..x.rows).collect();
    let t = gigo_neural::fit::rows_tensor(&x, &rows, &device);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let train_mode = net
        .forward(t.clone(), Some(&mut rng))
        .try_into_vec_as::<f32>()
        .unwrap();
    let eval_mode = net.forward(t, None).try_into_vec_as::<f32>().unwrap();
    assert_ne!(train_mode, eval_mode);
}

#[test]
fn batch_size_sets_the_number_of_updates() {
    let (x, y) = data(37, 2, 2, 0.0, 4);
    let run = |bs: BatchSize| {
        let p = TrainParams {
            encoder: Some(encoder(1, 8)),
            epochs: 3,
            batch_size: bs,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            ..TrainParams::default()
        };
        train(&p, &x, &y, None, 1).1
    };
    let online = run(BatchSize::Rows(1));
    assert_eq!(online.updates, 3 * 37, "batch size 1: one update per row");
    assert!(online.history.epochs.iter().all(|e| e.steps == 37));
    assert_eq!(run(BatchSize::Named(FullBatch::Full)).updates, 3);
    assert_eq!(run(BatchSize::Rows(10)).updates, 3 * 4);
}

#[test]
fn deep_sigmoid_net_vanishes_and_skips_with_normalisation_cure_it() {
    let (x, y) = data(256, 4, 4, 0.0, 5);
    let deep = |residual: bool, norm: Norm| TrainParams {
        encoder: Some(EncoderParams {
            depth: 12,
            width: 32,
            activation: Activation::Sigmoid,
            residual,
            norm,
            ..EncoderParams::default()
        }),
        epochs: 4,
        batch_size: BatchSize::Rows(64),
        optimizer: OptimizerKind::Sgd,
        lr: 0.1,
        ..TrainParams::default()
    };
    let (_, plain) = train(&deep(false, Norm::None), &x, &y, None, 6);
    let d = verdicts(&plain, &y);
    assert!(kinds(&d).contains(&"vanishing_gradients"), "{d:?}");
    let ratio = d
        .iter()
        .find(|d| d.kind == "vanishing_gradients")
        .unwrap()
        .evidence["ratio_first_to_largest"]
        .as_f64()
        .unwrap();
    assert!(ratio < 1e-3);
    let (_, fixed) = train(&deep(true, Norm::Layer), &x, &y, None, 6);
    let d = verdicts(&fixed, &y);
    assert!(!kinds(&d).contains(&"vanishing_gradients"), "{d:?}");
    // among the hidden layers, the first now gets a gradient of the same
    // order as the others (the plain net's is orders of magnitude smaller)
    let first_to_max = |r: &FitReport| {
        let n = &r.history.epochs[0].grad_norms;
        let hidden = &n[..n.len() - 1];
        hidden[0] / hidden.iter().copied().fold(0.0, f64::max)
    };
    assert!(
        first_to_max(&fixed) > 0.05,
        "{:?}",
        fixed.history.epochs[0].grad_norms
    );
    assert!(
        first_to_max(&plain) < 1e-3,
        "{:?}",
        plain.history.epochs[0].grad_norms
    );
}

#[test]
fn an_overparameterised_net_on_50_rows_overfits_and_early_stopping_catches_it() {
    let (x, y) = data(50, 3, 17, 0.2, 6);
    let (vx, vy) = data(400, 3, 17, 0.2, 7);
    let p = TrainParams {
        encoder: Some(encoder(3, 256)),
        epochs: 150,
        batch_size: BatchSize::Named(FullBatch::Full),
        lr: 1e-3,
        ..TrainParams::default()
    };
    let (_, r) = train(&p, &x, &y, Some((&vx, &vy)), 8);
    let d = verdicts(&r, &y);
    assert_eq!(kinds(&d), vec!["overfitting"], "{d:?}");
    let last = r.history.epochs.last().unwrap();
    assert!(
        last.train_accuracy.unwrap() > 0.99,
        "it memorises the 50 rows"
    );
    // early stopping stops well before the end and keeps the best epoch
    let p = TrainParams {
        early_stopping: Some(EarlyStopping {
            metric: StopMetric::ValidLoss,
            patience: 5,
            min_delta: 0.0,
            restore_best: true,
        }),
        ..p
    };
    let (f, r) = train(&p, &x, &y, Some((&vx, &vy)), 8);
    assert!(r.stopped_early);
    let kept = r.kept_epoch.unwrap();
    assert_eq!(r.history.epochs.len(), kept + 5);
    let best = r
        .history
        .epochs
        .iter()
        .map(|e| e.valid_loss.unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(r.history.epochs[kept - 1].valid_loss.unwrap(), best);
    // the kept weights score the best epoch's validation accuracy
    let probs = f.predict_proba(&vx).unwrap();
    let acc = probs
        .iter_rows()
        .zip(&vy)
        .filter(|(p, y)| gigo_neural::data::argmax(p) == **y as usize)
        .count() as f64
        / vy.len() as f64;
    assert!((acc - r.history.epochs[kept - 1].valid_accuracy.unwrap()).abs() < 1e-9);
}

#[test]
fn a_small_net_trained_long_enough_is_not_underfitting_but_one_step_is() {
    let (x, y) = data(200, 2, 0, 0.0, 9);
    let p = TrainParams {
        encoder: Some(encoder(1, 16)),
        epochs: 40,
        lr: 0.01,
        batch_size: BatchSize::Rows(20),
        ..TrainParams::default()
    };
    let (_, r) = train(&p, &x, &y, None, 2);
    assert!(verdicts(&r, &y).is_empty(), "{:?}", verdicts(&r, &y));
    assert!(r.history.epochs.last().unwrap().train_accuracy.unwrap() > 0.9);
    let p = TrainParams {
        epochs: 1,
        lr: 1e-5,
        batch_size: BatchSize::Named(FullBatch::Full),
        ..p
    };
    let (_, r) = train(&p, &x, &y, None, 2);
    assert_eq!(kinds(&verdicts(&r, &y)), vec!["underfitting"]);
}

#[test]
fn a_huge_learning_rate_explodes() {
    let (mut x, y) = data(64, 4, 4, 0.0, 10);
    for v in &mut x.data {
        *v *= 100.0;
    }
    let p = TrainParams {
        encoder: Some(encoder(4, 64)),
        epochs: 5,
        optimizer: OptimizerKind::Sgd,
        lr: 10.0,
        batch_size: BatchSize::Rows(8),
        ..TrainParams::default()
    };
    let (_, r) = train(&p, &x, &y, None, 1);
    let d = verdicts(&r, &y);
    assert!(kinds(&d).contains(&"exploding_gradients"), "{d:?}");
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let (x, y) = data(80, 3, 3, 0.1, 11);
    let p = TrainParams {
        encoder: Some(EncoderParams {
            dropout: 0.2,
            norm: Norm::Batch,
            ..encoder(2, 16)
        }),
        epochs: 3,
        batch_size: BatchSize::Rows(16),
        ..TrainParams::default()
    };
    let a = train(&p, &x, &y, None, 42).0.weights;
    let b = train(&p, &x, &y, None, 42).0.weights;
    let c = train(&p, &x, &y, None, 43).0.weights;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn every_optimizer_schedule_and_loss_learns() {
    let (x, y) = data(200, 2, 2, 0.0, 12);
    let base = TrainParams {
        encoder: Some(encoder(2, 16)),
        epochs: 30,
        batch_size: BatchSize::Rows(32),
        lr: 0.01,
        ..TrainParams::default()
    };
    let variants = vec![
        TrainParams {
            optimizer: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: Some(0.9),
            nesterov: Some(true),
            ..base.clone()
        },
        TrainParams {
            optimizer: OptimizerKind::Adamw,
            schedule: Schedule::Cosine { min_factor: 0.0 },
            warmup_epochs: 2.0,
            ..base.clone()
        },
        TrainParams {
            schedule: Schedule::Step {
                every: 10,
                gamma: 0.5,
            },
            loss: LossKind::Focal,
            ..base.clone()
        },
        TrainParams {
            loss: LossKind::Gce,
            lr: 0.03,
            ..base.clone()
        },
        TrainParams {
            loss: LossKind::Sce,
            ..base.clone()
        },
        TrainParams {
            label_smoothing: 0.1,
            l2: 1e-3,
            ..base.clone()
        },
    ];
    for p in variants {
        let (_, r) = train(&p, &x, &y, None, 3);
        let acc = r.history.epochs.last().unwrap().train_accuracy.unwrap();
        assert!(
            acc > 0.9,
            "{:?} / {:?}: accuracy {acc}",
            p.optimizer,
            p.loss
        );
    }
    // the step schedule halves the rate every 10 epochs
    let p = TrainParams {
        schedule: Schedule::Step {
            every: 10,
            gamma: 0.5,
        },
        ..base
    };
    let (_, r) = train(&p, &x, &y, None, 3);
    let lrs: Vec<f64> = r.history.epochs.iter().map(|e| e.lr).collect();
    assert_eq!((lrs[0], lrs[10], lrs[29]), (0.01, 0.005, 0.0025));
}

#[test]
fn zero_sample_weights_silence_rows_and_class_weights_shift_predictions() {
    // half the rows carry flipped labels but weight 0: the model follows the rest
    let (x, y) = data(200, 2, 0, 0.0, 13);
    let mut y_bad = y.clone();
    let mut w = vec![1.0f32; 200];
    for i in (0..200).step_by(2) {
        y_bad[i] = 1 - y_bad[i];
        w[i] = 0.0;
    }
    let p = TrainParams {
        encoder: Some(encoder(1, 16)),
        epochs: 40,
        lr: 0.01,
        batch_size: BatchSize::Rows(20),
        ..TrainParams::default()
    };
    let spec = EncoderSpec::new(p.encoder.clone().unwrap(), 2).unwrap();
    let (f, _) = fit(
        &p.settings(),
        EncoderInit::Fresh(spec.clone()),
        2,
        &[1.0, 1.0],
        &mut TrainSet {
            x: &x,
            y: &y_bad,
            w: Some(&w),
        },
        None,
        1,
        &mut |_| {},
    )
    .unwrap();
    let probs = f.predict_proba(&x).unwrap();
    let agree = probs
        .iter_rows()
        .zip(&y)
        .filter(|(p, y)| gigo_neural::data::argmax(p) == **y as usize)
        .count();
    assert!(agree > 180, "{agree} of 200 follow the weighted rows");
    // a heavy class weight pulls predictions towards that class
    let share_of_1 = |cw: [f32; 2]| {
        let (f, _) = fit(
            &p.settings(),
            EncoderInit::Fresh(spec.clone()),
            2,
            &cw,
            &mut TrainSet {
                x: &x,
                y: &y,
                w: None,
            },
            None,
            1,
            &mut |_| {},
        )
        .unwrap();
        let probs = f.predict_proba(&x).unwrap();
        probs.iter_rows().filter(|p| p[1] > p[0]).count()
    };
    assert!(share_of_1([1.0, 20.0]) > share_of_1([1.0, 1.0]) + 10);
}

#[test]
fn a_frozen_pretrained_encoder_stays_put_and_a_trainable_one_moves() {
    let (x, y) = data(200, 3, 3, 0.0, 14);
    let spec = EncoderSpec::new(encoder(2, 16), x.cols).unwrap();
    let settings = gigo_neural::pretrain::PretrainParams {
        encoder: encoder(2, 16),
        epochs: 3,
        ..Default::default()
    }
    .settings();
    let (enc_w, _) = pretrain(&settings, &spec, &x, 1, &mut |_| {}).unwrap();
    let run = |freeze: bool, encoder_lr: Option<f64>| {
        let p = TrainParams {
            epochs: 5,
            freeze_encoder: freeze,
            encoder_lr,
            ..TrainParams::default()
        };
        let (f, _) = fit(
            &p.settings(),
            EncoderInit::Pretrained {
                spec: spec.clone(),
                weights: &enc_w,
            },
            2,
            &[1.0, 1.0],
            &mut TrainSet {
                x: &x,
                y: &y,
                w: None,
            },
            None,
            2,
            &mut |_| {},
        )
        .unwrap();
        let n = enc_w.tensors.len();
        let moved: f64 = f.weights.tensors[..n]
            .iter()
            .zip(&enc_w.tensors)
            .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(a, b)| (a - b).abs() as f64))
            .sum();
        moved
    };
    assert_eq!(run(true, None), 0.0, "frozen encoder unchanged");
    let full = run(false, None);
    let slow = run(false, Some(1e-5));
    assert!(full > 0.0 && slow > 0.0);
    assert!(
        slow < 0.1 * full,
        "a smaller encoder lr moves it less: {slow} vs {full}"
    );
}

#[test]
fn every_pretraining_method_lowers_its_loss_and_embeds_every_row() {
    // rows on a low-dimensional structure: feature j = a * u_j + b * v_j
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let (n, d) = (300, 12);
    let u: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut data = Vec::new();
    for _ in 0..n {
        let (a, b): (f32, f32) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
        data.extend((0..d).map(|j| a * u[j] + b * v[j] + 0.05 * rng.random_range(-1.0f32..1.0)));
    }
    let x = Matrix::new(n, d, data);
    let spec = EncoderSpec::new(encoder(2, 16), d).unwrap();
    for (method, noise) in [
        (Method::Dae, Noise::Gaussian),
        (Method::Dae, Noise::Swap),
        (Method::Vime, Noise::Swap),
        (Method::Scarf, Noise::Swap),
    ] {
        let s = gigo_neural::pretrain::PretrainParams {
            method,
            noise: (method == Method::Dae).then_some(noise),
            encoder: encoder(2, 16),
            epochs: 15,
            batch_size: BatchSize::Rows(32),
            ..Default::default()
        }
        .settings();
        let (w, r) = pretrain(&s, &spec, &x, 3, &mut |_| {}).unwrap();
        let first = r.history.epochs[0].train_loss;
        let last = r.history.epochs.last().unwrap().train_loss;
        assert!(
            last < 0.8 * first,
            "{method:?}/{noise:?}: loss {first} -> {last}"
        );
        if method == Method::Vime {
            assert!(r.history.epochs[0].components.contains_key("mask"));
        }
        let e = embed(&spec, &w, &x).unwrap();
        assert_eq!((e.rows, e.cols), (n, 16));
        assert!(e.is_finite());
        let (w2, _) = pretrain(&s, &spec, &x, 3, &mut |_| {}).unwrap();
        assert_eq!(w, w2, "{method:?}: same seed, same encoder");
    }
}

/// Sine waves of random phase and frequency: the next step is predictable
/// from the steps before it, a masked one from both sides.
#[test]
fn next_step_and_masked_pretraining_lower_their_loss_on_sequences() {
    use gigo_neural::config::{EncoderKind, SequenceShape};
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let (n, length) = (128, 24);
    let mut data = Vec::new();
    for i in 0..n {
        let (phase, freq): (f32, f32) = (
            rng.random_range(0.0..std::f32::consts::TAU),
            rng.random_range(0.2..0.6),
        );
        for t in 0..length {
            // a few missing steps, which the loss leaves out
            let missing = (i * 7 + t) % 29 == 0;
            data.push(match missing {
                true => f32::NAN,
                false => (phase + freq * t as f32).sin(),
            });
        }
    }
    let x = Matrix::new(n, length, data);
    let sequence = Some(SequenceShape::one_channel(length));
    // (attention takes longest to find the neighbours of a masked step:
    // its loss sits at the variance for about 15 epochs, then falls)
    for (method, kind, causal, epochs) in [
        (Method::NextStep, EncoderKind::Tcn, false, 15),
        (Method::NextStep, EncoderKind::Transformer, true, 15),
        (Method::NextStep, EncoderKind::Rnn, false, 15),
        (Method::Masked, EncoderKind::Rnn, false, 15),
        (Method::Masked, EncoderKind::Transformer, false, 50),
    ] {
        let mut enc = encoder(2, 16);
        enc.kind = kind;
        enc.causal = causal;
        enc.bidirectional = method == Method::Masked && kind == EncoderKind::Rnn;
        enc.sequence = sequence;
        let params = gigo_neural::pretrain::PretrainParams {
            method,
            encoder: enc.clone(),
            epochs,
            lr: 0.003,
            batch_size: BatchSize::Rows(16),
            ..Default::default()
        };
        assert!(params.check().is_ok(), "{method:?} / {kind:?}");
        let spec = EncoderSpec::new(enc, length).unwrap();
        let (w, r) = pretrain(&params.settings(), &spec, &x, 3, &mut |_| {}).unwrap();
        let first = r.history.epochs[0].train_loss;
        let last = r.history.epochs.last().unwrap().train_loss;
        assert!(
            last.is_finite() && last < 0.5 * first,
            "{method:?} / {kind:?}: loss {first} -> {last}"
        );
        let e = embed(&spec, &w, &x).unwrap();
        assert!(e.is_finite(), "{method:?} / {kind:?}");
    }
    // next_step refuses an encoder that sees the future; both refuse an MLP
    for (kind, bidirectional, method) in [
        (EncoderKind::Transformer, false, Method::NextStep),
        (EncoderKind::Rnn, true, Method::NextStep),
        (EncoderKind::Mlp, false, Method::Masked),
    ] {
        let mut enc = encoder(2, 16);
        enc.kind = kind;
        enc.bidirectional = bidirectional;
        let params = gigo_neural::pretrain::PretrainParams {
            method,
            encoder: enc,
            ..Default::default()
        };
        let problems = params.check().unwrap_err();
        assert!(
            problems.iter().any(|p| p.path == ["method"]),
            "{kind:?}: {problems:?}"
        );
    }
}

#[test]
fn a_cnn_encoder_trains_on_image_shaped_rows() {
    // 8x8 "images": class 1 has a bright left half
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    let (n, side) = (120, 8);
    let mut data = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 2) as u32;
        for _r in 0..side {
            for col in 0..side {
                let base = if c == 1 && col < side / 2 { 1.0 } else { 0.0 };
                data.push(base + 0.3 * rng.random_range(-1.0f32..1.0));
            }
        }
        y.push(c);
    }
    let x = Matrix::new(n, side * side, data);
    let p = TrainParams {
        encoder: Some(EncoderParams {
            kind: gigo_neural::config::EncoderKind::Cnn,
            image: Some([side, side]),
            channels: Some(vec![4, 8]),
            depth: 1,
            width: 16,
            ..EncoderParams::default()
        }),
        epochs: 10,
        lr: 0.01,
        batch_size: BatchSize::Rows(16),
        ..TrainParams::default()
    };
    let (f, r) = train(&p, &x, &y, None, 4);
    assert_eq!(r.history.layers, vec!["conv1", "conv2", "layer1", "head"]);
    let probs = f.predict_proba(&x).unwrap();
    let acc = probs
        .iter_rows()
        .zip(&y)
        .filter(|(p, y)| gigo_neural::data::argmax(p) == **y as usize)
        .count();
    assert!(acc > 110, "{acc} of {n}");
    // a wrong image shape is a clear parameter error
    let bad = EncoderSpec::new(
        EncoderParams {
            kind: gigo_neural::config::EncoderKind::Cnn,
            image: Some([28, 28]),
            ..EncoderParams::default()
        },
        64,
    )
    .unwrap_err();
    assert!(bad.to_string().contains("encoder.image"), "{bad}");
}

//! One gradient step, with everything around it that the levers need: the
//! learning-rate schedule, global-norm or per-value clipping, per-layer and
//! total gradient norms (recorded per epoch for the diagnoses), parameter
//! groups with their own learning rate (a fine-tuned encoder), and the count
//! of updates.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Tensor;

use crate::config::{OptimParams, OptimizerKind, lr_factor};

/// Builds the optimizer `p` asks for. Momentum has no dampening (as
/// PyTorch's default), Adam's epsilon is 1e-8 (as PyTorch's); SGD's and
/// Adam's weight decay adds `weight_decay * w` to the gradient (as PyTorch's),
/// AdamW's is decoupled.
pub fn optimizer(p: &OptimParams) -> ModuleOptimizer {
    let decay = p.weight_decay();
    let l2 = (decay > 0.0).then(|| WeightDecayConfig::new(decay as f32));
    match p.optimizer {
        OptimizerKind::Sgd => {
            let mut c = SgdConfig::new().with_weight_decay(l2);
            if p.momentum() > 0.0 {
                c = c.with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(p.momentum())
                        .with_dampening(0.0)
                        .with_nesterov(p.nesterov()),
                ));
            }
            c.init()
        }
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(l2)
            .init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay as f32)
            .init(),
    }
}

/// Every float parameter of a module with its rank.
struct ParamList(Vec<(ParamId, usize)>);

impl ModuleVisitor for ParamList {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, D));
    }
}

/// Calls `f` on the gradient of `id` (of rank `rank`) in `grads`, replacing
/// it with what `f` returns. Ranks above 4 do not occur in these networks.
fn map_grad(
    grads: &mut GradientsParams,
    id: ParamId,
    rank: usize,
    f: &mut dyn FnMut(GradRef) -> GradRef,
) -> bool {
    macro_rules! go {
        ($d:literal, $variant:ident) => {{
            match grads.remove::<$d>(id) {
                Some(g) => {
                    if let GradRef::$variant(g) = f(GradRef::$variant(g)) {
                        grads.register::<$d>(id, g);
                    }
                    true
                }
                None => false,
            }
        }};
    }
    match rank {
        1 => go!(1, R1),
        2 => go!(2, R2),
        3 => go!(3, R3),
        4 => go!(4, R4),
        _ => false,
    }
}

/// A gradient tensor of any rank used here.
enum GradRef {
    R1(Tensor<1>),
    R2(Tensor<2>),
    R3(Tensor<3>),
    R4(Tensor<4>),
}

impl GradRef {
    fn sum_sq(&self) -> f64 {
        fn s<const D: usize>(t: &Tensor<D>) -> f64 {
            t.clone().square().sum().into_scalar::<f32>() as f64
        }
        match self {
            GradRef::R1(t) => s(t),
            GradRef::R2(t) => s(t),
            GradRef::R3(t) => s(t),
            GradRef::R4(t) => s(t),
        }
    }

    fn scale(self, k: f64) -> GradRef {
        match self {
            GradRef::R1(t) => GradRef::R1(t.mul_scalar(k)),
            GradRef::R2(t) => GradRef::R2(t.mul_scalar(k)),
            GradRef::R3(t) => GradRef::R3(t.mul_scalar(k)),
            GradRef::R4(t) => GradRef::R4(t.mul_scalar(k)),
        }
    }

    fn clamp(self, v: f64) -> GradRef {
        match self {
            GradRef::R1(t) => GradRef::R1(t.clamp(-v, v)),
            GradRef::R2(t) => GradRef::R2(t.clamp(-v, v)),
            GradRef::R3(t) => GradRef::R3(t.clamp(-v, v)),
            GradRef::R4(t) => GradRef::R4(t.clamp(-v, v)),
        }
    }
}

/// Gradient norms of one epoch, accumulated over its steps.
#[derive(Debug, Clone, Default)]
pub struct EpochGrads {
    /// Per layer: sum over steps of the layer weight's gradient L2 norm.
    pub layer_sums: Vec<f64>,
    /// Sum over steps of the total gradient norm (before clipping).
    pub total_sum: f64,
    /// Largest total norm before clipping.
    pub total_max: f64,
    /// Largest total norm after clipping.
    pub clipped_max: f64,
    /// Steps taken.
    pub steps: usize,
    /// Whether a non-finite gradient or loss was seen.
    pub non_finite: bool,
}

/// What one step saw.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    /// Total gradient norm before clipping.
    pub norm: f64,
    /// After clipping.
    pub clipped_norm: f64,
    /// Whether every gradient was finite (else no update was made).
    pub finite: bool,
}

/// Drives the optimizer through training.
pub struct Stepper {
    optim: ModuleOptimizer,
    params: OptimParams,
    layers: Vec<(String, ParamId, usize)>,
    all: Vec<(ParamId, usize)>,
    per_epoch: usize,
    total: usize,
    warmup: usize,
    step: usize,
    epoch: EpochGrads,
}

impl Stepper {
    /// A stepper for `model`, whose named layer weights are `layers`, over
    /// `epochs` epochs of `per_epoch` steps.
    pub fn new<M: Module>(
        params: &OptimParams,
        model: &M,
        layers: Vec<(String, ParamId, usize)>,
        per_epoch: usize,
        epochs: usize,
    ) -> Stepper {
        let mut list = ParamList(Vec::new());
        model.visit(&mut list);
        let n_layers = layers.len();
        Stepper {
            optim: optimizer(params),
            params: params.clone(),
            layers,
            all: list.0,
            per_epoch,
            total: per_epoch * epochs,
            warmup: (params.warmup_epochs * per_epoch as f64).round() as usize,
            step: 0,
            epoch: EpochGrads {
                layer_sums: vec![0.0; n_layers],
                ..Default::default()
            },
        }
    }

    /// Names of the layers whose norms are recorded.
    pub fn layer_names(&self) -> Vec<String> {
        self.layers.iter().map(|(n, _, _)| n.clone()).collect()
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.params.lr
            * lr_factor(
                self.params.schedule,
                self.step,
                self.total,
                self.per_epoch,
                self.warmup,
            )
    }

    /// Updates taken so far.
    pub fn updates(&self) -> usize {
        self.step
    }

    /// One step: `parts` are gradients of disjoint parameter groups, each
    /// with its learning-rate multiplier. Norms are measured over all parts
    /// together, clipping is global, then each part is applied. A
    /// non-finite gradient skips the update (and is recorded).
    pub fn step<M: Module>(
        &mut self,
        mut model: M,
        mut parts: Vec<(GradientsParams, f64)>,
    ) -> (M, StepStats) {
        // one pass over every gradient: its squared norm, for the total
        // and for the recorded layers
        let mut sq_of: Vec<(ParamId, f64)> = Vec::with_capacity(self.all.len());
        for (id, rank) in &self.all {
            for (g, _) in parts.iter_mut() {
                let mut sq = None;
                map_grad(g, *id, *rank, &mut |t| {
                    sq = Some(t.sum_sq());
                    t
                });
                if let Some(sq) = sq {
                    sq_of.push((*id, sq));
                }
            }
        }
        let total_sq: f64 = sq_of.iter().map(|(_, s)| s).sum();
        for (li, (_, id, _)) in self.layers.iter().enumerate() {
            if let Some((_, sq)) = sq_of.iter().find(|(p, _)| p == id) {
                self.epoch.layer_sums[li] += sq.sqrt();
            }
        }
        let norm = total_sq.sqrt();
        let finite = norm.is_finite();
        let mut clipped_norm = norm;
        if finite {
            if let Some(c) = self.params.clip_norm
                && norm > c
            {
                let k = c / (norm + 1e-12);
                for (id, rank) in &self.all {
                    for (g, _) in parts.iter_mut() {
                        map_grad(g, *id, *rank, &mut |t| t.scale(k));
                    }
                }
                clipped_norm = norm * k;
            }
            if let Some(v) = self.params.clip_value {
                let mut sq_after = 0.0;
                for (id, rank) in &self.all {
                    for (g, _) in parts.iter_mut() {
                        let mut sq = 0.0;
                        map_grad(g, *id, *rank, &mut |t| {
                            let t = t.clamp(v);
                            sq = t.sum_sq();
                            t
                        });
                        sq_after += sq;
                    }
                }
                clipped_norm = sq_after.sqrt();
            }
            let lr = self.lr();
            for (g, mult) in parts {
                if !g.is_empty() {
                    model = self.optim.step(lr * mult, model, g);
                }
            }
        } else {
            self.epoch.non_finite = true;
        }
        self.step += 1;
        self.epoch.steps += 1;
        self.epoch.total_sum += if finite { norm } else { 0.0 };
        self.epoch.total_max = self
            .epoch
            .total_max
            .max(if finite { norm } else { f64::INFINITY });
        self.epoch.clipped_max = self.epoch.clipped_max.max(clipped_norm);
        (
            model,
            StepStats {
                norm,
                clipped_norm,
                finite,
            },
        )
    }

    /// The epoch's gradient statistics; starts the next epoch.
    pub fn take_epoch(&mut self) -> EpochGrads {
        let n = self.layers.len();
        std::mem::replace(
            &mut self.epoch,
            EpochGrads {
                layer_sums: vec![0.0; n],
                ..Default::default()
            },
        )
    }
}

//! Which burn device the networks run on, chosen at build time.
//!
//! The default build uses burn's `ndarray` CPU backend on all cores (measured
//! fastest on CPU; see DESIGN.md). The `flex` feature selects burn's pure-Rust
//! successor, and `cuda` / `wgpu` select a GPU; when several are enabled, a
//! GPU wins. Nothing else in the crate names a backend: modules and tensors
//! carry their device.
//!
//! Randomness never comes from the backend: weights, dropout masks, noise
//! and batch order are drawn from the stage's own seeded generator on the
//! host and uploaded, so results do not depend on the backend's global RNG or
//! on which thread ran first.

use burn::tensor::Device;

/// The device networks are trained on (with autodiff).
pub fn training_device() -> Device {
    base_device().autodiff()
}

/// The name of the backend in use, for summaries.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "cuda") {
        "cuda"
    } else if cfg!(feature = "wgpu") {
        "wgpu"
    } else if cfg!(feature = "flex") {
        "flex (CPU)"
    } else {
        "ndarray (CPU)"
    }
}

#[cfg(feature = "cuda")]
fn base_device() -> Device {
    Device::cuda(0)
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn base_device() -> Device {
    Device::wgpu(Default::default())
}

#[cfg(all(feature = "flex", not(any(feature = "cuda", feature = "wgpu"))))]
fn base_device() -> Device {
    Device::flex()
}

#[cfg(all(
    feature = "ndarray",
    not(any(feature = "cuda", feature = "wgpu", feature = "flex"))
))]
// burn 0.22 deprecates ndarray in favour of flex, but ndarray trains this
// crate's MLPs about 1.3x faster on CPU (DESIGN.md), so it stays the default.
#[allow(deprecated)]
fn base_device() -> Device {
    Device::ndarray()
}

#[cfg(not(any(
    feature = "ndarray",
    feature = "flex",
    feature = "cuda",
    feature = "wgpu"
)))]
compile_error!("gigo-neural needs a backend feature: ndarray (default), flex, cuda or wgpu");

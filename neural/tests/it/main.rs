//! gigo-neural's integration tests, one binary: the training levers on
//! small data, the stages, and the networks on the shared real data sets.

mod levers;
mod real_data;
mod stages;

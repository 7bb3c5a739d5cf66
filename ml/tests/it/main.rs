//! gigo-ml's integration tests, one binary: parity with cleanlab's and
//! numpy's exact outputs, and real label errors on MNIST.

mod cleanlab_parity;
mod mnist_real_errors;
mod numpy_argsort;

//! A network's weights as bytes, and back.
//!
//! Format `GNW1`: the magic, then the tensor count (u32), then per tensor its
//! rank (u32), its dimensions (u64 each) and its `f32` values, all
//! little-endian, in the module's visiting order (fields in declaration
//! order). Batch-normalisation running statistics are included. Loading
//! rebuilds the network from its saved config and checks every shape.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use crate::error::NeuralError;

const MAGIC: &[u8; 4] = b"GNW1";

/// The float tensors of a module, in visiting order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    /// (shape, values) per tensor.
    pub tensors: Vec<(Vec<usize>, Vec<f32>)>,
}

struct Collect {
    out: Weights,
    error: Option<String>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let dims = t.dims().to_vec();
        match t.try_into_vec_as::<f32>() {
            Ok(v) => self.out.tensors.push((dims, v)),
            Err(e) => {
                self.error
                    .get_or_insert(format!("reading a weight tensor: {e:?}"));
            }
        }
    }
}

struct Load<'a> {
    tensors: std::slice::Iter<'a, (Vec<usize>, Vec<f32>)>,
    index: usize,
    error: Option<String>,
}

impl ModuleMapper for Load<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let i = self.index;
        self.index += 1;
        let dims = tensor.dims();
        let replaced = match self.tensors.next() {
            Some((shape, values)) if shape.as_slice() == dims.as_slice() => {
                let data = TensorData::new(values.clone(), dims);
                let t = Tensor::<D>::from_data(data, &tensor.device());
                Some(if tensor.is_require_grad() {
                    t.require_grad()
                } else {
                    t
                })
            }
            Some((shape, _)) => {
                self.error.get_or_insert(format!(
                    "tensor {i} has shape {shape:?} but the network expects {dims:?}"
                ));
                None
            }
            None => {
                self.error
                    .get_or_insert(format!("only {i} tensors saved, the network has more"));
                None
            }
        };
        Param::from_mapped_value(id, replaced.unwrap_or(tensor), mapper)
    }
}

impl Weights {
    /// The weights of `module`.
    pub fn of<M: Module>(module: &M) -> Result<Weights, NeuralError> {
        let mut c = Collect {
            out: Weights::default(),
            error: None,
        };
        module.visit(&mut c);
        match c.error {
            Some(e) => Err(NeuralError::internal(e)),
            None => Ok(c.out),
        }
    }

    /// `module` with these weights (same architecture, checked tensor by tensor).
    pub fn load_into<M: Module>(&self, module: M) -> Result<M, NeuralError> {
        let mut l = Load {
            tensors: self.tensors.iter(),
            index: 0,
            error: None,
        };
        let out = module.map(&mut l);
        if let Some(e) = l.error {
            return Err(NeuralError::Saved(e));
        }
        if l.index != self.tensors.len() {
            return Err(NeuralError::Saved(format!(
                "{} tensors saved but the network has {}",
                self.tensors.len(),
                l.index
            )));
        }
        Ok(out)
    }

    /// Number of scalar weights.
    pub fn count(&self) -> usize {
        self.tensors.iter().map(|(_, v)| v.len()).sum()
    }

    /// The bytes (format `GNW1`, see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(8 + 4 * self.count() + 16 * self.tensors.len());
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        for (shape, values) in &self.tensors {
            b.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for &d in shape {
                b.extend_from_slice(&(d as u64).to_le_bytes());
            }
            for v in values {
                b.extend_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    /// Reads bytes written by [`Weights::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Weights, NeuralError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(NeuralError::Saved(
                "not gigo-neural weights (no GNW1 header)".into(),
            ));
        }
        let n = r.u32()? as usize;
        let mut tensors = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let rank = r.u32()? as usize;
            if rank > 8 {
                return Err(NeuralError::Saved(format!("tensor of rank {rank}")));
            }
            let mut shape = Vec::with_capacity(rank);
            for _ in 0..rank {
                shape.push(r.u64()? as usize);
            }
            let len = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| NeuralError::Saved("tensor size overflows".into()))?;
            let raw = r.take(
                len.checked_mul(4)
                    .ok_or_else(|| NeuralError::Saved("tensor size overflows".into()))?,
            )?;
            let values = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            tensors.push((shape, values));
        }
        if r.at != bytes.len() {
            return Err(NeuralError::Saved(format!(
                "{} bytes left after the last tensor",
                bytes.len() - r.at
            )));
        }
        Ok(Weights { tensors })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], NeuralError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| NeuralError::Saved("weights are truncated".into()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, NeuralError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, NeuralError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_reject_garbage() {
        let w = Weights {
            tensors: vec![
                (vec![2, 3], (0..6).map(|i| i as f32).collect()),
                (vec![1], vec![-1.5]),
            ],
        };
        let b = w.to_bytes();
        assert_eq!(Weights::from_bytes(&b).unwrap(), w);
        assert!(Weights::from_bytes(&b[..b.len() - 1]).is_err());
        assert!(Weights::from_bytes(b"nope").is_err());
        let mut longer = b.clone();
        longer.push(0);
        assert!(Weights::from_bytes(&longer).is_err());
    }
}

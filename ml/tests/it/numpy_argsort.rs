//! `gigo_ml::numpy_compat::argsort` gives the very permutation NumPy 2.4's
//! default `np.argsort` gives on x86-64 with AVX-512, ties included
//! (fingerprints made by `fixtures/numpy_argsort.py`, same generator).

use gigo_ml::numpy_compat::argsort;

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn case(c: u64) -> Vec<f64> {
    let mut g = Lcg(c + 1);
    let n = if c.is_multiple_of(3) {
        g.next() % 300
    } else {
        g.next() % 3000
    };
    let mut v: Vec<f64> = Vec::with_capacity(n as usize);
    match c % 6 {
        0 => v.extend((0..n).map(|_| (g.next() % 5) as f64)),
        1 => v.extend((0..n).map(|_| (g.next() % 1000003) as f64 / 1000003.0)),
        2 => {
            for _ in 0..n {
                if g.next().is_multiple_of(2) {
                    v.push(0.0);
                } else {
                    v.push((g.next() % 50) as f64 / 7.0);
                }
            }
        }
        3 => v.extend((0..n).map(|_| (g.next() % 3) as f64 * 0.25 - 0.25)),
        4 => {
            v.extend((0..n).map(|_| (g.next() % 4) as f64));
            v.sort_by(f64::total_cmp);
        }
        _ => {
            v.extend((0..n).map(|_| (g.next() % 40) as f64));
            v.sort_by(|a, b| b.total_cmp(a));
        }
    }
    v
}

fn fnv(perm: &[usize]) -> u64 {
    perm.iter().fold(0xCBF29CE484222325u64, |h, &i| {
        (h ^ i as u64).wrapping_mul(0x100000001B3)
    })
}

#[test]
fn argsort_reproduces_numpy_tie_order() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/numpy_argsort.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let fixture: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = fixture["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 300);
    let mut wrong = Vec::new();
    for c in cases {
        let id = c["case"].as_u64().unwrap();
        let v = case(id);
        assert_eq!(
            v.len() as u64,
            c["n"].as_u64().unwrap(),
            "generator differs, case {id}"
        );
        if fnv(&argsort(&v)) != c["fnv"].as_u64().unwrap() {
            wrong.push(id);
        }
    }
    assert!(
        wrong.is_empty(),
        "permutations differ from numpy in cases {wrong:?}"
    );
}

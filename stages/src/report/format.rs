//! Printing numbers and JSON values for people, the same way in every output.

use serde_json::Value;

/// `s` cut to at most `n` characters, ending in `…` when cut.
pub fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Shown for NaN, infinities, nulls and missing values.
pub const MISSING: &str = "—";

/// A number in a figure's format: `int`, `float`, `pct` (a fraction shown as
/// a percentage) or `seconds`; unknown formats print as `float`.
pub fn number(v: f64, format: &str) -> String {
    if !v.is_finite() {
        return MISSING.into();
    }
    match format {
        "int" => int(v),
        "pct" => pct(v),
        "seconds" => seconds(v),
        _ => general(v),
    }
}

/// A JSON value in a figure's format: numbers by `format`, strings as they
/// are, null as [`MISSING`], anything else as compact JSON.
pub fn value(v: &Value, format: &str) -> String {
    match v {
        Value::Number(n) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |f| number(f, format)),
        Value::Null => MISSING.into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// A cell or an evidence value: numbers in general format, integers exact.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => n.as_f64().map_or_else(|| n.to_string(), general),
        },
        other => value(other, "float"),
    }
}

/// An integer with thousands separators (`1,234,567`); fractions round.
pub fn int(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.into();
    }
    if v.abs() >= 1e15 {
        return general(v);
    }
    let r = v.round() as i64;
    let digits = r.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if r < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A fraction as a percentage with about three significant digits
/// (`0.0213` → `2.13%`, `0.5` → `50%`, `0.00004` → `0.004%`).
pub fn pct(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.into();
    }
    format!("{}%", significant(v * 100.0, 3))
}

/// A duration: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn seconds(v: f64) -> String {
    if !v.is_finite() {
        return MISSING.into();
    }
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    if a < 1.0 {
        format!("{sign}{} ms", general(a * 1000.0))
    } else if a < 60.0 {
        format!("{sign}{} s", general(a))
    } else if a < 3600.0 {
        let s = a.round() as u64;
        format!("{sign}{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (a / 60.0).round() as u64;
        format!("{sign}{} h {:02} min", m / 60, m % 60)
    }
}

/// A number for people: integers exactly (below 10^15), others with four
/// significant digits, very large or small ones in scientific notation.
pub fn general(v: f64) -> String {
    significant(v, 4)
}

/// `v` with `digits` significant digits (integers below 10^15 exactly).
fn significant(v: f64, digits: i32) -> String {
    if !v.is_finite() {
        return MISSING.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        return format!("{}", v as i64);
    }
    if !(1e-4..1e9).contains(&a) {
        let p = (digits - 1).max(0) as usize;
        let s = format!("{v:.p$e}");
        return match s.split_once('e') {
            Some((m, e)) if m.contains('.') => {
                format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
            }
            _ => s,
        };
    }
    // `digits` significant digits, trailing zeros trimmed.
    let decimals = (digits - 1 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_per_format_and_missing_values_show_a_dash() {
        assert_eq!(number(1234567.0, "int"), "1,234,567");
        assert_eq!(number(-1000.0, "int"), "-1,000");
        assert_eq!(number(12.0, "int"), "12");
        assert_eq!(number(0.0213, "pct"), "2.13%");
        assert_eq!(number(0.5, "pct"), "50%");
        assert_eq!(number(0.00004, "pct"), "0.004%");
        assert_eq!(number(0.85, "seconds"), "850 ms");
        assert_eq!(number(12.34, "seconds"), "12.34 s");
        assert_eq!(number(245.0, "seconds"), "4 min 05 s");
        assert_eq!(number(7380.0, "seconds"), "2 h 03 min");
        assert_eq!(number(1.23456, "float"), "1.235");
        assert_eq!(number(0.000123456, "float"), "0.0001235");
        assert_eq!(number(1.5e-7, "float"), "1.5e-7");
        assert_eq!(number(1e-12, "float"), "1e-12");
        assert_eq!(number(1.234e20, "int"), "1.234e20");
        assert_eq!(number(42.0, "unknown"), "42");
        for f in ["int", "float", "pct", "seconds"] {
            assert_eq!(number(f64::NAN, f), MISSING);
            assert_eq!(number(f64::INFINITY, f), MISSING);
            assert_eq!(number(f64::NEG_INFINITY, f), MISSING);
            assert_eq!(value(&Value::Null, f), MISSING);
        }
        assert_eq!(value(&serde_json::json!("abc"), "int"), "abc");
        assert_eq!(cell(&serde_json::json!(12345678901_i64)), "12345678901");
        assert_eq!(cell(&serde_json::json!(0.1)), "0.1");
        assert_eq!(cell(&serde_json::json!(true)), "true");
        assert_eq!(cell(&serde_json::json!([1, 2])), "[1,2]");
    }
}

//! The control protocol's request and reply lines (`tundra::control::protocol`).
//!
//! Input: one line of text (seeds: every request of `docs/control.md`).
//!
//! Asserts: no panic; a refusal is one line; a parsed request, serialised with
//! `Request::to_json`, parses to the same request; a decoded reply encodes and decodes to the
//! same reply (floats aside).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tundra::control::protocol::{Reply, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    match Request::parse(line) {
        Ok(request) => {
            let again = request.to_json().to_string();
            assert!(!again.contains('\n'));
            assert_eq!(Request::parse(&again), Ok(request), "{again}");
        }
        Err(e) => assert!(!e.contains('\n'), "a refusal of more than one line: {e:?}"),
    }
    if let Ok(reply) = Reply::decode(line) {
        let encoded = reply.encode();
        assert!(!encoded.contains('\n'));
        // serde_json reads floats fast rather than exactly (no `float_roundtrip`), so only
        // replies without them must come back identical; tundra's replies carry integers.
        let floats = matches!(&reply, Reply::Ok(v) if has_float(v));
        if !floats {
            assert_eq!(Reply::decode(&encoded), Ok(reply));
        }
    }
});

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

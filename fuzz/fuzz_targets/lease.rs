//! flannel's formats in etcd (`tundra::lease::format`): the network configuration, subnet
//! keys and lease values.
//!
//! Input: `[sel:1][text...]`; `sel` picks the parser (seeds: flannel's own examples and what
//! tundra writes).
//!
//! Asserts: no panic; errors display as one line; a parsed key formats back to the same key;
//! a parsed lease value written out with `LeaseAttrs::to_json` parses to the same value (the
//! same addresses, backend type and vxlan data) and writes the same bytes again (floats in
//! another backend's data aside); a parsed network configuration is coherent (subnets inside the network, min <= max) and its
//! first and last subnets fit it.

#![no_main]

use ipnet::{Ipv4Net, Ipv6Net};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tundra::lease::format::{parse_subnet_key, subnet_key, LeaseAttrs, NetworkConfig};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, text)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => key(text),
        1 => lease(text),
        _ => config(text),
    }
});

fn one_line(e: &impl std::fmt::Display) {
    let shown = e.to_string();
    assert!(
        !shown.contains('\n'),
        "an error of more than one line: {shown:?}"
    );
}

fn key(text: &[u8]) {
    let Ok(key) = std::str::from_utf8(text) else {
        return;
    };
    match parse_subnet_key(key) {
        Ok((v4, v6)) => {
            assert_eq!(v4, v4.trunc());
            assert!(v6.is_none_or(|n| n == n.trunc()));
            assert_eq!(subnet_key(v4, v6), key);
        }
        Err(e) => one_line(&e),
    }
}

fn lease(text: &[u8]) {
    match LeaseAttrs::parse(text) {
        Ok(attrs) => {
            assert!(!attrs.public_ip.is_unspecified() && !attrs.public_ip.is_multicast());
            let json = attrs.to_json();
            assert!(!json.contains('\n'));
            // Written out, it reads back the same (vxlan data is rewritten in flannel's field
            // spelling and order, which Go reads case-insensitively), and writes the same.
            let again = LeaseAttrs::parse(json.as_bytes()).expect("our own JSON parses");
            // serde_json reads floats fast rather than exactly: an opaque float in another
            // backend's data may be written back with other digits.
            let floats = [&attrs.backend_data, &attrs.backend_v6_data]
                .into_iter()
                .flatten()
                .any(has_float);
            if !floats {
                assert_eq!(again.to_json(), json);
            }
            assert_eq!(again.public_ip, attrs.public_ip);
            assert_eq!(again.public_ipv6, attrs.public_ipv6);
            assert_eq!(again.backend_type, attrs.backend_type);
            if floats {
                assert_eq!(again.vxlan().ok(), attrs.vxlan().ok());
                assert_eq!(again.vxlan_v6().ok(), attrs.vxlan_v6().ok());
            } else {
                assert_eq!(again.vxlan(), attrs.vxlan());
                assert_eq!(again.vxlan_v6(), attrs.vxlan_v6());
            }
            if let Err(e) = attrs.vxlan() {
                one_line(&e);
            }
            if let Err(e) = attrs.vxlan_v6() {
                one_line(&e);
            }
        }
        Err(e) => one_line(&e),
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fn config(text: &[u8]) {
    match NetworkConfig::parse(text) {
        Ok(c) => {
            let first = Ipv4Net::new(c.subnet_min, c.subnet_len).expect("a valid length");
            let last = Ipv4Net::new(c.subnet_max, c.subnet_len).expect("a valid length");
            assert!(c.subnet_min <= c.subnet_max);
            assert!(c.network.contains(&first) && c.network.contains(&last));
            let v6 = c.ipv6.map(|n| {
                assert!(n.subnet_min <= n.subnet_max);
                Ipv6Net::new(n.subnet_min, n.subnet_len).expect("a valid length")
            });
            assert!(c.fits(first, v6));
        }
        Err(e) => one_line(&e),
    }
}

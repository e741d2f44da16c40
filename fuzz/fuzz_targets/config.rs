//! The TOML configuration file (`tundra::config::Config::from_file_and_flags`), with no flags.
//!
//! Input: the text of a config file (seeds: the examples of the module doc and docs/).
//!
//! Asserts: no panic, and every refusal displays as one line (it is printed as one).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tundra::config::{Config, Flags};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let flags = Flags::default();
    if let Err(e) = Config::from_file_and_flags(Some((Path::new("fuzz.toml"), text)), &flags) {
        let shown = e.to_string();
        assert!(
            !shown.contains('\n'),
            "an error of more than one line: {shown:?}"
        );
    }
});

//! Every `unsafe` block of the crate lives below this module.

pub mod sockopt;

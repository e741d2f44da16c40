//! The hot loops: egress (TUN → UDP) and ingress (UDP → TUN), over io_uring or readiness.

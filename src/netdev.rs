//! The TUN device and its kernel configuration (MTU, link up, addresses, routes), over netlink.

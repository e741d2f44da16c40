//! The TUN device and what the kernel grants it: with offloads, every read and write starts
//! with a virtio-net header, reads may return TSO/USO super-packets of up to 64 KiB, and
//! writes may be GRO super-packets (see `datapath::offload`).

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use tun_rs::{DeviceBuilder, Layer, SyncDevice};

use crate::netdev::NetdevError;

/// The offloads the kernel granted the TUN device (`TUNSETOFFLOAD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunOffloads {
    /// Checksum offload and TSO for IPv4 and IPv6 (`TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`):
    /// packets carry a virtio-net header.
    pub tso: bool,
    /// UDP segmentation offload (`TUN_F_USO4 | TUN_F_USO6`, Linux 6.2+).
    pub uso: bool,
}

/// An L3 TUN device without packet-information header: each `read` returns one IP packet (a
/// super-packet with offloads) and each `write` takes one, behind a virtio-net header when
/// [`Tun::offloads`] says `tso`.
pub struct Tun {
    device: SyncDevice,
    name: String,
    offloads: TunOffloads,
}

impl Tun {
    /// Creates the L3 TUN device `name`, or attaches to it if it exists (a persistent device,
    /// or another queue of a running one), with `IFF_NO_PI`, in blocking mode, and with
    /// `IFF_VNET_HDR` and the TCP and UDP offloads if `offload` is set and the kernel grants
    /// them (tun-rs asks for CSUM, TSO4 and TSO6, then adds USO4/6 where it can). The device's
    /// admin state is left as it was (a new device is down): `netdev::configure` brings it up.
    ///
    /// A device that this call created disappears, with its addresses and routes, when the
    /// `Tun` is dropped.
    ///
    /// # Errors
    ///
    /// [`NetdevError::Open`] if `/dev/net/tun` cannot be opened (no `CAP_NET_ADMIN`, no TUN
    /// driver), the name is too long (15 bytes at most) or invalid, an existing device of
    /// that name is not a compatible TUN device or is busy, or the offloads are refused.
    pub fn open(name: &str, offload: bool) -> Result<Tun, NetdevError> {
        let error = |error| NetdevError::Open {
            name: name.to_owned(),
            error,
        };
        let device = DeviceBuilder::new()
            .name(name)
            .layer(Layer::L3)
            .packet_information(false)
            .offload(offload)
            .inherit_enable_state()
            .build_sync()
            .map_err(error)?;
        // The kernel may have expanded a pattern such as `tun%d`: ask it for the real name.
        let name = device.name().map_err(error)?;
        let offloads = TunOffloads {
            tso: device.tcp_gso(),
            uso: device.udp_gso(),
        };
        Ok(Tun {
            device,
            name,
            offloads,
        })
    }

    /// The device's name, as the kernel reported it when it was opened.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the kernel granted.
    pub fn offloads(&self) -> TunOffloads {
        self.offloads
    }

    /// Switches the descriptor between blocking (the default) and non-blocking mode.
    ///
    /// # Errors
    ///
    /// The `fcntl` error, if any.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.device.set_nonblocking(on)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.device.as_raw_fd()
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.device.as_fd()
    }
}

impl fmt::Debug for Tun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tun")
            .field("name", &self.name)
            .field("fd", &self.as_raw_fd())
            .field("offloads", &self.offloads)
            .finish()
    }
}

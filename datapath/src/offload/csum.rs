//! The Internet checksum (RFC 1071), fast enough to run over every payload byte we segment.

/// Adds `data` to the running sum `acc`; [`fold`] turns the result into a checksum.
///
/// `data` must start at an even offset of the checksummed bytes, so only the last piece of a
/// checksum may have an odd length (its last byte is padded with zero, RFC 1071 §4.1). The sum
/// cannot overflow below 2³² words (16 GiB), far beyond any packet.
#[inline]
pub(super) fn add(acc: u64, data: &[u8]) -> u64 {
    // Native-order words into a wide accumulator: the one's-complement sum is byte-order
    // independent (RFC 1071 §2(B)), so `fold` swaps once at the end, and a loop without
    // carries or byte swaps vectorizes.
    let mut words = data.chunks_exact(4);
    let sum: u64 = words
        .by_ref()
        .map(|w| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
        .sum();
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + sum + u64::from(u32::from_ne_bytes(tail))
}

/// Folds a sum from [`add`] to 16 bits with end-around carries: the value of a big-endian
/// checksum field, not yet complemented.
#[inline]
pub(super) fn fold(acc: u64) -> u16 {
    let mut s = acc;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    // The words were read in native order; this puts the bytes back in network order.
    u16::from_be(s as u16)
}

/// Sum of the TCP/UDP pseudo-header (RFC 768, RFC 9293 §3.1, RFC 8200 §8.1). IPv4 and IPv6
/// differ in layout but not in sum as long as the upper-layer length fits 16 bits, which it
/// always does here.
#[inline]
pub(super) fn pseudo_header(src: &[u8], dst: &[u8], proto: u8, len: u16) -> u64 {
    let [hi, lo] = len.to_be_bytes();
    add(add(add(0, src), dst), &[0, proto, hi, lo])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::testpkt::naive_sum as naive;
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(fold(add(0, &[])), 0);
        assert_eq!(fold(add(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
        // RFC 1071 §3's example: 0001 f203 f4f5 f6f7 sums to ddf2.
        assert_eq!(
            fold(add(0, &[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])),
            0xddf2
        );
        assert_eq!(fold(add(0, &[0xff; 64])), 0xffff);
    }

    #[test]
    fn pseudo_header_matches_etherparse() {
        let payload = [7u8; 33];
        let src = [198, 19, 1, 10];
        let dst = [198, 19, 2, 20];
        let udp = etherparse::UdpHeader::without_ipv4_checksum(1, 2, payload.len()).unwrap();
        let mut bytes = udp.to_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let sum = add(pseudo_header(&src, &dst, 17, 41), &bytes);
        assert_eq!(
            !fold(sum),
            udp.calc_checksum_ipv4_raw(src, dst, &payload).unwrap()
        );
    }

    proptest! {
        #[test]
        fn matches_naive(data in proptest::collection::vec(any::<u8>(), 0..3000), split in 0usize..1500) {
            prop_assert_eq!(fold(add(0, &data)), naive(&data));
            // Pieces starting at even offsets add up to the whole.
            let split = (split * 2).min(data.len());
            let (a, b) = data.split_at(split);
            prop_assert_eq!(fold(add(add(0, a), b)), naive(&data));
        }
    }
}

#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere; stdlib only).

Packets come from frames the kernel's VXLAN sent (datapath/fixtures/vxlan/*.bin: VNI 42,
VTEP MACs 0a:58:c6:13:0N:00, inner 198.19.1.1 <-> 198.19.2.1), each behind the selector
bytes its target reads first (see the input layout in each fuzz_targets/*.rs). Text targets
get the examples of the docs. Seeds are small; the fuzzer finds the rest.
"""

import hashlib
import os
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
FIXTURES = sorted((ROOT / "datapath/fixtures/vxlan").glob("*.bin"))


def write(target, data):
    d = FUZZ / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = hashlib.sha1(data).hexdigest()[:16]
    (d / name).write_bytes(data)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def frames():
    """(name, vxlan payload) of each capture, keeping one per kind."""
    seen = set()
    for f in FIXTURES:
        kind = f.name.split("-", 1)[1]
        if kind in seen:
            continue
        seen.add(kind)
        yield f.name, f.read_bytes()


def inner(frame):
    return frame[22:]


def ipv6_udp(src, dst, hop, payload):
    udp = struct.pack("!HHHH", 40000, 5353, 8 + len(payload), 0) + payload
    return struct.pack("!IHBB", 0x60000000, len(udp), 17, hop) + src + dst + udp


V6_A = bytes.fromhex("fd190000000000010000000000000010")
V6_B = bytes.fromhex("fd190000000000020000000000000020")


def packets():
    out = [inner(f) for _, f in frames()]
    out.append(ipv6_udp(V6_A, V6_B, 64, b"x" * 40))
    out.append(ipv6_udp(V6_B, V6_A, 1, b"y" * 16))
    return out


def packet_seeds():
    for p in packets():
        for sender, flags in [(0, 0), (0, 1), (0x80, 2), (1, 0)]:
            write("packet", struct.pack("!HBB", 1400, sender, flags) + p)
    # Too big with DF, for the ICMP path.
    write("packet", struct.pack("!HBB", 60, 0, 0) + packets()[0])


def icmp_seeds():
    for p in packets():
        router = 1 if p[0] >> 4 == 6 else 0
        for kind in range(3):
            write("icmp", struct.pack("!BHBH", kind, 1400, router, 0) + p)
        write("icmp", struct.pack("!BHBH", 0, 1400, router | 0x80, 64) + p)


def tcp_frames():
    return [inner(f) for n, f in frames() if "tcp" in n]


def gso_gro_seeds():
    for p in tcp_frames():
        ihl = (p[0] & 0x0F) * 4
        vnet = struct.pack("<BBHHHH", 1, 1, ihl + 32, 500, ihl, 16)
        write("gso_gro", b"\0" + vnet + struct.pack("!HB", 1400, 128) + p)
        udp = struct.pack("<BBHHHH", 1, 5, ihl + 8, 100, ihl, 6)
        write("gso_gro", b"\0" + udp + struct.pack("!HB", 1400, 128) + p)
    # Built super-packets: v4 and v6, timestamps, a few hundred bytes repeated.
    for v6, psh, mss, opts, repeat in [(0, 0, 1000, 3, 20), (1, 1, 1428, 3, 40), (0, 1, 7, 0, 1)]:
        options = bytes([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78])[: opts * 4]
        head = struct.pack("!BBBHB", 1, v6, psh, mss, opts)
        head += struct.pack("!BIHBB", 0, 0x12345, 0x4321, 1, 64)
        head += struct.pack("!HHIIHH", 40000, 5201, 1_000_000, 77_777, 501, 0)
        write("gso_gro", head + options + bytes([repeat]) + bytes(range(256)))


def batch_seeds():
    for p in packets():
        for flags in [0, 2, 8 | 4, 8 | 4 | 2]:
            data = p
            if flags & 4:
                data = bytes(10) + p
            write("batch", struct.pack("!BHHBH", flags, 0, 0, 0, 1400) + data)
    # Reads of several packets, one per slot (flag 64, stride = one read): with GSO (8) small
    # datagrams to one peer group into one send.
    for p in packets()[:2]:
        for flags in [64 | 8, 64 | 8 | 4 | 2, 64]:
            data = bytes(10) + p if flags & 4 else p
            write("batch", struct.pack("!BHHBH", flags, 0, len(data), 0, 1400) + data * 5)
    for name, f in frames():
        if "198.18.0.2" not in name:
            continue
        write("batch", struct.pack("!BHHBH", 1 | 2, 0, 0, 0, 1400) + f)
        write("batch", struct.pack("!BHHBH", 1 | 2 | 4, 0, len(f), 0, 1400) + f * 3)
        write("batch", struct.pack("!BHHBH", 1 | 4, 0, len(f) - 22, 0, 1400) + inner(f) * 3)


def vxlan_seeds():
    for _, f in frames():
        write("vxlan", b"\0\0\0\x2a" + f)
    write("vxlan", b"\0\0\0\x2a0a:58:c6:13:01:00")
    write("vxlan", b"\0\0\0\x2a0A-58-C6-13-02-00")


CONTROL = [
    '{"cmd":"routes.list"}',
    '{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3:8285"}',
    '{"cmd":"routes.add","prefix":"198.19.3.0/24","peer":"198.18.0.3","mac":"0a:58:c6:13:03:00"}',
    '{"cmd":"routes.add","prefix":"fd19:0:0:3::/64","peer":"[fd18::3]:8285"}',
    '{"cmd":"routes.del","prefix":"198.19.3.0/24"}',
    '{"cmd":"routes.apply","del":["198.19.2.0/24"],"add":[{"prefix":"198.19.4.0/24","peer":"198.18.0.4:8285"}]}',
    '{"cmd":"routes.apply","replace":[{"prefix":"198.19.2.0/24","peer":"198.18.0.2:8285"}]}',
    '{"cmd":"peers"}',
    '{"cmd":"stats"}',
    '{"cmd":"health","x":1}',
    '{"ok":true,"result":{"version":2,"added":1,"removed":0,"changed":0,"routes":1}}',
    '{"ok":false,"error":"routes.del: 10.9.0.0/16 is not routed"}',
]

CONFIG = [
    'tun = "tundra0"\nlisten = "0.0.0.0:8285"\nlocal_subnets = ["10.1.0.0/16"]\n'
    'peers = ["10.2.0.0/16=192.0.2.2:8285", "fd00:2::/64=[2001:db8::2]"]\nencap = "udp"\n'
    'mtu = 1472\nio = "auto"\noffload = "auto"\ntun_queue_len = 1000\nsocket_buffer = "4M"\n'
    'configure = true\ncontrol = "/run/tundra/tundra.sock"\nmetrics = "127.0.0.1:9100"\n',
    'local_subnets = ["198.19.1.0/24"]\nencap = "vxlan"\nvni = 42\n'
    'vtep_mac = "0a:58:c6:13:01:00"\npeers = ["198.19.2.0/24=198.18.0.2,mac=0a:58:c6:13:02:00"]\n',
    'etcd_endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]\n'
    'etcd_prefix = "/coreos.com/network"\npublic_ip = "192.0.2.1"\npublic_ipv6 = "2001:db8::1"\n'
    'subnet_file = "/run/flannel/subnet.env"\netcd_start_timeout = "60s"\n',
    'local_subnets = ["10.1.0.1/16"]\nmtu = 100\n',
]

LEASE = [
    (0, "10.244.1.0-24"),
    (0, "10.244.1.0-24&fd00:0:0:1::-64"),
    (1, '{"PublicIP":"192.0.2.1","PublicIPv6":null}'),
    (1, '{"PublicIP":"192.0.2.1","PublicIPv6":"2001:db8::1","BackendType":"vxlan",'
        '"BackendData":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"},'
        '"BackendV6Data":{"VNI":1,"VtepMAC":"0a:58:c6:13:01:00"}}'),
    (2, '{"Network": "10.244.0.0/16", "Backend": {"Type": "udp"}}'),
    (2, '{"Network": "10.244.0.0/16", "SubnetLen": 26, "SubnetMin": "10.244.1.0",'
        ' "SubnetMax": "10.244.9.192", "Backend": {"Type": "vxlan", "VNI": 42, "Port": 4789}}'),
    (2, '{"EnableIPv6": true, "Network": "10.244.0.0/16", "IPv6Network": "fd00::/48",'
        ' "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"}}'),
    # Regression: found by CI's fuzz smoke, SubnetMin above SubnetMax passed as a configuration.
    (2, '{"Network" :"10.244.1.00/6", "SubnetLen": 26, "SubnetMin": "10.244.1.0",'
        '"SubnetMax": "10.95.22.192", "Backend": {"Type": "vxlan", "VNI": 42, "Poxt": 4789}}'),
]


def text_seeds():
    for line in CONTROL:
        write("control", line)
    for text in CONFIG:
        write("config", text)
    for sel, text in LEASE:
        write("lease", bytes([sel]) + text.encode())


def route_seeds():
    # Nested IPv4 prefixes and two IPv6 ones, two local subnets, lookups inside each.
    def prefix(v6, length, addr):
        return bytes([(0x80 if v6 else 0) | length]) + struct.pack("!I", addr) + b"\0"

    local = prefix(0, 24, 0xC6130100) + prefix(1, 32, 0x00010000)
    routes = [
        (prefix(0, 16, 0xC6140000), 2, 0x85),
        (prefix(0, 24, 0xC6140700), 3, 0x85),
        (prefix(0, 25, 0xC6140780), 0x82, 0x85),
        (prefix(1, 16, 0x00200000), 3, 0x85),
        (prefix(1, 24, 0x00200700), 0x84, 0x85),
    ]
    for fmt in (0, 1):
        data = bytes([fmt, 2, len(routes)]) + local
        for p, peer, port in routes:
            data += p + bytes([peer, port])
        for a in (0xC6140701, 0xC61407F0, 0xC6150000, 0x00200701):
            data += b"\0" + struct.pack("!I", a)
        data += b"\1" + struct.pack("!I", 0x00200701)
        write("route", data)


def main():
    os.umask(0o022)
    packet_seeds()
    icmp_seeds()
    gso_gro_seeds()
    batch_seeds()
    vxlan_seeds()
    text_seeds()
    route_seeds()


if __name__ == "__main__":
    main()

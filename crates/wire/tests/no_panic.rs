//! Every parser takes arbitrary bytes without panicking: random buffers, and
//! the real captured packets with random bytes changed and random truncation.

use proptest::prelude::*;
use wire::*;

fn frames(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        out.push(pcap[at..at + len].to_vec());
        at += len;
    }
    out
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for p in [
        &include_bytes!("captures/arp_icmp.pcap")[..],
        include_bytes!("captures/dhcp.pcap"),
        include_bytes!("captures/frag.pcap"),
        include_bytes!("captures/nd.pcap"),
        include_bytes!("captures/tcp.pcap"),
        include_bytes!("captures/udp.pcap"),
        include_bytes!("captures/vxlan.pcap"),
    ] {
        v.extend(frames(p));
    }
    v
}

/// Real packet `which` with the bytes `flips` names changed.
fn mutated(which: usize, flips: &[(u16, u8)]) -> Vec<u8> {
    let s = seeds();
    let mut b = s[which % s.len()].clone();
    for &(at, v) in flips {
        let i = usize::from(at) % b.len();
        b[i] = v;
    }
    b
}

/// Parses a frame the way the simulation does, all the way down.
fn parse_everything(b: &[u8]) {
    let Ok(eth) = EthernetFrame::new_checked(b) else {
        return;
    };
    let _ = EthernetRepr::parse(&eth);
    let payload = eth.payload();
    if let Ok(arp) = ArpPacket::new_checked(payload) {
        let _ = ArpRepr::parse(&arp);
    }
    if let Ok(ip6) = Ipv6Packet::new_checked(payload) {
        let _ = icmpv6::NdRepr::parse(&ip6);
    }
    let Ok(ip) = Ipv4Packet::new_checked(payload) else {
        return;
    };
    let _ = Ipv4Repr::parse(&ip);
    let l4 = ip.payload();
    if let Ok(icmp) = Icmpv4Packet::new_checked(l4) {
        let _ = Icmpv4Repr::parse(&icmp);
        let _ = icmp.echo_id();
    }
    if let Ok(t) = TcpPacket::new_checked(l4) {
        let _ = (
            t.src_port(),
            t.dst_port(),
            t.flags(),
            t.verify_checksum(ip.src(), ip.dst()),
        );
    }
    if let Ok(u) = UdpPacket::new_checked(l4) {
        let _ = u.verify_checksum(ip.src(), ip.dst());
        if let Ok(d) = DhcpPacket::new_checked(u.payload()) {
            let _ = DhcpRepr::parse(&d);
        }
        let _ = wire::flowstate::FlowStateRepr::parse(u.payload());
        if let Ok(v) = VxlanPacket::new_checked(u.payload()) {
            parse_everything(v.payload());
        }
    }
    // Rewrites on a copy must not panic either.
    let mut m = payload.to_vec();
    if let Ok(mut p) = Ipv4Packet::new_checked(&mut m[..]) {
        p.set_src(std::net::Ipv4Addr::new(192, 0, 2, 1));
        p.set_dst(std::net::Ipv4Addr::new(192, 0, 2, 2));
        p.decrement_ttl();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(b in proptest::collection::vec(any::<u8>(), 0..600)) {
        parse_everything(&b);
        if let Ok(d) = DhcpPacket::new_checked(&b[..]) {
            let _ = d.options();
        }
        let _ = VxlanPacket::new_checked(&b[..]).map(|v| v.vni());
        let _ = wire::flowstate::FlowStateRepr::parse(&b);
    }

    #[test]
    fn mutated_real_packets(
        which in 0usize..64,
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
        cut in any::<u16>(),
    ) {
        let b = mutated(which, &flips);
        parse_everything(&b);
        let n = usize::from(cut) % (b.len() + 1);
        parse_everything(&b[..n]);
    }
}

/// What the datapath does with a frame and the vnet header it came with:
/// validate, then complete, refresh, segment, merge. A header the check
/// lets through must never make a later step index outside the frame.
fn offload_everything(h: &wire::vnet::VnetHeader, frame: &[u8]) {
    let Ok(off) = wire::vnet::Offload::from_header(h, frame) else {
        return;
    };
    let mut f = frame.to_vec();
    if let Some(c) = off.csum {
        wire::vnet::refresh_partial(&mut f, c);
        wire::vnet::complete_checksum(&mut f, c);
    }
    for delta in [-4isize, 4] {
        if let Some(c) = off.shifted(delta).csum {
            wire::vnet::complete_checksum(&mut f, c);
        }
    }
    if let Some(g) = off.gso {
        let mut out = Vec::new();
        for mss in [1, usize::from(g.size), 1400] {
            out.clear();
            if let Ok(cut) = wire::gso::segment(&f, &g, mss, &[0; 8], &mut out) {
                let mut m = wire::gso::Coalescer::default();
                for seg in out.chunks(cut.size) {
                    if seg.len() > 8 {
                        let _ = m.push(&seg[8..]);
                    }
                }
                let _ = m.finish().map(|(merged, _)| merged.to_vec());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Hostile vnet headers (random, and near-valid ones) over real and
    /// mutated frames: refused or handled, never a panic.
    #[test]
    fn hostile_vnet_headers(
        which in 0usize..64,
        raw in proptest::collection::vec(any::<u8>(), 10),
        near in any::<bool>(),
        flips in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..4),
        cut in any::<u16>(),
    ) {
        let b = mutated(which, &flips);
        let n = usize::from(cut) % (b.len() + 1);
        let mut h = wire::vnet::VnetHeader::parse(&raw).unwrap();
        if near {
            // Mostly right: what a confused or lying sender would write.
            h.flags = wire::vnet::F_NEEDS_CSUM;
            h.gso_type = [0, 1, 4, 5, 3, 0x81][usize::from(raw[1]) % 6];
            h.csum_start = 34 + u16::from(raw[6] % 8);
            h.csum_offset = [16, 6, 0, 100][usize::from(raw[8]) % 4];
            h.gso_size = u16::from(raw[4]) * 8;
        }
        offload_everything(&h, &b);
        offload_everything(&h, &b[..n]);
    }
}

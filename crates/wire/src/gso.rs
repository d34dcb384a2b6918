//! Segmentation offload done in software, where the kernel would have done
//! it: a TCP (or UDP) super-frame cut into MTU-sized segments with their
//! own lengths, IP ids, sequence numbers, flags and complete checksums
//! ([`segment`]); consecutive segments merged back into a super-frame, as
//! GRO does ([`Coalescer`]); an IPv4 packet cut into fragments
//! ([`fragment_ipv4`]).

use crate::ethernet::{EtherType, EthernetFrame};
use crate::ipv4::{Ipv4Packet, Protocol};
use crate::ipv6::Ipv6Packet;
use crate::tcp::TcpPacket;
use crate::vnet::{Csum, Gso, GsoKind, Offload, TCP_CSUM_OFFSET};
use crate::{Error, Result, be16, be32, checksum, put16, put32};

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_CWR: u8 = 0x80;

/// Where the headers of an IP frame are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    l3: usize,
    l4: usize,
    /// The end of the L4 header.
    hdrs: usize,
    /// The end of the IP packet.
    end: usize,
    v4: bool,
    proto: u8,
}

fn layout(frame: &[u8]) -> Result<Layout> {
    let eth = EthernetFrame::new_checked(frame)?;
    let l3 = eth.header_len();
    let (l4, end, proto, v4) = match eth.ethertype() {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(&frame[l3..])?;
            if ip.is_fragment() {
                return Err(Error);
            }
            (
                l3 + ip.header_len(),
                l3 + usize::from(ip.total_len()),
                ip.protocol(),
                true,
            )
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(&frame[l3..])?;
            (
                l3 + 40,
                l3 + 40 + usize::from(ip.payload_len()),
                ip.next_header(),
                false,
            )
        }
        _ => return Err(Error),
    };
    let hdrs = match proto {
        Protocol::TCP => l4 + TcpPacket::new_checked(&frame[l4..end])?.header_len(),
        Protocol::UDP if end >= l4 + 8 => l4 + 8,
        _ => return Err(Error),
    };
    Ok(Layout {
        l3,
        l4,
        hdrs,
        end,
        v4,
        proto,
    })
}

/// The pseudo-header sum of the frame's IP header for an L4 length.
fn pseudo(frame: &[u8], lay: &Layout, l4_len: usize) -> u32 {
    let ip = &frame[lay.l3..];
    if lay.v4 {
        checksum::sum(&ip[12..20]) + u32::from(lay.proto) + l4_len as u32
    } else {
        checksum::sum(&ip[8..40])
            + u32::from(lay.proto)
            + (l4_len as u32 >> 16)
            + (l4_len as u32 & 0xffff)
    }
}

fn fill_ip4(frame: &mut [u8], l3: usize, l4: usize) {
    put16(frame, l3 + 10, 0);
    let ck = checksum::checksum(&frame[l3..l4]);
    put16(frame, l3 + 10, ck);
}

/// How a super-frame was cut: `count` segments, each but the last
/// `size` bytes long (prefix included), one after the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub count: usize,
    pub size: usize,
}

/// Cuts `frame`, a super-frame of kind `gso.kind`, into segments of at most
/// `mss` payload bytes, each appended to `out` after `prefix` (a VXLAN
/// header, or nothing). See [`Segmenter`].
pub fn segment(
    frame: &[u8],
    gso: &Gso,
    mss: usize,
    prefix: &[u8],
    out: &mut Vec<u8>,
) -> Result<Cut> {
    let s = Segmenter::new(frame, gso, mss)?;
    out.reserve(s.count() * (prefix.len() + s.lay.hdrs + mss));
    for i in 0..s.count() {
        s.write(i, prefix, out);
    }
    Ok(Cut {
        count: s.count(),
        size: s.size(prefix.len()),
    })
}

/// A super-frame being cut, segment by segment, straight into whatever
/// buffer sends it. Every segment is a complete frame: IP length, id (one
/// more per segment) and header checksum, TCP sequence number, FIN and PSH
/// on the last segment only, CWR on the first only, and a complete L4
/// checksum. A frame that already fits comes out as one segment.
pub struct Segmenter<'a> {
    frame: &'a [u8],
    lay: Layout,
    mss: usize,
    count: usize,
    tcp: bool,
}

impl<'a> Segmenter<'a> {
    pub fn new(frame: &'a [u8], gso: &Gso, mss: usize) -> Result<Self> {
        let lay = layout(frame)?;
        let tcp = matches!(gso.kind, GsoKind::Tcp4 | GsoKind::Tcp6);
        let family_ok = match gso.kind {
            GsoKind::Tcp4 => lay.v4,
            GsoKind::Tcp6 => !lay.v4,
            GsoKind::Udp => true,
        };
        if mss == 0 || tcp != (lay.proto == Protocol::TCP) || !family_ok {
            return Err(Error);
        }
        let count = (lay.end - lay.hdrs).div_ceil(mss).max(1);
        Ok(Segmenter {
            frame,
            lay,
            mss,
            count,
            tcp,
        })
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of every segment but the last, after a prefix of `prefix` bytes.
    pub fn size(&self, prefix: usize) -> usize {
        prefix + self.lay.hdrs + self.mss
    }

    /// Appends `prefix` and segment `i` to `out`.
    pub fn write(&self, i: usize, prefix: &[u8], out: &mut Vec<u8>) {
        let chunk = self.header(i, prefix, out);
        out.extend_from_slice(chunk);
    }

    /// Appends `prefix` and the headers of segment `i` (lengths, id,
    /// sequence, flags and checksums all final) to `out`, and returns the
    /// segment's payload as it lies in the super-frame: a sender that
    /// gathers the two sends the segment without copying its payload.
    pub fn header(&self, i: usize, prefix: &[u8], out: &mut Vec<u8>) -> &'a [u8] {
        let (frame, lay, mss) = (self.frame, self.lay, self.mss);
        let payload = &frame[lay.hdrs..lay.end];
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        out.extend_from_slice(prefix);
        let s = out.len();
        out.extend_from_slice(&frame[..lay.hdrs]);
        let seg = &mut out[s..];
        let end = lay.hdrs + chunk.len();
        let l4_len = end - lay.l4;
        if lay.v4 {
            put16(seg, lay.l3 + 2, (end - lay.l3) as u16);
            put16(
                seg,
                lay.l3 + 4,
                be16(frame, lay.l3 + 4).wrapping_add(i as u16),
            );
            fill_ip4(seg, lay.l3, lay.l4);
        } else {
            put16(seg, lay.l3 + 4, l4_len as u16);
        }
        let at = if self.tcp {
            put32(
                seg,
                lay.l4 + 4,
                be32(frame, lay.l4 + 4).wrapping_add((i * mss) as u32),
            );
            let mut fl = frame[lay.l4 + 13];
            if i + 1 < self.count {
                fl &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                fl &= !TCP_CWR;
            }
            seg[lay.l4 + 13] = fl;
            lay.l4 + usize::from(TCP_CSUM_OFFSET)
        } else {
            put16(seg, lay.l4 + 4, l4_len as u16);
            lay.l4 + 6
        };
        // The L4 header is an even number of bytes, so its sum and the
        // payload's add up to the segment's.
        put16(seg, at, 0);
        let sum = pseudo(seg, &lay, l4_len)
            + checksum::sum(&seg[lay.l4..lay.hdrs])
            + checksum::sum(chunk);
        let mut ck = !checksum::fold(sum);
        if ck == 0 && !self.tcp {
            ck = 0xffff;
        }
        put16(seg, at, ck);
        chunk
    }
}

/// Cuts an IPv4 packet into fragments whose IP packets are at most `mtu`
/// bytes (RFC 791: offsets in units of 8, MF on all but the last, the
/// header copied into each). Appends each fragment frame to `out` and its
/// (start, length) to `spans`. Refuses packets with DF set.
pub fn fragment_ipv4(
    frame: &[u8],
    mtu: usize,
    out: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<()> {
    let eth = EthernetFrame::new_checked(frame)?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(Error);
    }
    let l3 = eth.header_len();
    let ip = Ipv4Packet::new_checked(&frame[l3..])?;
    let hl = ip.header_len();
    if ip.dont_frag() || mtu < hl + 8 {
        return Err(Error);
    }
    let (base, more) = (usize::from(ip.frag_offset()), ip.more_frags());
    let data = &frame[l3 + hl..l3 + usize::from(ip.total_len())];
    let step = (mtu - hl) & !7;
    let mut at = 0;
    loop {
        let n = step.min(data.len() - at);
        let last = at + n == data.len();
        let s = out.len();
        out.extend_from_slice(&frame[..l3 + hl]);
        out.extend_from_slice(&data[at..at + n]);
        let f = &mut out[s..];
        put16(f, l3 + 2, (hl + n) as u16);
        let off = ((base + at) / 8) as u16 | if !last || more { 0x2000 } else { 0 };
        put16(f, l3 + 6, off);
        fill_ip4(f, l3, l3 + hl);
        spans.push((s, l3 + hl + n));
        at += n;
        if last {
            return Ok(());
        }
    }
}

/// Consecutive TCP/IPv4 segments of one connection merged back into one
/// super-frame with a partial checksum, as the kernel's GRO does, so a VM
/// that takes GSO frames gets one frame instead of dozens. A segment joins
/// when it continues the previous one exactly: same headers but for length,
/// id and checksum, the next sequence number, the previous segment full
/// (`mss` bytes) and without PSH or FIN. Nothing is copied but the first
/// segment's headers: the super-frame is those headers and the segments'
/// payloads where they lie (sent with one gathering system call). Nothing
/// is allocated until a segment joins: most tunnel reads (ACKs, small
/// datagrams) never merge.
#[derive(Default)]
pub struct Coalescer<'a> {
    head: Vec<u8>,
    parts: Vec<&'a [u8]>,
    lay: Option<Layout>,
    mss: usize,
    payload: usize,
    next_seq: u32,
    flags: u8,
    closed: bool,
}

/// A merged frame: `head` then each of `parts`, in order.
pub struct Merged<'m, 'a> {
    pub head: &'m [u8],
    pub parts: &'m [&'a [u8]],
}

impl Merged<'_, '_> {
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head.to_vec();
        for p in self.parts {
            v.extend_from_slice(p);
        }
        v
    }
}

impl<'a> Coalescer<'a> {
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The segments merged so far.
    pub fn segments(&self) -> usize {
        self.parts.len()
    }

    /// Adds `frame` if it continues what is held (or starts anew when
    /// nothing is). False: take what is held first, or send `frame` as is.
    pub fn push(&mut self, frame: &'a [u8]) -> bool {
        let Ok(lay) = layout(frame) else {
            return false;
        };
        if !lay.v4 || lay.proto != Protocol::TCP {
            return false;
        }
        let flags = frame[lay.l4 + 13];
        let len = lay.end - lay.hdrs;
        if len == 0 || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
            return false;
        }
        let seq = be32(frame, lay.l4 + 4);
        let Some(held) = self.lay else {
            self.head.clear();
            self.head.extend_from_slice(&frame[..lay.hdrs]);
            self.parts.clear();
            self.parts.push(&frame[lay.hdrs..lay.end]);
            self.lay = Some(lay);
            self.mss = len;
            self.payload = len;
            self.next_seq = seq.wrapping_add(len as u32);
            self.flags = flags;
            self.closed = flags & TCP_PSH != 0;
            return true;
        };
        let b = &self.head;
        let same = |r: std::ops::Range<usize>| b[r.clone()] == frame[r];
        let l3 = held.l3;
        let l4 = held.l4;
        if self.closed
            || lay.l3 != held.l3
            || lay.l4 != held.l4
            || lay.hdrs != held.hdrs
            || len > self.mss
            || seq != self.next_seq
            || held.hdrs - l3 + self.payload + len > usize::from(u16::MAX)
            || !same(0..l3 + 2)
            || !same(l3 + 6..l3 + 10)
            || !same(l3 + 12..l4 + 4)
            || !same(l4 + 8..l4 + 13)
            || !same(l4 + 14..l4 + 16)
            || !same(l4 + 18..held.hdrs)
        {
            return false;
        }
        self.parts.push(&frame[lay.hdrs..lay.end]);
        self.payload += len;
        self.next_seq = seq.wrapping_add(len as u32);
        self.flags |= flags;
        self.closed = len < self.mss || flags & TCP_PSH != 0;
        true
    }

    /// The frame held, ready to send, and what the receiver must finish:
    /// one segment goes as it came (complete); several go as a TCPv4
    /// super-frame with a partial checksum. Call [`Coalescer::clear`] after.
    pub fn finish(&mut self) -> Option<(Merged<'_, 'a>, Offload)> {
        let lay = self.lay?;
        if self.parts.len() == 1 {
            let m = Merged {
                head: &self.head,
                parts: &self.parts,
            };
            return Some((m, Offload::NONE));
        }
        let b = &mut self.head;
        let ip_len = (lay.hdrs - lay.l3 + self.payload) as u16;
        put16(b, lay.l3 + 2, ip_len);
        fill_ip4(b, lay.l3, lay.l4);
        b[lay.l4 + 13] = self.flags;
        let l4_len = lay.hdrs - lay.l4 + self.payload;
        let p = checksum::fold(pseudo(b, &lay, l4_len));
        put16(b, lay.l4 + usize::from(TCP_CSUM_OFFSET), p);
        let off = Offload {
            csum: Some(Csum {
                start: lay.l4 as u16,
                offset: TCP_CSUM_OFFSET,
            }),
            gso: Some(Gso {
                kind: GsoKind::Tcp4,
                size: self.mss as u16,
                hdr_len: lay.hdrs as u16,
                ecn: false,
            }),
        };
        let m = Merged {
            head: &self.head,
            parts: &self.parts,
        };
        Some((m, off))
    }

    pub fn clear(&mut self) {
        self.lay = None;
        self.parts.clear();
        self.payload = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnet::{complete_checksum, l4_of, refresh_partial};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    /// Writes the complete L4 checksum of `frame` (its field at `at`).
    fn fill_l4(frame: &mut [u8], lay: &Layout, at: usize) {
        put16(frame, at, 0);
        let len = lay.end - lay.l4;
        let ck = !checksum::fold(pseudo(frame, lay, len) + checksum::sum(&frame[lay.l4..lay.end]));
        put16(frame, at, ck);
    }

    /// An Ethernet/IPv4/TCP frame with `payload`, timestamps option,
    /// complete checksums.
    fn tcp4(payload: &[u8], seq: u32, flags: u8, id: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 32];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        put16(&mut f, 12, 0x0800);
        f[14] = 0x45;
        put16(&mut f, 16, (20 + 32 + payload.len()) as u16);
        put16(&mut f, 18, id);
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = Protocol::TCP;
        f[26..30].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 1).octets());
        f[30..34].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 2).octets());
        put16(&mut f, 34, 40000);
        put16(&mut f, 36, 5201);
        put32(&mut f, 38, seq);
        put32(&mut f, 42, 77);
        f[46] = 8 << 4;
        f[47] = flags;
        put16(&mut f, 48, 502);
        // NOP NOP timestamps
        f[54..66].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        f.extend_from_slice(payload);
        let lay = layout(&f).unwrap();
        fill_ip4(&mut f, 14, 34);
        fill_l4(&mut f, &lay, 34 + 16);
        f
    }

    fn valid(seg: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        let t = TcpPacket::new_checked(ip.payload()).unwrap();
        ip.verify_checksum() && t.verify_checksum(ip.src(), ip.dst())
    }

    const GSO4: Gso = Gso {
        kind: GsoKind::Tcp4,
        size: 1000,
        hdr_len: 66,
        ecn: false,
    };

    #[test]
    fn segments_have_their_own_lengths_ids_seqs_flags_and_checksums() {
        let data: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let sup = tcp4(&data, 1000, TCP_ACK | TCP_PSH | TCP_CWR | TCP_FIN, 7);
        let mut out = Vec::new();
        let cut = segment(&sup, &GSO4, 1000, &[0xee; 8], &mut out).unwrap();
        assert_eq!(
            cut,
            Cut {
                count: 3,
                size: 8 + 66 + 1000
            }
        );
        assert_eq!(out.len(), 3 * 8 + 3 * 66 + 2500);
        let mut rebuilt = Vec::new();
        for i in 0..3 {
            let s = &out[i * cut.size..((i + 1) * cut.size).min(out.len())];
            assert_eq!(&s[..8], &[0xee; 8]);
            let seg = &s[8..];
            assert!(valid(seg), "segment {i} checksums");
            let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
            let want = if i < 2 { 1000 } else { 500 };
            assert_eq!(ip.total_len() as usize, 20 + 32 + want);
            assert_eq!(ip.ident(), 7 + i as u16);
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(t.seq(), 1000 + 1000 * i as u32);
            let fl = t.flags();
            assert_eq!(
                fl & (TCP_FIN | TCP_PSH) != 0,
                i == 2,
                "FIN/PSH on the last only"
            );
            assert_eq!(fl & TCP_CWR != 0, i == 0, "CWR on the first only");
            rebuilt.extend_from_slice(&seg[66..]);
        }
        assert_eq!(rebuilt, data);
    }

    #[test]
    fn a_partial_super_frame_segments_to_valid_segments() {
        let data = vec![0x5a; 3000];
        let mut sup = tcp4(&data, 1, TCP_ACK, 1);
        let (l4, _, _) = l4_of(&sup).unwrap();
        refresh_partial(
            &mut sup,
            Csum {
                start: l4 as u16,
                offset: 16,
            },
        );
        let mut out = Vec::new();
        let cut = segment(&sup, &GSO4, 1448, &[], &mut out).unwrap();
        assert_eq!(cut.count, 3);
        for s in out.chunks(cut.size) {
            assert!(valid(s));
        }
    }

    #[test]
    fn coalescing_undoes_segmentation() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let sup = tcp4(&data, 555, TCP_ACK | TCP_PSH, 3);
        let mut out = Vec::new();
        let cut = segment(&sup, &GSO4, 1000, &[], &mut out).unwrap();
        let mut c = Coalescer::default();
        for s in out.chunks(cut.size) {
            assert!(c.push(s));
        }
        // After PSH nothing more joins.
        let later = tcp4(&[1], 5555, TCP_ACK, 9);
        assert!(!c.push(&later));
        assert_eq!(c.segments(), 5);
        let (f, off) = c.finish().unwrap();
        let mut f = f.to_vec();
        let g = off.gso.unwrap();
        assert_eq!((g.kind, g.size, g.hdr_len), (GsoKind::Tcp4, 1000, 66));
        complete_checksum(&mut f, off.csum.unwrap());
        assert_eq!(f, sup, "the super-frame comes back byte for byte");
        c.clear();
        assert!(c.is_empty());
    }

    #[test]
    fn coalescing_refuses_what_does_not_continue() {
        let frames = [
            tcp4(&[0; 100], 1, TCP_ACK, 1),
            tcp4(&[0; 100], 500, TCP_ACK, 2),
            tcp4(&[0; 200], 101, TCP_ACK, 2),
            tcp4(&[0; 100], 101, TCP_ACK | TCP_FIN, 2),
            {
                let mut other = tcp4(&[0; 100], 101, TCP_ACK, 2);
                put16(&mut other, 34, 1);
                other
            },
            tcp4(&[0; 50], 101, TCP_ACK, 2),
            tcp4(&[0; 50], 151, TCP_ACK, 3),
            tcp4(&[], 1, TCP_ACK, 1),
        ];
        let mut c = Coalescer::default();
        assert!(c.push(&frames[0]));
        assert!(!c.push(&frames[1]), "sequence gap");
        assert!(!c.push(&frames[2]), "larger than mss");
        assert!(!c.push(&frames[3]), "FIN");
        assert!(!c.push(&frames[4]), "another connection");
        assert!(c.push(&frames[5]));
        assert!(!c.push(&frames[6]), "after a short segment");
        assert!(!Coalescer::default().push(&frames[7]), "pure ACK");
    }

    #[test]
    fn fragments_reassemble() {
        let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut f = tcp4(&data, 1, TCP_ACK, 42);
        f[20] = 0; // no DF
        fill_ip4(&mut f, 14, 34);
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        fragment_ipv4(&f, 1400, &mut out, &mut spans).unwrap();
        assert_eq!(spans.len(), 3);
        let mut body = Vec::new();
        for (i, &(s, n)) in spans.iter().enumerate() {
            let ip = Ipv4Packet::new_checked(&out[s + 14..s + n]).unwrap();
            assert!(ip.total_len() <= 1400 && ip.verify_checksum());
            assert_eq!(ip.ident(), 42);
            assert_eq!(usize::from(ip.frag_offset()), body.len());
            assert_eq!(ip.more_frags(), i < 2);
            body.extend_from_slice(ip.payload());
        }
        assert_eq!(body, f[34..]);
        let mut df = f.clone();
        df[20] = 0x40;
        assert!(fragment_ipv4(&df, 1400, &mut out, &mut spans).is_err());
    }

    proptest! {
        #[test]
        fn segment_then_coalesce_is_identity(len in 1usize..20000, mss in 1usize..3000, seq: u32, id: u16) {
            let data: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let sup = tcp4(&data, seq, TCP_ACK | TCP_PSH, id);
            let mut out = Vec::new();
            let cut = segment(&sup, &GSO4, mss, &[], &mut out).unwrap();
            prop_assert_eq!(cut.count, len.div_ceil(mss));
            let mut c = Coalescer::default();
            for s in out.chunks(cut.size) {
                prop_assert!(valid(s));
                prop_assert!(c.push(s));
            }
            let (f, off) = c.finish().unwrap();
            let mut f = f.to_vec();
            if let Some(cs) = off.csum {
                complete_checksum(&mut f, cs);
            }
            prop_assert_eq!(f, sup);
        }

        #[test]
        fn segment_takes_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..300), mss in 0usize..100) {
            let mut out = Vec::new();
            let _ = segment(&b, &GSO4, mss, &[], &mut out);
            let _ = fragment_ipv4(&b, mss, &mut out, &mut Vec::new());
            let mut c = Coalescer::default();
            let _ = c.push(&b);
            let _ = c.push(&b);
            let _ = c.finish();
        }
    }
}

//! DHCPv4 (RFC 2131/2132) and classless static routes (RFC 3442): requests
//! parsed, replies built.

use crate::ethernet::Mac;
use crate::{Error, Result, be16, be32, put16, put32};
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: u32 = 0x6382_5363;
const OPTIONS_AT: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DhcpMessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl DhcpMessageType {
    fn from_u8(v: u8) -> Option<Self> {
        use DhcpMessageType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// The options MidoNet serves, and any other kept as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DhcpOption {
    SubnetMask(Ipv4Addr),
    Router(Vec<Ipv4Addr>),
    DnsServers(Vec<Ipv4Addr>),
    HostName(String),
    InterfaceMtu(u16),
    Broadcast(Ipv4Addr),
    RequestedIp(Ipv4Addr),
    LeaseTime(u32),
    MessageType(DhcpMessageType),
    ServerId(Ipv4Addr),
    ParameterList(Vec<u8>),
    RenewalTime(u32),
    RebindingTime(u32),
    /// Option 121: (destination, prefix length, gateway).
    ClasslessRoutes(Vec<(Ipv4Addr, u8, Ipv4Addr)>),
    Other(u8, Vec<u8>),
}

fn ips(v: &[u8]) -> Result<Vec<Ipv4Addr>> {
    if v.is_empty() || !v.len().is_multiple_of(4) {
        return Err(Error);
    }
    Ok(v.chunks(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
        .collect())
}

fn ip(v: &[u8]) -> Result<Ipv4Addr> {
    if v.len() != 4 {
        return Err(Error);
    }
    Ok(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
}

fn u32v(v: &[u8]) -> Result<u32> {
    if v.len() != 4 {
        return Err(Error);
    }
    Ok(be32(v, 0))
}

impl DhcpOption {
    fn parse(code: u8, v: &[u8]) -> Result<Self> {
        Ok(match code {
            1 => DhcpOption::SubnetMask(ip(v)?),
            3 => DhcpOption::Router(ips(v)?),
            6 => DhcpOption::DnsServers(ips(v)?),
            12 => DhcpOption::HostName(String::from_utf8_lossy(v).into_owned()),
            26 if v.len() == 2 => DhcpOption::InterfaceMtu(be16(v, 0)),
            28 => DhcpOption::Broadcast(ip(v)?),
            50 => DhcpOption::RequestedIp(ip(v)?),
            51 => DhcpOption::LeaseTime(u32v(v)?),
            53 if v.len() == 1 => {
                DhcpOption::MessageType(DhcpMessageType::from_u8(v[0]).ok_or(Error)?)
            }
            54 => DhcpOption::ServerId(ip(v)?),
            55 => DhcpOption::ParameterList(v.to_vec()),
            58 => DhcpOption::RenewalTime(u32v(v)?),
            59 => DhcpOption::RebindingTime(u32v(v)?),
            121 => {
                let mut routes = Vec::new();
                let mut at = 0;
                while at < v.len() {
                    let len = v[at];
                    let n = usize::from(len).div_ceil(8);
                    if len > 32 || at + 1 + n + 4 > v.len() {
                        return Err(Error);
                    }
                    let mut d = [0u8; 4];
                    d[..n].copy_from_slice(&v[at + 1..at + 1 + n]);
                    let gw = ip(&v[at + 1 + n..at + 5 + n])?;
                    routes.push((Ipv4Addr::from(d), len, gw));
                    at += 5 + n;
                }
                DhcpOption::ClasslessRoutes(routes)
            }
            c => DhcpOption::Other(c, v.to_vec()),
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        let mut put = |code: u8, v: &[u8]| {
            // Values longer than 255 bytes are split (RFC 3396); ours never are.
            out.push(code);
            out.push(v.len().min(255) as u8);
            out.extend_from_slice(&v[..v.len().min(255)]);
        };
        let cat = |v: &[Ipv4Addr]| v.iter().flat_map(|a| a.octets()).collect::<Vec<u8>>();
        match self {
            DhcpOption::SubnetMask(a) => put(1, &a.octets()),
            DhcpOption::Router(v) => put(3, &cat(v)),
            DhcpOption::DnsServers(v) => put(6, &cat(v)),
            DhcpOption::HostName(s) => put(12, s.as_bytes()),
            DhcpOption::InterfaceMtu(m) => put(26, &m.to_be_bytes()),
            DhcpOption::Broadcast(a) => put(28, &a.octets()),
            DhcpOption::RequestedIp(a) => put(50, &a.octets()),
            DhcpOption::LeaseTime(t) => put(51, &t.to_be_bytes()),
            DhcpOption::MessageType(t) => put(53, &[*t as u8]),
            DhcpOption::ServerId(a) => put(54, &a.octets()),
            DhcpOption::ParameterList(v) => put(55, v),
            DhcpOption::RenewalTime(t) => put(58, &t.to_be_bytes()),
            DhcpOption::RebindingTime(t) => put(59, &t.to_be_bytes()),
            DhcpOption::ClasslessRoutes(routes) => {
                let mut v = Vec::new();
                for (d, len, gw) in routes {
                    v.push(*len);
                    v.extend_from_slice(&d.octets()[..usize::from(*len).div_ceil(8)]);
                    v.extend_from_slice(&gw.octets());
                }
                put(121, &v)
            }
            DhcpOption::Other(c, v) => put(*c, v),
        }
    }
}

/// A view of a BOOTP/DHCP message (the UDP payload).
pub struct DhcpPacket<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> DhcpPacket<T> {
    pub fn new_checked(buf: T) -> Result<Self> {
        let b = buf.as_ref();
        // Ethernet hardware with 6-byte addresses, and the DHCP magic cookie.
        if b.len() < OPTIONS_AT || b[1] != 1 || b[2] != 6 || be32(b, 236) != MAGIC {
            return Err(Error);
        }
        Ok(DhcpPacket { buf })
    }
    pub fn op(&self) -> u8 {
        self.buf.as_ref()[0]
    }
    pub fn xid(&self) -> u32 {
        be32(self.buf.as_ref(), 4)
    }
    pub fn flags(&self) -> u16 {
        be16(self.buf.as_ref(), 10)
    }
    fn addr(&self, at: usize) -> Ipv4Addr {
        ip(&self.buf.as_ref()[at..at + 4]).unwrap_or(Ipv4Addr::UNSPECIFIED)
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.addr(12)
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.addr(16)
    }
    pub fn siaddr(&self) -> Ipv4Addr {
        self.addr(20)
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        self.addr(24)
    }
    pub fn client_mac(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.buf.as_ref()[28..34]);
        Mac(m)
    }
    /// The options in order, up to END; a malformed option is an error.
    pub fn options(&self) -> Result<Vec<DhcpOption>> {
        let b = self.buf.as_ref();
        let mut out = Vec::new();
        let mut at = OPTIONS_AT;
        while at < b.len() {
            match b[at] {
                0 => at += 1,
                255 => return Ok(out),
                code => {
                    if at + 2 > b.len() {
                        return Err(Error);
                    }
                    let len = usize::from(b[at + 1]);
                    if at + 2 + len > b.len() {
                        return Err(Error);
                    }
                    out.push(DhcpOption::parse(code, &b[at + 2..at + 2 + len])?);
                    at += 2 + len;
                }
            }
        }
        Err(Error) // no END option
    }
}

/// A DHCP message to build (a server's reply) or parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpRepr {
    /// 1 = BOOTREQUEST, 2 = BOOTREPLY.
    pub op: u8,
    pub xid: u32,
    pub flags: u16,
    pub client_ip: Ipv4Addr,
    pub your_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    pub relay_ip: Ipv4Addr,
    pub client_mac: Mac,
    pub options: Vec<DhcpOption>,
}

impl DhcpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &DhcpPacket<T>) -> Result<Self> {
        Ok(DhcpRepr {
            op: p.op(),
            xid: p.xid(),
            flags: p.flags(),
            client_ip: p.ciaddr(),
            your_ip: p.yiaddr(),
            server_ip: p.siaddr(),
            relay_ip: p.giaddr(),
            client_mac: p.client_mac(),
            options: p.options()?,
        })
    }

    pub fn message_type(&self) -> Option<DhcpMessageType> {
        self.options.iter().find_map(|o| match o {
            DhcpOption::MessageType(t) => Some(*t),
            _ => None,
        })
    }

    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.options.iter().find_map(|o| match o {
            DhcpOption::RequestedIp(a) => Some(*a),
            _ => None,
        })
    }

    /// The whole message, padded to the 300-byte BOOTP minimum.
    pub fn emit(&self) -> Vec<u8> {
        let mut b = vec![0u8; OPTIONS_AT];
        b[0] = self.op;
        b[1] = 1;
        b[2] = 6;
        put32(&mut b, 4, self.xid);
        put16(&mut b, 10, self.flags);
        b[12..16].copy_from_slice(&self.client_ip.octets());
        b[16..20].copy_from_slice(&self.your_ip.octets());
        b[20..24].copy_from_slice(&self.server_ip.octets());
        b[24..28].copy_from_slice(&self.relay_ip.octets());
        b[28..34].copy_from_slice(&self.client_mac.0);
        put32(&mut b, 236, MAGIC);
        for o in &self.options {
            o.emit(&mut b);
        }
        b.push(255);
        if b.len() < 300 {
            b.resize(300, 0);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captures::{DHCP, frames};

    fn dhcp(frame: &[u8]) -> &[u8] {
        &frame[42..]
    }

    #[test]
    fn real_exchange_with_dnsmasq() {
        let f = frames(DHCP);
        let discover = DhcpRepr::parse(&DhcpPacket::new_checked(dhcp(f[0])).unwrap()).unwrap();
        assert_eq!(discover.message_type(), Some(DhcpMessageType::Discover));
        assert_eq!(discover.client_mac, Mac([2, 0, 0, 0, 0, 1]));
        let offer = DhcpRepr::parse(&DhcpPacket::new_checked(dhcp(f[1])).unwrap()).unwrap();
        assert_eq!(offer.message_type(), Some(DhcpMessageType::Offer));
        assert_eq!(offer.xid, discover.xid);
        assert!(offer.options.contains(&DhcpOption::InterfaceMtu(1450)));
        assert!(
            offer
                .options
                .contains(&DhcpOption::DnsServers(vec!["10.0.0.53".parse().unwrap()]))
        );
        assert!(offer.options.contains(&DhcpOption::ClasslessRoutes(vec![
            (
                "172.16.0.0".parse().unwrap(),
                12,
                "10.0.0.2".parse().unwrap()
            ),
            ("0.0.0.0".parse().unwrap(), 0, "10.0.0.2".parse().unwrap()),
        ])));
        let request = DhcpRepr::parse(&DhcpPacket::new_checked(dhcp(f[2])).unwrap()).unwrap();
        assert_eq!(request.requested_ip(), Some(offer.your_ip));
        // Re-emitting what we parsed reproduces the real messages' bytes.
        for frame in &f {
            let raw = dhcp(frame);
            let r = DhcpRepr::parse(&DhcpPacket::new_checked(raw).unwrap()).unwrap();
            let out = r.emit();
            let end = out.iter().rposition(|b| *b == 255).unwrap();
            assert_eq!(&out[..=end], &raw[..=end], "up to the END option");
        }
    }

    #[test]
    fn malformed_options() {
        let f = frames(DHCP);
        let mut b = dhcp(f[1]).to_vec();
        b[OPTIONS_AT + 1] = 200; // first option claims more bytes than remain... maybe
        let truncated = &b[..OPTIONS_AT + 4];
        assert!(
            DhcpPacket::new_checked(truncated)
                .unwrap()
                .options()
                .is_err()
        );
        let mut no_magic = dhcp(f[0]).to_vec();
        no_magic[236] = 0;
        assert!(DhcpPacket::new_checked(&no_magic[..]).is_err());
        let bad121 = DhcpOption::parse(121, &[40, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(bad121.is_err());
    }
}

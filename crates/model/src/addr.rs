use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An Ethernet address, written `aa:bb:cc:dd:ee:ff` (`-` separators accepted on input).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random locally administered unicast MAC, as MidoNet gives router ports.
    pub fn random_local(rng: &mut impl rand::Rng) -> Self {
        let mut b: [u8; 6] = rng.random();
        b[0] = (b[0] & 0xfc) | 0x02;
        MacAddr(b)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid MAC address \"{0}\"")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(BadMac(s.into()));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || p.len() > 2 {
                return Err(BadMac(s.into()));
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| BadMac(s.into()))?;
        }
        Ok(MacAddr(b))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A MAC mask in MidoNet's `ffff.ffff.0000` form (three groups of 16 bits).
pub fn parse_mac_mask(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let mut v = 0u64;
    for p in parts {
        if p.len() != 4 {
            return None;
        }
        v = (v << 16) | u64::from_str_radix(p, 16).ok()?;
    }
    Some(v)
}

/// An IPv4 prefix: an address and a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Prefix {
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32).then_some(Ipv4Prefix { addr, len })
    }
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) & self.mask()) == (u32::from(self.addr) & self.mask())
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, l) = s
            .split_once(['/', '_'])
            .ok_or_else(|| format!("invalid CIDR \"{s}\""))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid CIDR \"{s}\""))?;
        let len: u8 = l.parse().map_err(|_| format!("invalid CIDR \"{s}\""))?;
        Ipv4Prefix::new(addr, len).ok_or_else(|| format!("invalid CIDR \"{s}\": length above 32"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_dashes() {
        let m: MacAddr = "AA-bb-cc-00-01-02".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:cc:00:01:02");
        assert!("aa:bb:cc:00:01".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:00:01:zz".parse::<MacAddr>().is_err());
        assert!("aaa:bb:cc:00:01:02".parse::<MacAddr>().is_err());
    }

    #[test]
    fn random_mac_is_local_unicast() {
        let m = MacAddr::random_local(&mut rand::rng());
        assert_eq!(m.0[0] & 0x03, 0x02);
    }

    #[test]
    fn mask_and_prefix() {
        assert_eq!(parse_mac_mask("ffff.ffff.0000"), Some(0xffff_ffff_0000));
        assert_eq!(parse_mac_mask("ffff.ffff"), None);
        let p: Ipv4Prefix = "10.0.0.0/24".parse().unwrap();
        assert!(p.contains("10.0.0.77".parse().unwrap()));
        assert!(!p.contains("10.0.1.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Ipv4Prefix>().is_err());
        assert_eq!("10.0.0.0_16".parse::<Ipv4Prefix>().unwrap().len, 16);
    }
}

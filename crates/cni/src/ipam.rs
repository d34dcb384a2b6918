//! Addresses from a bridge's DHCP subnet: each container's is a static
//! DHCP host of that subnet (its MAC and address), so the agent's DHCP
//! server and the plugin agree on who holds what. The API refuses a second
//! host with a taken address (a claim, first wins across servers): an ADD
//! that loses a race picks again.

use std::collections::HashSet;
use std::net::Ipv4Addr;

/// A DHCP subnet as the plugin uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub prefix: Ipv4Addr,
    pub len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub mtu: Option<u32>,
}

impl Subnet {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        let mask = mask(self.len);
        u32::from(a) & mask == u32::from(self.prefix) & mask
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// The first address of `s` that is not its network or broadcast address,
/// its gateway, or in `used`.
pub fn pick(s: &Subnet, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    if s.len > 30 {
        return None;
    }
    let base = u32::from(s.prefix) & mask(s.len);
    let size = 1u64 << (32 - u32::from(s.len));
    (1..size - 1)
        .map(|i| Ipv4Addr::from(base + i as u32))
        .find(|a| Some(*a) != s.gateway && !used.contains(a))
}

/// A container's MAC: locally administered, from the port's id (the same
/// port always gets the same MAC).
pub fn mac_of(port: &[u8; 16]) -> [u8; 6] {
    [0x02, port[0], port[1], port[2], port[3], port[4]]
}

pub fn mac_string(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(len: u8) -> Subnet {
        Subnet {
            prefix: "10.1.0.0".parse().unwrap(),
            len,
            gateway: Some("10.1.0.1".parse().unwrap()),
            mtu: None,
        }
    }

    #[test]
    fn picks_around_the_gateway_and_taken_addresses() {
        let mut used = HashSet::new();
        assert_eq!(pick(&net(24), &used), Some("10.1.0.2".parse().unwrap()));
        used.insert("10.1.0.2".parse().unwrap());
        used.insert("10.1.0.3".parse().unwrap());
        assert_eq!(pick(&net(24), &used), Some("10.1.0.4".parse().unwrap()));
        // A /30 has two hosts: the gateway and one more.
        assert_eq!(
            pick(&net(30), &HashSet::new()),
            Some("10.1.0.2".parse().unwrap())
        );
        let full: HashSet<Ipv4Addr> = ["10.1.0.2".parse().unwrap()].into();
        assert_eq!(pick(&net(30), &full), None);
        assert_eq!(pick(&net(31), &HashSet::new()), None);
        assert!(net(24).contains("10.1.0.200".parse().unwrap()));
        assert!(!net(24).contains("10.1.1.2".parse().unwrap()));
    }

    #[test]
    fn mac_is_local_and_from_the_port() {
        let id = [
            0xab, 0xcd, 0xef, 0x01, 0x23, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
        ];
        assert_eq!(mac_string(&mac_of(&id)), "02:ab:cd:ef:01:23");
    }
}

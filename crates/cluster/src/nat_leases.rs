//! SNAT port-block leasing: a host asks for a block of 64 ports of a router's
//! NAT address and owns it while its session lives (an ephemeral NSDB key
//! `NatBlock/<router>/<ip>/<block>` naming the host), so dynamic SNAT on two
//! gateways never picks the same port. A host re-claims the blocks it held
//! after a reconnect or restart; a block another host holds is refused.

use nsdb::{SessionId, Store};
use rand::Rng;
use sim::{NAT_BLOCK_PORTS, nat_block_ports};
use std::net::Ipv4Addr;
use topology_proto::v1::{NatLease, NatLeaseReply};
use uuid::Uuid;

fn key(device: Uuid, ip: Ipv4Addr, block: u16) -> String {
    format!("NatBlock/{device}/{ip}/{block}")
}

/// Handles one lease, claim or release from `host` in `session`.
pub fn handle(
    store: &dyn Store,
    session: SessionId,
    host: Option<Uuid>,
    l: &NatLease,
) -> NatLeaseReply {
    let mut reply = NatLeaseReply {
        request_id: l.request_id,
        device_id: l.device_id.clone(),
        ip: l.ip.clone(),
        ..Default::default()
    };
    let parsed = (
        host,
        Uuid::parse_str(&l.device_id),
        l.ip.parse::<Ipv4Addr>(),
    );
    let (Some(host), Ok(device), Ok(ip)) = parsed else {
        reply.message = match parsed {
            (None, ..) => "lease before hello: the host is not registered".into(),
            (_, Err(_), _) => format!("device id \"{}\" is not a UUID", l.device_id),
            _ => format!("\"{}\" is not an IPv4 address", l.ip),
        };
        return reply;
    };
    let held_by = |b: u16| -> Option<(SessionId, String)> {
        store
            .get_ephemeral(&key(device, ip, b))
            .map(|(s, v)| (s, String::from_utf8_lossy(&v).into_owned()))
    };
    let me = host.to_string();
    if l.release {
        let b = l.block as u16;
        if matches!(held_by(b), Some((s, _)) if s == session) {
            let _ = store.delete_ephemeral(session, &key(device, ip, b));
        }
        reply.granted = true;
        reply.block = l.block;
        return reply;
    }
    let claim = |b: u16| store.put_ephemeral(session, &key(device, ip, b), me.clone().into_bytes());
    if l.specific {
        let b = l.block.min(u16::MAX as u32) as u16;
        reply.block = b.into();
        match held_by(b) {
            // Free, or held by this host's previous session: take it over.
            None => reply.granted = claim(b).is_ok(),
            Some((_, owner)) if owner == me => reply.granted = claim(b).is_ok(),
            Some((_, owner)) => reply.message = format!("block {b} is held by host {owner}"),
        }
        return reply;
    }
    let lo = (l.port_lo.min(65535) as u16) / NAT_BLOCK_PORTS;
    let hi = (l.port_hi.min(65535) as u16) / NAT_BLOCK_PORTS;
    if lo > hi {
        reply.message = format!("empty port range {}-{}", l.port_lo, l.port_hi);
        return reply;
    }
    // From a random block on, so hosts do not all contend for the first ones.
    let n = u32::from(hi - lo) + 1;
    let start = rand::rng().random_range(0..n);
    for i in 0..n {
        let b = lo + ((start + i) % n) as u16;
        let (bl, bh) = nat_block_ports(b);
        // A block must overlap the range by at least one port.
        if bh < l.port_lo as u16 || bl > l.port_hi as u16 || held_by(b).is_some() {
            continue;
        }
        // First writer wins in the store (an ephemeral create in
        // ZooKeeper), so servers handing out blocks never give one twice.
        if store.claim_ephemeral(session, &key(device, ip, b), me.clone().into_bytes()) == Ok(true)
        {
            reply.granted = true;
            reply.block = b.into();
            return reply;
        }
    }
    reply.message = format!(
        "no free port block for {ip} on router {device} in ports {}-{}",
        l.port_lo, l.port_hi
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use nsdb::LocalStore;

    fn lease(device: Uuid, lo: u32, hi: u32) -> NatLease {
        NatLease {
            request_id: 7,
            device_id: device.to_string(),
            ip: "198.51.100.1".into(),
            port_lo: lo,
            port_hi: hi,
            ..Default::default()
        }
    }

    #[test]
    fn two_hosts_never_share_a_block_and_blocks_die_with_the_session() {
        let store = LocalStore::in_memory();
        let (h1, h2) = (Uuid::new_v4(), Uuid::new_v4());
        let (s1, s2) = (store.open_session(), store.open_session());
        let r = Uuid::new_v4();
        // Ports 1024..=1279: four blocks (16..=19).
        let mut got = std::collections::HashSet::new();
        for (s, h) in [(s1, h1), (s2, h2), (s1, h1), (s2, h2)] {
            let rep = handle(&store, s, Some(h), &lease(r, 1024, 1279));
            assert!(rep.granted, "{}", rep.message);
            assert_eq!(rep.request_id, 7);
            assert!((16..=19).contains(&rep.block));
            assert!(
                got.insert(rep.block),
                "block {} handed out twice",
                rep.block
            );
        }
        let rep = handle(&store, s1, Some(h1), &lease(r, 1024, 1279));
        assert!(!rep.granted);
        assert!(
            rep.message.contains("no free port block"),
            "{}",
            rep.message
        );
        // Another host cannot claim h1's block; h1's new session can.
        let h1_block = (16..=19u32)
            .find(|b| {
                store
                    .get_ephemeral(&key(r, "198.51.100.1".parse().unwrap(), *b as u16))
                    .unwrap()
                    .0
                    == s1
            })
            .unwrap();
        let specific = NatLease {
            specific: true,
            block: h1_block,
            ..lease(r, 0, 0)
        };
        assert!(!handle(&store, s2, Some(h2), &specific).granted);
        let s1b = store.open_session();
        assert!(handle(&store, s1b, Some(h1), &specific).granted);
        // h2's session ends: its blocks are free again.
        store.close_session(s2).unwrap();
        let s3 = store.open_session();
        assert!(handle(&store, s3, Some(h2), &lease(r, 1024, 1279)).granted);
        // A release frees a block for others.
        let rel = NatLease {
            release: true,
            block: h1_block,
            ..lease(r, 0, 0)
        };
        assert!(handle(&store, s1b, Some(h1), &rel).granted);
        assert!(handle(&store, s3, Some(h2), &specific).granted);
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let store = LocalStore::in_memory();
        let s = store.open_session();
        let r = Uuid::new_v4();
        assert!(
            handle(&store, s, None, &lease(r, 1024, 2000))
                .message
                .contains("not registered")
        );
        let bad = NatLease {
            device_id: "x".into(),
            ..lease(r, 1, 2)
        };
        assert!(
            handle(&store, s, Some(r), &bad)
                .message
                .contains("not a UUID")
        );
        let bad = NatLease {
            ip: "nope".into(),
            ..lease(r, 1, 2)
        };
        assert!(handle(&store, s, Some(r), &bad).message.contains("IPv4"));
        assert!(!handle(&store, s, Some(r), &lease(r, 2000, 1024)).granted);
    }
}

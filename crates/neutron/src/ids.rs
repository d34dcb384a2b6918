//! The ids of what a Neutron object translates to, derived from its own id
//! (as MidoNet's translators did): a translation finds, rewrites and
//! deletes what it made without an index or a lookup.

use uuid::Uuid;

/// What was derived from an object.
#[derive(Clone, Copy)]
pub enum Derived {
    /// The chain on traffic entering the virtual network from a port or
    /// router (a router's pre-routing chain).
    InChain = 1,
    /// The chain on traffic leaving towards a port or router (post-routing).
    OutChain,
    /// A port's anti-spoofing chain.
    AntiSpoof,
    /// The router port a Neutron router-interface or gateway port becomes.
    RouterPort,
    /// The route to a router port's network.
    NetworkRoute,
    /// A gateway's default route.
    DefaultRoute,
    /// Gateway SNAT, reverse SNAT and the drop of unmapped traffic.
    Snat,
    RevSnat,
    SnatDrop,
    /// A floating IP's DNAT and SNAT.
    FipDnat,
    FipSnat,
    /// The Neutron port holding a floating IP's address.
    FipPort,
    /// The Neutron port of a router's gateway.
    GatewayPort,
    /// A router's extra routes (a series).
    ExtraRoute,
    /// A project's default security group.
    DefaultGroup,
    /// A project's quota record.
    Quota,
}

/// The id `what` derived from `id`: the id with its last bytes mixed with
/// a fixed pattern per derivation.
pub fn derived(id: Uuid, what: Derived) -> Uuid {
    let mut b = *id.as_bytes();
    let k = what as u8;
    for (i, x) in b.iter_mut().enumerate() {
        *x ^= 0x5a_u8.wrapping_mul(k).rotate_left(i as u32 % 8) ^ k;
    }
    Uuid::from_bytes(b)
}

/// The id `what` derived from a name (a project's default group, its
/// quotas), so finding it is one read.
pub fn named(name: &str, what: Derived) -> Uuid {
    // FNV-1a, twice with different offsets, for 128 bits.
    let h = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let (a, b) = (h(0xcbf2_9ce4_8422_2325), h(0x6c62_272e_07bb_0142));
    derived(
        uuid::Builder::from_u128((u128::from(a) << 64) | u128::from(b))
            .with_version(uuid::Version::Custom)
            .into_uuid(),
        what,
    )
}

/// The id of the `n`th thing of a series derived from `id` (an extra
/// route, a security-group rule's twin).
pub fn nth(id: Uuid, what: Derived, n: u16) -> Uuid {
    let mut b = *derived(id, what).as_bytes();
    b[0] ^= (n >> 8) as u8;
    b[1] ^= n as u8;
    Uuid::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivations_differ_from_the_id_and_each_other() {
        let id = Uuid::new_v4();
        let all = [
            Derived::InChain,
            Derived::OutChain,
            Derived::AntiSpoof,
            Derived::RouterPort,
            Derived::NetworkRoute,
            Derived::DefaultRoute,
            Derived::Snat,
            Derived::RevSnat,
            Derived::SnatDrop,
            Derived::FipDnat,
            Derived::FipSnat,
            Derived::FipPort,
            Derived::GatewayPort,
            Derived::ExtraRoute,
            Derived::DefaultGroup,
            Derived::Quota,
        ];
        let mut seen = std::collections::HashSet::from([id]);
        for d in all {
            assert!(seen.insert(derived(id, d)));
            assert_eq!(derived(id, d), derived(id, d), "deterministic");
        }
        assert_ne!(nth(id, Derived::InChain, 1), nth(id, Derived::InChain, 2));
    }
}

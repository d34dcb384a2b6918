//! BGP: the prefixes a router advertises and the peers it talks to.

use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpNetwork {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub router_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub subnet_address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub subnet_length: u8,
}
impl BgpNetwork {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("subnetAddress", &self.subnet_address);
        c.range("subnetLength", self.subnet_length.into(), 0, 32);
        c.finish()
    }
}
crate::object!(BgpNetwork, BgpNetwork);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BgpPeer {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub router_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::int")]
    pub as_number: i64,
    #[serde(deserialize_with = "lenient::opt")]
    pub address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub keep_alive: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub hold_time: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub connect_retry: Option<i64>,
    pub password: Option<String>,
    /// BFD (RFC 5880, single hop) beside the session: a dead link or
    /// gateway is noticed in `bfdInterval` × `bfdMultiplier` ms instead of
    /// the hold time. Not in MidoNet 5.2's API; its clients leave it off.
    #[serde(deserialize_with = "lenient::bool")]
    pub bfd_enabled: bool,
    /// Milliseconds between BFD packets, sent and wanted (default 300).
    #[serde(deserialize_with = "lenient::opt_int")]
    pub bfd_interval: Option<i64>,
    /// Packets missed before the peer is declared down (default 3).
    #[serde(deserialize_with = "lenient::opt_int")]
    pub bfd_multiplier: Option<i64>,
}

/// BFD's defaults, as FRR's and BIRD's.
pub const BFD_INTERVAL_MS: i64 = 300;
pub const BFD_MULTIPLIER: i64 = 3;

impl BgpPeer {
    /// The peer's BFD interval (ms) and multiplier, when BFD is on.
    pub fn bfd(&self) -> Option<(u32, u8)> {
        self.bfd_enabled.then(|| {
            (
                self.bfd_interval
                    .unwrap_or(BFD_INTERVAL_MS)
                    .clamp(10, 60_000) as u32,
                self.bfd_multiplier.unwrap_or(BFD_MULTIPLIER).clamp(2, 255) as u8,
            )
        })
    }

    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.range("asNumber", self.as_number, 1, u32::MAX as i64);
        c.require("address", &self.address);
        // bgpd's ranges (RFC 4271: a hold time of at least 3 s), wider
        // than MidoNet's 5 s floor: a 3 s hold is the fast failover
        // operators ask for.
        c.opt_range("keepAlive", self.keep_alive, 1, 3600);
        c.opt_range("holdTime", self.hold_time, 3, 7200);
        c.opt_range("connectRetry", self.connect_retry, 1, 3600);
        if let (Some(k), Some(h)) = (self.keep_alive, self.hold_time)
            && k >= h
        {
            c.fail("keepAlive", "must be shorter than holdTime");
        }
        // bfdd's ranges.
        c.opt_range("bfdInterval", self.bfd_interval, 10, 60_000);
        c.opt_range("bfdMultiplier", self.bfd_multiplier, 2, 255);
        c.finish()
    }
}
crate::object!(BgpPeer, BgpPeer);

/// Routes a gateway's bgpd learned, and its sessions' status, live in
/// replicated tables owned by the gateway agent's session: they go when
/// that session ends (its agent died, its host went down), and every agent
/// routes with them.
pub mod learned {
    use crate::device::{Route, RouteType};
    use serde::{Deserialize, Serialize};
    use std::net::Ipv4Addr;
    use uuid::Uuid;

    /// The table of a router's learned routes.
    pub const ROUTES: &str = "routes";
    /// The table of a router's BGP session status, one entry per peer.
    pub const STATUS: &str = "bgp";

    /// Learned routes weigh this much, as static routes do by default.
    pub const WEIGHT: i64 = 100;

    pub fn routes_table(router: Uuid) -> String {
        format!("{ROUTES}/{router}")
    }

    pub fn status_table(router: Uuid) -> String {
        format!("{STATUS}/{router}")
    }

    /// The router a learned-route table belongs to.
    pub fn routes_router(table: &str) -> Option<Uuid> {
        Uuid::parse_str(table.strip_prefix(ROUTES)?.strip_prefix('/')?).ok()
    }

    pub fn status_router(table: &str) -> Option<Uuid> {
        Uuid::parse_str(table.strip_prefix(STATUS)?.strip_prefix('/')?).ok()
    }

    /// A learned route's key: one per prefix, gateway and uplink (ECMP
    /// routes to one prefix are several entries).
    pub fn route_key(dst: Ipv4Addr, len: u8, gateway: Ipv4Addr, port: Uuid) -> String {
        format!("{dst}/{len}-{gateway}-{port}")
    }

    /// The route learned through uplink `port` of `router` from `gateway`.
    pub fn route(
        id: Uuid,
        router: Uuid,
        port: Uuid,
        dst: Ipv4Addr,
        len: u8,
        gateway: Ipv4Addr,
    ) -> Route {
        Route {
            id,
            route_type: Some(RouteType::Normal),
            src_network_addr: Some(Ipv4Addr::UNSPECIFIED),
            src_network_length: 0,
            dst_network_addr: Some(dst),
            dst_network_length: len.min(32),
            next_hop_port: Some(port),
            next_hop_gateway: Some(gateway),
            weight: WEIGHT,
            attributes: None,
            learned: true,
            router_id: Some(router),
        }
    }

    /// A learned route as stored in its table: only one that is whole and
    /// marked learned, of the table's router.
    pub fn decode_route(table: &str, value: &str) -> Option<Route> {
        let router = routes_router(table)?;
        let r: Route = serde_json::from_str(value).ok()?;
        (r.learned
            && r.router_id == Some(router)
            && r.next_hop_port.is_some()
            && r.next_hop_gateway.is_some()
            && r.dst_network_addr.is_some()
            && r.dst_network_length <= 32
            && !r.id.is_nil())
        .then_some(r)
    }

    /// One BGP session as its gateway reports it.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    pub struct PeerStatus {
        /// The uplink port whose bgpd holds the session, and its host.
        pub port_id: Option<Uuid>,
        pub host_id: Option<Uuid>,
        /// bgpd's state: Idle, Connect, Active, OpenSent, OpenConfirm,
        /// Established (and why it is down, as FRR says it: "Idle (PfxCt)").
        pub state: String,
        /// Unix seconds when the session came up, while it is up.
        pub established_at: Option<u64>,
        pub prefixes_received: u64,
        pub prefixes_sent: u64,
        /// Why the session is not what the model asks for, if known.
        pub message: Option<String>,
        /// The BFD session's state when BFD is on (bfdd's words: up,
        /// down, init).
        pub bfd: Option<String>,
    }
}

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
}
impl BgpPeer {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.range("asNumber", self.as_number, 1, u32::MAX as i64);
        c.require("address", &self.address);
        c.opt_range("keepAlive", self.keep_alive, 5, 3600);
        c.opt_range("holdTime", self.hold_time, 5, 7200);
        c.opt_range("connectRetry", self.connect_retry, 5, 3600);
        c.finish()
    }
}
crate::object!(BgpPeer, BgpPeer);

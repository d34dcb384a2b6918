//! L4 load balancing: a load balancer on a router, pools of members, VIPs and
//! health monitors.

use crate::error::{Checker, Invalid};
use crate::lenient;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancer {
    pub id: Uuid,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
    #[serde(deserialize_with = "lenient::opt")]
    pub router_id: Option<Uuid>,
}
impl LoadBalancer {
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
crate::object!(LoadBalancer, LoadBalancer);

/// Health checks of a router's pool members leave from a namespace on the
/// checking host, attached to the router by a port the cluster manages: the
/// port has this address on a /30, the namespace the next one.
pub const HEALTH_PORT_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 1);
pub const HEALTH_NS_ADDR: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 2);
pub const HEALTH_NET: Ipv4Addr = Ipv4Addr::new(169, 254, 255, 0);
pub const HEALTH_NET_LEN: u8 = 30;

/// The interface a router's health-check port is bound to on its host.
pub fn health_interface(router: Uuid) -> String {
    format!("hm-{}", &router.simple().to_string()[..8])
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HealthMonitor {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub monitor_type: Option<String>,
    #[serde(deserialize_with = "lenient::int")]
    pub delay: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub timeout: i64,
    #[serde(deserialize_with = "lenient::int")]
    pub max_retries: i64,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
}
impl HealthMonitor {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        match self.monitor_type.as_deref() {
            Some("TCP") => {}
            Some(t) => c.fail(
                "type",
                format!("unsupported health monitor type \"{t}\", expected TCP"),
            ),
            None => c.fail("type", "may not be null"),
        }
        c.range("delay", self.delay, 0, i32::MAX as i64);
        c.range("timeout", self.timeout, 0, i32::MAX as i64);
        c.range("maxRetries", self.max_retries, 0, i32::MAX as i64);
        c.finish()
    }
}
crate::object!(HealthMonitor, HealthMonitor);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pool {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub load_balancer_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub health_monitor_id: Option<Uuid>,
    pub lb_method: Option<String>,
    pub protocol: Option<String>,
    pub status: Option<String>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
}
impl Pool {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("loadBalancerId", &self.load_balancer_id);
        match self.lb_method.as_deref() {
            Some("ROUND_ROBIN") => {}
            Some(m) => c.fail(
                "lbMethod",
                format!("unsupported method \"{m}\", expected ROUND_ROBIN"),
            ),
            None => c.fail("lbMethod", "may not be null"),
        }
        c.finish()
    }
}
crate::object!(Pool, Pool);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PoolMember {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub pool_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub protocol_port: i64,
    #[serde(deserialize_with = "lenient::opt_int")]
    pub weight: Option<i64>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
    pub status: Option<String>,
}
impl PoolMember {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("poolId", &self.pool_id);
        c.require("address", &self.address);
        c.range("protocolPort", self.protocol_port, 0, 65535);
        c.opt_range("weight", self.weight, 1, i32::MAX as i64);
        c.finish()
    }
}
crate::object!(PoolMember, PoolMember);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Vip {
    pub id: Uuid,
    #[serde(deserialize_with = "lenient::opt")]
    pub pool_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub load_balancer_id: Option<Uuid>,
    #[serde(deserialize_with = "lenient::opt")]
    pub address: Option<Ipv4Addr>,
    #[serde(deserialize_with = "lenient::int")]
    pub protocol_port: i64,
    pub session_persistence: Option<String>,
    #[serde(
        default = "lenient::default_true",
        deserialize_with = "lenient::bool_true"
    )]
    pub admin_state_up: bool,
}
impl Vip {
    fn check(&self) -> Result<(), Invalid> {
        let mut c = Checker::default();
        c.require("poolId", &self.pool_id);
        c.require("address", &self.address);
        c.range("protocolPort", self.protocol_port, 0, 65535);
        match self.session_persistence.as_deref() {
            None | Some("SOURCE_IP") => {}
            Some(p) => c.fail(
                "sessionPersistence",
                format!("unsupported \"{p}\", expected SOURCE_IP or null"),
            ),
        }
        c.finish()
    }
}
crate::object!(Vip, Vip);

//! Load balancers, pools, members, VIPs and health monitors.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::rest::{Links, Resource, link, list_owned_by, opt_link};
use crate::topo::Writer;
use model::{HealthMonitor, LoadBalancer, Pool, PoolMember, Vip};
use uuid::Uuid;

impl Resource for LoadBalancer {
    const PATH: &'static str = "load_balancers";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert("router".into(), opt_link(base, "routers", self.router_id));
        m.insert(
            "pools".into(),
            link(base, format!("load_balancers/{}/pools", self.id)),
        );
        m.insert(
            "vips".into(),
            link(base, format!("load_balancers/{}/vips", self.id)),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        if self.router_id.is_some() {
            return Err(ApiError::bad_request(
                "routerId is read-only: attach a load balancer by setting the router's loadBalancerId",
            ));
        }
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        if self.router_id.is_some() && self.router_id != old.router_id {
            return Err(ApiError::bad_request(
                "routerId cannot be changed: set the router's loadBalancerId instead",
            ));
        }
        self.router_id = old.router_id;
        Ok(())
    }
}

impl Resource for HealthMonitor {
    const PATH: &'static str = "health_monitors";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "pools".into(),
            link(base, format!("health_monitors/{}/pools", self.id)),
        );
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.admin_state_up = true;
        Ok(())
    }
}

pub fn monitor_pools(app: &App, req: &Req) -> Result<Resp, ApiError> {
    list_owned_by::<HealthMonitor, Pool>(app, req, |p| p.health_monitor_id)
}

impl Resource for Pool {
    const PATH: &'static str = "pools";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "healthMonitor".into(),
            opt_link(base, "health_monitors", self.health_monitor_id),
        );
        m.insert(
            "loadBalancer".into(),
            opt_link(base, "load_balancers", self.load_balancer_id),
        );
        m.insert("vips".into(), link(base, format!("pools/{}/vips", self.id)));
        m.insert(
            "poolMembers".into(),
            link(base, format!("pools/{}/pool_members", self.id)),
        );
    }
    fn parent(&self) -> Option<Uuid> {
        self.load_balancer_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.load_balancer_id = Some(parent);
        Ok(())
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.protocol = Some("TCP".into());
        self.status = Some("ACTIVE".into());
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.protocol = old.protocol.clone();
        self.status = old.status.clone();
        if self.load_balancer_id.is_none() {
            self.load_balancer_id = old.load_balancer_id;
        }
        Ok(())
    }
    fn matches(&self, req: &Req) -> bool {
        match req.query.get("hm_id").and_then(|s| Uuid::parse_str(s).ok()) {
            Some(hm) => self.health_monitor_id == Some(hm),
            None => true,
        }
    }
}

impl Resource for PoolMember {
    const PATH: &'static str = "pool_members";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert("pool".into(), opt_link(base, "pools", self.pool_id));
    }
    fn parent(&self) -> Option<Uuid> {
        self.pool_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.pool_id = Some(parent);
        Ok(())
    }
    fn on_create(&mut self, _w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.weight.get_or_insert(1);
        self.status = Some("ACTIVE".into());
        self.admin_state_up = true;
        Ok(())
    }
    fn on_update(&mut self, old: &Self, _w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.address = old.address;
        self.protocol_port = old.protocol_port;
        self.status = old.status.clone();
        self.weight.get_or_insert(1);
        if self.pool_id.is_none() {
            self.pool_id = old.pool_id;
        }
        Ok(())
    }
}

impl Resource for Vip {
    const PATH: &'static str = "vips";
    fn links(&self, _app: &App, base: &str, m: &mut Links) {
        m.insert(
            "loadBalancer".into(),
            opt_link(base, "load_balancers", self.load_balancer_id),
        );
        m.insert("pool".into(), opt_link(base, "pools", self.pool_id));
    }
    fn parent(&self) -> Option<Uuid> {
        self.pool_id
    }
    fn set_parent(&mut self, _w: &mut Writer<'_>, parent: Uuid) -> Result<(), ApiError> {
        self.pool_id = Some(parent);
        Ok(())
    }
    fn on_create(&mut self, w: &mut Writer<'_>, _req: &Req) -> Result<(), ApiError> {
        self.derive_lb(w)
    }
    fn on_update(&mut self, old: &Self, w: &mut Writer<'_>) -> Result<(), ApiError> {
        if self.pool_id.is_none() {
            self.pool_id = old.pool_id;
        }
        self.derive_lb(w)
    }
}

trait DeriveLb {
    fn derive_lb(&mut self, w: &mut Writer<'_>) -> Result<(), ApiError>;
}

impl DeriveLb for Vip {
    /// A VIP belongs to its pool's load balancer.
    fn derive_lb(&mut self, w: &mut Writer<'_>) -> Result<(), ApiError> {
        self.load_balancer_id = match self.pool_id {
            Some(p) => w.tx.must::<Pool>(p, "poolId")?.load_balancer_id,
            None => None,
        };
        Ok(())
    }
}

pub fn lb_vips(app: &App, req: &Req) -> Result<Resp, ApiError> {
    list_owned_by::<LoadBalancer, Vip>(app, req, |v| v.load_balancer_id)
}

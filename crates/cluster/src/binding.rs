//! Port bindings: a port served by an interface of a host. The REST API's
//! host interface ports and an agent's local binding (`mm-ctl --bind-port`,
//! through the topology service) both come here.

use crate::App;
use crate::error::ApiError;
use model::{Host, Kind, Port, TunnelZone};
use uuid::Uuid;

/// Binds `port` to interface `iface` of `host`.
pub fn bind(app: &App, host: Uuid, port: Uuid, iface: &str) -> Result<(), ApiError> {
    if iface.is_empty() || iface.len() > 15 {
        return Err(ApiError::bad_request(format!(
            "interfaceName: \"{iface}\" must be 1 to 15 characters"
        )));
    }
    app.topo.write(|w| {
        w.tx.must::<Host>(host, "id")?;
        let mut p: Port = w.tx.must(port, "portId")?;
        if !w
            .tx
            .all::<TunnelZone>()?
            .iter()
            .any(|z| z.member(host).is_some())
        {
            return Err(ApiError::conflict(format!(
                "host {host} is in no tunnel zone; add it to one first"
            )));
        }
        if let Some(h) = p.host_id {
            return Err(ApiError::conflict(format!(
                "port {port} is already bound to host {h}"
            )));
        }
        if p.peer_id.is_some() {
            return Err(ApiError::conflict(format!(
                "port {port} is linked to another port; only unlinked ports bind"
            )));
        }
        let ports = w.tx.naming::<Port>("hostId", Kind::Host, host)?;
        if let Some(o) = ports
            .iter()
            .find(|o| o.interface_name.as_deref() == Some(iface))
        {
            return Err(ApiError::conflict(format!(
                "interface {iface} on host {host} is already bound to port {}",
                o.id
            )));
        }
        p.host_id = Some(host);
        p.interface_name = Some(iface.to_string());
        w.tx.put(&p);
        Ok(())
    })
}

/// Unbinds `port` from `host` (its connection state stays reachable there:
/// the host is remembered as the previous one).
pub fn unbind(app: &App, host: Uuid, port: Uuid) -> Result<(), ApiError> {
    app.topo.write(|w| {
        let mut p: Port = w.tx.must(port, "portId")?;
        if p.host_id != Some(host) {
            return Err(ApiError::not_found(format!(
                "port {port} is not bound to host {host}"
            )));
        }
        p.previous_host_id = p.host_id.take();
        p.interface_name = None;
        w.tx.put(&p);
        Ok(())
    })
}

//! The API's route table: every path, method, media type and handler. The
//! dispatcher and the OpenAPI description are both built from it, so the
//! description cannot drift from what is served.

use crate::App;
use crate::error::ApiError;
use crate::http::{Req, Resp};
use crate::resources::{chains, devices, dhcp, groups, hosts, lb, misc};
use crate::rest::{create, create_under, delete, delete_idempotent, get, list, list_under, update};
use axum::http::Method;
use model::*;

pub type Handler = fn(&App, &Req) -> Result<Resp, ApiError>;

pub struct ApiRoute {
    pub method: Method,
    /// Below the API root; `{name}` segments are parameters.
    pub path: &'static str,
    /// The vendor type name (`Bridge-v4`); the item or collection type is derived.
    pub ty: Option<&'static str>,
    /// A collection (list) response.
    pub list: bool,
    /// `application/json` is not accepted in place of the vendor type.
    pub strict: bool,
    pub check_content_type: bool,
    /// Served without authentication.
    pub public: bool,
    pub handler: Handler,
    pub summary: &'static str,
}

const fn r(
    method: Method,
    path: &'static str,
    ty: &'static str,
    list: bool,
    handler: Handler,
    summary: &'static str,
) -> ApiRoute {
    ApiRoute {
        method,
        path,
        ty: Some(ty),
        list,
        strict: false,
        check_content_type: true,
        public: false,
        handler,
        summary,
    }
}
const fn lst(
    path: &'static str,
    ty: &'static str,
    handler: Handler,
    summary: &'static str,
) -> ApiRoute {
    r(Method::GET, path, ty, true, handler, summary)
}
const fn one(
    path: &'static str,
    ty: &'static str,
    handler: Handler,
    summary: &'static str,
) -> ApiRoute {
    r(Method::GET, path, ty, false, handler, summary)
}
const fn post(
    path: &'static str,
    ty: &'static str,
    handler: Handler,
    summary: &'static str,
) -> ApiRoute {
    r(Method::POST, path, ty, false, handler, summary)
}
const fn put(
    path: &'static str,
    ty: &'static str,
    handler: Handler,
    summary: &'static str,
) -> ApiRoute {
    r(Method::PUT, path, ty, false, handler, summary)
}
const fn del(path: &'static str, handler: Handler, summary: &'static str) -> ApiRoute {
    ApiRoute {
        method: Method::DELETE,
        path,
        ty: None,
        list: false,
        strict: false,
        check_content_type: false,
        public: false,
        handler,
        summary,
    }
}
const fn strict(mut route: ApiRoute) -> ApiRoute {
    route.strict = true;
    route
}
const fn any_type(mut route: ApiRoute) -> ApiRoute {
    route.check_content_type = false;
    route
}

fn root(app: &App, req: &Req) -> Result<Resp, ApiError> {
    crate::root_document(app, req)
}

fn openapi(_app: &App, req: &Req) -> Result<Resp, ApiError> {
    let mut r = Resp::json(crate::openapi::document(&req.base));
    r.media = Some("application/json".into());
    Ok(r)
}

pub static ROUTES: &[ApiRoute] = &[
    ApiRoute {
        method: Method::GET,
        path: "",
        ty: Some("Application-v5"),
        list: false,
        strict: false,
        check_content_type: false,
        public: true,
        handler: root,
        summary: "The root document: links and templates to every resource",
    },
    ApiRoute {
        method: Method::POST,
        path: "login",
        ty: None,
        list: false,
        strict: false,
        check_content_type: false,
        public: true,
        handler: crate::auth::login,
        summary: "Log in with HTTP Basic credentials; returns a token (cookie sessionId)",
    },
    ApiRoute {
        method: Method::GET,
        path: "openapi.json",
        ty: None,
        list: false,
        strict: false,
        check_content_type: false,
        public: true,
        handler: openapi,
        summary: "This API's OpenAPI 3 description",
    },
    one(
        "system_state",
        "SystemState-v2",
        misc::system_state,
        "The cluster's state",
    ),
    strict(lst(
        "tenants",
        "Tenant-v2",
        misc::tenants,
        "Tenants owning objects",
    )),
    strict(one("tenants/{id}", "Tenant-v2", misc::tenant, "A tenant")),
    // Routers
    lst(
        "routers",
        "Router-v3",
        list::<Router>,
        "List routers (?tenant_id=)",
    ),
    post("routers", "Router-v3", create::<Router>, "Create a router"),
    one("routers/{id}", "Router-v3", get::<Router>, "Get a router"),
    put(
        "routers/{id}",
        "Router-v3",
        update::<Router>,
        "Replace a router",
    ),
    del(
        "routers/{id}",
        delete::<Router>,
        "Delete a router, its ports, routes and BGP objects",
    ),
    lst(
        "routers/{id}/ports",
        "Port-v3",
        list_under::<Port, Router>,
        "List a router's ports",
    ),
    post(
        "routers/{id}/ports",
        "Port-v3",
        devices::create_port_under::<Router>,
        "Create a router port (adds its LOCAL /32 route)",
    ),
    lst(
        "routers/{id}/peer_ports",
        "Port-v3",
        devices::peer_ports::<Router>,
        "Ports linked to the router's ports",
    ),
    lst(
        "routers/{id}/routes",
        "Route-v1",
        devices::router_routes,
        "The router's routes, including its ports' routes",
    ),
    post(
        "routers/{id}/routes",
        "Route-v1",
        create_under::<Route, Router>,
        "Add a route",
    ),
    lst(
        "routers/{id}/bgp_networks",
        "BgpNetwork-v1",
        list_under::<BgpNetwork, Router>,
        "Prefixes the router advertises",
    ),
    post(
        "routers/{id}/bgp_networks",
        "BgpNetwork-v1",
        create_under::<BgpNetwork, Router>,
        "Advertise a prefix",
    ),
    lst(
        "routers/{id}/bgp_peers",
        "BgpPeer-v1",
        list_under::<BgpPeer, Router>,
        "The router's BGP peers",
    ),
    post(
        "routers/{id}/bgp_peers",
        "BgpPeer-v1",
        create_under::<BgpPeer, Router>,
        "Add a BGP peer",
    ),
    // Bridges
    lst(
        "bridges",
        "Bridge-v4",
        list::<Bridge>,
        "List bridges (?tenant_id=)",
    ),
    post("bridges", "Bridge-v4", create::<Bridge>, "Create a bridge"),
    one("bridges/{id}", "Bridge-v4", get::<Bridge>, "Get a bridge"),
    put(
        "bridges/{id}",
        "Bridge-v4",
        update::<Bridge>,
        "Replace a bridge",
    ),
    del(
        "bridges/{id}",
        delete::<Bridge>,
        "Delete a bridge, its ports and DHCP subnets",
    ),
    lst(
        "bridges/{id}/ports",
        "Port-v3",
        list_under::<Port, Bridge>,
        "List a bridge's ports",
    ),
    post(
        "bridges/{id}/ports",
        "Port-v3",
        devices::create_port_under::<Bridge>,
        "Create a bridge port",
    ),
    lst(
        "bridges/{id}/peer_ports",
        "Port-v3",
        devices::peer_ports::<Bridge>,
        "Ports linked to the bridge's ports",
    ),
    strict(lst(
        "bridges/{id}/dhcp",
        "DhcpSubnet-v2",
        dhcp::list_subnets,
        "The bridge's DHCP subnets",
    )),
    post(
        "bridges/{id}/dhcp",
        "DhcpSubnet-v2",
        dhcp::create_subnet,
        "Add a DHCP subnet",
    ),
    one(
        "bridges/{id}/dhcp/{subnet}",
        "DhcpSubnet-v2",
        dhcp::get_subnet,
        "Get a DHCP subnet (a.b.c.d_len)",
    ),
    put(
        "bridges/{id}/dhcp/{subnet}",
        "DhcpSubnet-v2",
        dhcp::update_subnet,
        "Replace a DHCP subnet's settings (hosts stay)",
    ),
    del(
        "bridges/{id}/dhcp/{subnet}",
        dhcp::delete_subnet,
        "Delete a DHCP subnet",
    ),
    strict(lst(
        "bridges/{id}/dhcp/{subnet}/hosts",
        "DhcpHost-v2",
        dhcp::list_hosts,
        "A DHCP subnet's static hosts",
    )),
    post(
        "bridges/{id}/dhcp/{subnet}/hosts",
        "DhcpHost-v2",
        dhcp::create_host,
        "Add a static DHCP host",
    ),
    one(
        "bridges/{id}/dhcp/{subnet}/hosts/{mac}",
        "DhcpHost-v2",
        dhcp::get_host,
        "Get a DHCP host by MAC",
    ),
    put(
        "bridges/{id}/dhcp/{subnet}/hosts/{mac}",
        "DhcpHost-v2",
        dhcp::update_host,
        "Replace a DHCP host",
    ),
    del(
        "bridges/{id}/dhcp/{subnet}/hosts/{mac}",
        dhcp::delete_host,
        "Delete a DHCP host",
    ),
    // Ports
    lst("ports", "Port-v3", list::<Port>, "List every port"),
    one("ports/{id}", "Port-v3", get::<Port>, "Get a port"),
    put(
        "ports/{id}",
        "Port-v3",
        update::<Port>,
        "Replace a port's settings",
    ),
    del(
        "ports/{id}",
        delete::<Port>,
        "Delete a port, its routes and memberships; unlinks its peer",
    ),
    post(
        "ports/{id}/link",
        "PortLink-v1",
        devices::link_ports,
        "Link to the port named by peerId",
    ),
    del(
        "ports/{id}/link",
        devices::unlink_ports,
        "Unlink the port from its peer",
    ),
    strict(lst(
        "ports/{id}/port_groups",
        "PortGroupPort-v1",
        groups::port_groups_of_port,
        "The port's group memberships",
    )),
    // Routes
    one("routes/{id}", "Route-v1", get::<Route>, "Get a route"),
    del("routes/{id}", delete::<Route>, "Delete a route"),
    // Chains and rules
    lst(
        "chains",
        "Chain-v1",
        list::<Chain>,
        "List chains (?tenant_id=)",
    ),
    post("chains", "Chain-v1", create::<Chain>, "Create a chain"),
    one("chains/{id}", "Chain-v1", get::<Chain>, "Get a chain"),
    del(
        "chains/{id}",
        delete::<Chain>,
        "Delete a chain, its rules and jumps to it; clears filters using it",
    ),
    lst(
        "chains/{id}/rules",
        "Rule-v2",
        chains::chain_rules,
        "A chain's rules in order",
    ),
    post(
        "chains/{id}/rules",
        "Rule-v2",
        create_under::<Rule, Chain>,
        "Insert a rule at a 1-based position",
    ),
    one("rules/{id}", "Rule-v2", get::<Rule>, "Get a rule"),
    del("rules/{id}", delete::<Rule>, "Delete a rule"),
    // Port groups
    lst(
        "port_groups",
        "PortGroup-v1",
        list::<PortGroup>,
        "List port groups (?tenant_id=, ?port_id=)",
    ),
    post(
        "port_groups",
        "PortGroup-v1",
        create::<PortGroup>,
        "Create a port group",
    ),
    strict(one(
        "port_groups/{id}",
        "PortGroup-v1",
        get::<PortGroup>,
        "Get a port group",
    )),
    put(
        "port_groups/{id}",
        "PortGroup-v1",
        update::<PortGroup>,
        "Replace a port group",
    ),
    del(
        "port_groups/{id}",
        delete::<PortGroup>,
        "Delete a port group",
    ),
    lst(
        "port_groups/{id}/ports",
        "PortGroupPort-v1",
        groups::group_ports,
        "The group's member ports",
    ),
    post(
        "port_groups/{id}/ports",
        "PortGroupPort-v1",
        groups::add_group_port,
        "Add a port to the group",
    ),
    one(
        "port_groups/{id}/ports/{portId}",
        "PortGroupPort-v1",
        groups::get_group_port,
        "A membership",
    ),
    del(
        "port_groups/{id}/ports/{portId}",
        groups::remove_group_port,
        "Remove a port from the group",
    ),
    // IP address groups
    strict(lst(
        "ip_addr_groups",
        "IpAddrGroup-v1",
        list::<IpAddrGroup>,
        "List IP address groups",
    )),
    strict(post(
        "ip_addr_groups",
        "IpAddrGroup-v1",
        create::<IpAddrGroup>,
        "Create an IP address group",
    )),
    strict(one(
        "ip_addr_groups/{id}",
        "IpAddrGroup-v1",
        get::<IpAddrGroup>,
        "Get an IP address group",
    )),
    del(
        "ip_addr_groups/{id}",
        delete::<IpAddrGroup>,
        "Delete an IP address group",
    ),
    strict(lst(
        "ip_addr_groups/{id}/ip_addrs",
        "IpAddrGroupAddr-v1",
        groups::group_addrs,
        "The group's addresses",
    )),
    strict(post(
        "ip_addr_groups/{id}/ip_addrs",
        "IpAddrGroupAddr-v1",
        groups::add_group_addr,
        "Add an address",
    )),
    strict(one(
        "ip_addr_groups/{id}/versions/{version}/ip_addrs/{addr}",
        "IpAddrGroupAddr-v1",
        groups::get_group_addr,
        "An address of the group",
    )),
    del(
        "ip_addr_groups/{id}/versions/{version}/ip_addrs/{addr}",
        groups::remove_group_addr,
        "Remove an address",
    ),
    // Tunnel zones
    lst(
        "tunnel_zones",
        "TunnelZone-v1",
        list::<TunnelZone>,
        "List tunnel zones",
    ),
    post(
        "tunnel_zones",
        "TunnelZone-v1",
        create::<TunnelZone>,
        "Create a tunnel zone",
    ),
    one(
        "tunnel_zones/{id}",
        "TunnelZone-v1",
        get::<TunnelZone>,
        "Get a tunnel zone",
    ),
    put(
        "tunnel_zones/{id}",
        "TunnelZone-v1",
        update::<TunnelZone>,
        "Rename a tunnel zone",
    ),
    del(
        "tunnel_zones/{id}",
        delete::<TunnelZone>,
        "Delete a tunnel zone",
    ),
    any_type(lst(
        "tunnel_zones/{id}/hosts",
        "TunnelZoneHost-v1",
        hosts::zone_members,
        "The zone's hosts and tunnel addresses",
    )),
    any_type(post(
        "tunnel_zones/{id}/hosts",
        "TunnelZoneHost-v1",
        hosts::add_zone_member,
        "Add a host with its tunnel address",
    )),
    any_type(one(
        "tunnel_zones/{id}/hosts/{hostId}",
        "TunnelZoneHost-v1",
        hosts::get_zone_member,
        "A zone membership",
    )),
    del(
        "tunnel_zones/{id}/hosts/{hostId}",
        hosts::remove_zone_member,
        "Remove a host from the zone",
    ),
    // Hosts
    lst("hosts", "Host-v3", list::<Host>, "List hosts"),
    post(
        "hosts",
        "Host-v3",
        create::<Host>,
        "Register a host (id required)",
    ),
    one("hosts/{id}", "Host-v3", get::<Host>, "Get a host"),
    put(
        "hosts/{id}",
        "Host-v3",
        hosts::update_host,
        "Set flooding proxy and container weights (answers 200)",
    ),
    del(
        "hosts/{id}",
        hosts::delete_host,
        "Delete a host that is not alive and has no bindings (answers 200)",
    ),
    lst(
        "hosts/{id}/interfaces",
        "Interface-v1",
        hosts::host_interfaces,
        "The host's interfaces, as its agent reports them",
    ),
    one(
        "hosts/{id}/interfaces/{name}",
        "Interface-v1",
        hosts::host_interfaces,
        "One interface",
    ),
    strict(lst(
        "hosts/{id}/ports",
        "HostInterfacePort-v1",
        hosts::host_ports,
        "Ports bound to the host",
    )),
    post(
        "hosts/{id}/ports",
        "HostInterfacePort-v1",
        hosts::bind_port,
        "Bind a port to an interface of the host",
    ),
    one(
        "hosts/{id}/ports/{portId}",
        "HostInterfacePort-v1",
        hosts::get_host_port,
        "A binding",
    ),
    del(
        "hosts/{id}/ports/{portId}",
        hosts::unbind_port,
        "Unbind a port",
    ),
    // Load balancing
    lst(
        "load_balancers",
        "LoadBalancer-v1",
        list::<LoadBalancer>,
        "List load balancers",
    ),
    post(
        "load_balancers",
        "LoadBalancer-v1",
        create::<LoadBalancer>,
        "Create a load balancer",
    ),
    one(
        "load_balancers/{id}",
        "LoadBalancer-v1",
        get::<LoadBalancer>,
        "Get a load balancer",
    ),
    put(
        "load_balancers/{id}",
        "LoadBalancer-v1",
        update::<LoadBalancer>,
        "Replace a load balancer",
    ),
    del(
        "load_balancers/{id}",
        delete::<LoadBalancer>,
        "Delete a load balancer and its pools",
    ),
    lst(
        "load_balancers/{id}/pools",
        "Pool-v1",
        list_under::<Pool, LoadBalancer>,
        "The load balancer's pools",
    ),
    post(
        "load_balancers/{id}/pools",
        "Pool-v1",
        create_under::<Pool, LoadBalancer>,
        "Add a pool",
    ),
    lst(
        "load_balancers/{id}/vips",
        "VIP-v1",
        lb::lb_vips,
        "The load balancer's VIPs",
    ),
    lst(
        "health_monitors",
        "HealthMonitor-v1",
        list::<HealthMonitor>,
        "List health monitors",
    ),
    post(
        "health_monitors",
        "HealthMonitor-v1",
        create::<HealthMonitor>,
        "Create a health monitor",
    ),
    one(
        "health_monitors/{id}",
        "HealthMonitor-v1",
        get::<HealthMonitor>,
        "Get a health monitor",
    ),
    put(
        "health_monitors/{id}",
        "HealthMonitor-v1",
        update::<HealthMonitor>,
        "Replace a health monitor",
    ),
    del(
        "health_monitors/{id}",
        delete_idempotent::<HealthMonitor>,
        "Delete a health monitor (pools keep running unmonitored)",
    ),
    lst(
        "health_monitors/{id}/pools",
        "Pool-v1",
        lb::monitor_pools,
        "Pools using the monitor",
    ),
    lst("pools", "Pool-v1", list::<Pool>, "List pools (?hm_id=)"),
    post("pools", "Pool-v1", create::<Pool>, "Create a pool"),
    one("pools/{id}", "Pool-v1", get::<Pool>, "Get a pool"),
    put("pools/{id}", "Pool-v1", update::<Pool>, "Replace a pool"),
    del(
        "pools/{id}",
        delete_idempotent::<Pool>,
        "Delete a pool, its members and VIPs",
    ),
    lst(
        "pools/{id}/pool_members",
        "PoolMember-v1",
        list_under::<PoolMember, Pool>,
        "The pool's members",
    ),
    post(
        "pools/{id}/pool_members",
        "PoolMember-v1",
        create_under::<PoolMember, Pool>,
        "Add a member",
    ),
    lst(
        "pools/{id}/vips",
        "VIP-v1",
        list_under::<Vip, Pool>,
        "The pool's VIPs",
    ),
    post(
        "pools/{id}/vips",
        "VIP-v1",
        create_under::<Vip, Pool>,
        "Add a VIP",
    ),
    lst(
        "pool_members",
        "PoolMember-v1",
        list::<PoolMember>,
        "List pool members",
    ),
    post(
        "pool_members",
        "PoolMember-v1",
        create::<PoolMember>,
        "Create a pool member",
    ),
    one(
        "pool_members/{id}",
        "PoolMember-v1",
        get::<PoolMember>,
        "Get a pool member",
    ),
    put(
        "pool_members/{id}",
        "PoolMember-v1",
        update::<PoolMember>,
        "Replace a member's weight and admin state",
    ),
    del(
        "pool_members/{id}",
        delete_idempotent::<PoolMember>,
        "Delete a pool member",
    ),
    lst("vips", "VIP-v1", list::<Vip>, "List VIPs"),
    post("vips", "VIP-v1", create::<Vip>, "Create a VIP"),
    one("vips/{id}", "VIP-v1", get::<Vip>, "Get a VIP"),
    put("vips/{id}", "VIP-v1", update::<Vip>, "Replace a VIP"),
    del("vips/{id}", delete_idempotent::<Vip>, "Delete a VIP"),
    // BGP
    one(
        "bgp_networks/{id}",
        "BgpNetwork-v1",
        get::<BgpNetwork>,
        "Get a BGP network",
    ),
    del(
        "bgp_networks/{id}",
        delete::<BgpNetwork>,
        "Stop advertising a prefix",
    ),
    one(
        "bgp_peers/{id}",
        "BgpPeer-v1",
        get::<BgpPeer>,
        "Get a BGP peer",
    ),
    put(
        "bgp_peers/{id}",
        "BgpPeer-v1",
        update::<BgpPeer>,
        "Replace a BGP peer",
    ),
    del("bgp_peers/{id}", delete::<BgpPeer>, "Delete a BGP peer"),
    // Mirrors, insertions, traces, service containers, VTEPs
    lst("mirrors", "Mirror-v1", list::<Mirror>, "List mirrors"),
    post("mirrors", "Mirror-v1", create::<Mirror>, "Create a mirror"),
    one("mirrors/{id}", "Mirror-v1", get::<Mirror>, "Get a mirror"),
    put(
        "mirrors/{id}",
        "Mirror-v1",
        update::<Mirror>,
        "Replace a mirror",
    ),
    del(
        "mirrors/{id}",
        delete::<Mirror>,
        "Delete a mirror; devices stop using it",
    ),
    lst(
        "l2insertions",
        "L2Insertion-v1",
        list::<L2Insertion>,
        "List L2 insertions (?port=, ?srv_port=)",
    ),
    post(
        "l2insertions",
        "L2Insertion-v1",
        create::<L2Insertion>,
        "Create an L2 insertion",
    ),
    one(
        "l2insertions/{id}",
        "L2Insertion-v1",
        get::<L2Insertion>,
        "Get an L2 insertion",
    ),
    put(
        "l2insertions/{id}",
        "L2Insertion-v1",
        update::<L2Insertion>,
        "Replace an L2 insertion",
    ),
    del(
        "l2insertions/{id}",
        delete::<L2Insertion>,
        "Delete an L2 insertion",
    ),
    lst(
        "traces",
        "TraceRequest-v1",
        list::<TraceRequest>,
        "List trace requests",
    ),
    post(
        "traces",
        "TraceRequest-v1",
        create::<TraceRequest>,
        "Create a trace request",
    ),
    one(
        "traces/{id}",
        "TraceRequest-v1",
        get::<TraceRequest>,
        "Get a trace request",
    ),
    put(
        "traces/{id}",
        "TraceRequest-v1",
        update::<TraceRequest>,
        "Replace a trace request",
    ),
    del(
        "traces/{id}",
        delete::<TraceRequest>,
        "Delete a trace request and its results",
    ),
    lst(
        "traces/{id}/results",
        "TraceResult-v1",
        crate::traces::results,
        "The walks of the packets the request traced (each agent up to the request's limit), oldest first",
    ),
    lst(
        "service_container_groups",
        "ServiceContainerGroup-v1",
        list::<ServiceContainerGroup>,
        "List service container groups",
    ),
    post(
        "service_container_groups",
        "ServiceContainerGroup-v1",
        create::<ServiceContainerGroup>,
        "Create a service container group",
    ),
    one(
        "service_container_groups/{id}",
        "ServiceContainerGroup-v1",
        get::<ServiceContainerGroup>,
        "Get a service container group",
    ),
    del(
        "service_container_groups/{id}",
        delete::<ServiceContainerGroup>,
        "Delete a service container group",
    ),
    lst(
        "service_container_groups/{id}/service_containers",
        "ServiceContainer-v1",
        misc::group_containers,
        "The group's containers",
    ),
    post(
        "service_container_groups/{id}/service_containers",
        "ServiceContainer-v1",
        create_under::<ServiceContainer, ServiceContainerGroup>,
        "Add a container to the group",
    ),
    lst(
        "service_containers",
        "ServiceContainer-v1",
        list::<ServiceContainer>,
        "List service containers",
    ),
    post(
        "service_containers",
        "ServiceContainer-v1",
        create::<ServiceContainer>,
        "Create a service container",
    ),
    one(
        "service_containers/{id}",
        "ServiceContainer-v1",
        get::<ServiceContainer>,
        "Get a service container",
    ),
    del(
        "service_containers/{id}",
        delete::<ServiceContainer>,
        "Delete a service container",
    ),
    lst("vteps", "VTEP-v2", list::<Vtep>, "List VTEPs"),
    post(
        "vteps",
        "VTEP-v2",
        create::<Vtep>,
        "Register a hardware VTEP",
    ),
    one("vteps/{id}", "VTEP-v2", get::<Vtep>, "Get a VTEP"),
    del("vteps/{id}", delete::<Vtep>, "Delete a VTEP"),
    lst(
        "vteps/{id}/bindings",
        "VTEPBinding-v2",
        misc::vtep_empty,
        "The VTEP's port/VLAN bindings",
    ),
    strict(lst(
        "vteps/{id}/ports",
        "VTEPPort-v1",
        misc::vtep_empty,
        "The VTEP's physical ports",
    )),
];

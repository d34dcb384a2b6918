//! Every class of bad input gets a 4xx Error-v1 body that names the problem.

mod common;
use common::*;
use serde_json::Value;

const ERR: &str = "application/vnd.org.midonet.Error-v1+json";

fn assert_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", r.raw);
    assert_eq!(r.content_type, ERR);
    assert_eq!(r.body["code"], status);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[test]
fn malformed_json_and_wrong_types() {
    let s = start(cluster::AuthMode::None);
    assert_error(
        &post(&format!("{}/bridges", s.base), "{\"name\": "),
        400,
        "malformed JSON",
    );
    assert_error(
        &post(&format!("{}/bridges", s.base), "[1,2]"),
        400,
        "JSON object",
    );
    assert_error(
        &post(
            &format!("{}/bridges", s.base),
            "{\"adminStateUp\": \"perhaps\"}",
        ),
        400,
        "adminStateUp",
    );
    assert_error(
        &post(&format!("{}/routers", s.base), "{\"asNumber\": \"many\"}"),
        400,
        "asNumber",
    );
    assert_error(
        &post(&format!("{}/routers", s.base), "{\"asNumber\": -7}"),
        400,
        "asNumber",
    );
    assert_error(
        &post(
            &format!("{}/tunnel_zones", s.base),
            "{\"name\": \"z\", \"type\": \"ipip\"}",
        ),
        400,
        "type",
    );
    assert_error(
        &post(&format!("{}/tunnel_zones", s.base), "{\"name\": \"z\"}"),
        400,
        "type",
    );
    assert_error(
        &post(
            &format!("{}/bridges", s.base),
            &format!("{{\"name\": \"{}\"}}", "x".repeat(300)),
        ),
        400,
        "name",
    );
    // Numeric strings are integers, as midonet-cli sends them.
    let r = create(&format!("{}/routers", s.base), "{\"asNumber\": \"65000\"}");
    assert_eq!(
        get(&format!("{}/routers/{r}", s.base)).body["asNumber"],
        65000
    );
}

#[test]
fn unknown_ids_and_missing_references() {
    let s = start(cluster::AuthMode::None);
    let nobody = "6a0c3b36-0000-4000-8000-000000000000";
    assert_error(&get(&format!("{}/bridges/{nobody}", s.base)), 404, nobody);
    assert_error(
        &get(&format!("{}/bridges/not-a-uuid", s.base)),
        404,
        "not-a-uuid",
    );
    assert_error(
        &call("DELETE", &format!("{}/routers/{nobody}", s.base), &[], None),
        404,
        nobody,
    );
    assert_error(
        &post(
            &format!("{}/bridges/{nobody}/ports", s.base),
            "{\"type\":\"Bridge\"}",
        ),
        404,
        nobody,
    );
    assert_error(
        &post(
            &format!("{}/bridges", s.base),
            &format!("{{\"inboundFilterId\": \"{nobody}\"}}"),
        ),
        404,
        "inboundFilterId",
    );
    let c = create(&format!("{}/chains", s.base), "{\"name\":\"c\"}");
    assert_error(
        &post(
            &format!("{}/chains/{c}/rules", s.base),
            &format!("{{\"type\":\"jump\",\"jumpChainId\":\"{nobody}\"}}"),
        ),
        404,
        "jumpChainId",
    );
    assert_error(
        &post(
            &format!("{}/chains/{c}/rules", s.base),
            "{\"type\":\"accept\",\"position\":5}",
        ),
        400,
        "position",
    );
    assert_error(
        &post(
            &format!("{}/chains/{c}/rules", s.base),
            "{\"type\":\"continue\"}",
        ),
        400,
        "type",
    );
    assert_error(
        &get(&format!("{}/no_such_thing", s.base)),
        404,
        "no_such_thing",
    );
    assert_error(
        &call(
            "PUT",
            &format!("{}/chains/{c}", s.base),
            &[JSON],
            Some("{}"),
        ),
        405,
        "PUT",
    );
}

#[test]
fn bad_addresses_cidrs_and_macs() {
    let s = start(cluster::AuthMode::None);
    let r = create(&format!("{}/routers", s.base), "{}");
    let b = create(&format!("{}/bridges", s.base), "{}");
    let port = |body: &str| post(&format!("{}/routers/{r}/ports", s.base), body);
    assert_error(
        &port(
            "{\"type\":\"Router\",\"portAddress\":\"10.0.0.300\",\"networkAddress\":\"10.0.0.0\",\"networkLength\":24}",
        ),
        400,
        "portAddress",
    );
    assert_error(
        &port(
            "{\"type\":\"Router\",\"portAddress\":\"10.0.0.1\",\"networkAddress\":\"10.0.0.0\",\"networkLength\":33}",
        ),
        400,
        "networkLength",
    );
    assert_error(
        &port("{\"type\":\"Router\",\"networkAddress\":\"10.0.0.0\",\"networkLength\":24}"),
        400,
        "portAddress",
    );
    assert_error(
        &port(
            "{\"type\":\"Router\",\"portAddress\":\"10.0.0.1\",\"networkAddress\":\"10.0.0.0\",\"portMac\":\"aa:bb:cc:dd:ee\"}",
        ),
        400,
        "MAC",
    );
    assert_error(&port("{\"type\":\"Bridge\"}"), 400, "router");
    let dhcp = |body: &str| post(&format!("{}/bridges/{b}/dhcp", s.base), body);
    assert_error(
        &dhcp("{\"subnetPrefix\":\"10.0.0.0\",\"subnetLength\":40}"),
        400,
        "subnetLength",
    );
    assert_error(
        &dhcp("{\"subnetPrefix\":\"10.0.0\",\"subnetLength\":24}"),
        400,
        "subnetPrefix",
    );
    assert_eq!(
        dhcp("{\"subnetPrefix\":\"10.0.0.0\",\"subnetLength\":\"24\"}").status,
        201
    );
    assert_error(
        &dhcp("{\"subnetPrefix\":\"10.0.0.0\",\"subnetLength\":24}"),
        409,
        "already",
    );
    assert_error(
        &get(&format!("{}/bridges/{b}/dhcp/10.9.0.0_24", s.base)),
        404,
        "10.9.0.0_24",
    );
    let host = |body: &str| {
        post(
            &format!("{}/bridges/{b}/dhcp/10.0.0.0_24/hosts", s.base),
            body,
        )
    };
    assert_error(
        &host("{\"macAddr\":\"zz:bb:cc:dd:ee:ff\",\"ipAddr\":\"10.0.0.5\",\"name\":\"h\"}"),
        400,
        "macAddr",
    );
    assert_error(
        &host("{\"macAddr\":\"aa:bb:cc:dd:ee:ff\",\"name\":\"h\"}"),
        400,
        "ipAddr",
    );
    let c = create(&format!("{}/chains", s.base), "{}");
    let rule = |body: &str| post(&format!("{}/chains/{c}/rules", s.base), body);
    assert_error(
        &rule("{\"type\":\"drop\",\"nwSrcAddress\":\"10.0.0.0\",\"nwSrcLength\":40}"),
        400,
        "nwSrcLength",
    );
    assert_error(
        &rule("{\"type\":\"drop\",\"dlSrcMask\":\"ffff:ffff:0000\"}"),
        400,
        "dlSrcMask",
    );
    assert_error(&rule("{\"type\":\"drop\",\"dlType\":1}"), 400, "dlType");
    assert_error(
        &rule("{\"type\":\"accept\",\"tpDst\":{\"start\":80,\"end\":22}}"),
        400,
        "tpDst",
    );
    assert_error(
        &rule("{\"type\":\"snat\",\"flowAction\":\"accept\",\"natTargets\":[]}"),
        400,
        "natTargets",
    );
    let v = rule("{\"type\":\"snat\",\"natTargets\":[]}");
    assert_eq!(v.status, 400);
    let props: Vec<&str> = v.body["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["property"].as_str())
        .collect();
    assert!(
        props.contains(&"flowAction") && props.contains(&"natTargets"),
        "{props:?}"
    );
}

#[test]
fn linking_rules() {
    let s = start(cluster::AuthMode::None);
    let b = create(&format!("{}/bridges", s.base), "{}");
    let p1 = create(
        &format!("{}/bridges/{b}/ports", s.base),
        "{\"type\":\"Bridge\"}",
    );
    let p2 = create(
        &format!("{}/bridges/{b}/ports", s.base),
        "{\"type\":\"Bridge\"}",
    );
    let link = |a: &str, b: &str| {
        post(
            &format!("{}/ports/{a}/link", s.base),
            &format!("{{\"peerId\":\"{b}\"}}"),
        )
    };
    assert_error(&link(&p1, &p2), 400, "bridge ports");
    assert_error(&link(&p1, &p1), 400, "itself");
    assert_error(
        &post(&format!("{}/ports/{p1}/link", s.base), "{}"),
        400,
        "peerId",
    );
    let r = create(&format!("{}/routers", s.base), "{}");
    let rp = create(
        &format!("{}/routers/{r}/ports", s.base),
        "{\"type\":\"Router\",\"portAddress\":\"10.0.0.1\",\"networkAddress\":\"10.0.0.0\",\"networkLength\":24}",
    );
    assert_eq!(link(&rp, &p1).status, 201);
    assert_error(&link(&rp, &p2), 409, "already linked");
    let rp2 = create(
        &format!("{}/routers/{r}/ports", s.base),
        "{\"type\":\"Router\",\"portAddress\":\"10.0.1.1\",\"networkAddress\":\"10.0.1.0\",\"networkLength\":24}",
    );
    assert_error(&link(&rp2, &p1), 409, "already linked");
}

#[test]
fn media_types() {
    let s = start(cluster::AuthMode::None);
    let bridges = format!("{}/bridges", s.base);
    let r = call(
        "POST",
        &bridges,
        &[("Content-Type", "text/plain")],
        Some("{}"),
    );
    assert_error(&r, 406, "text/plain");
    let r = call(
        "POST",
        &bridges,
        &[("Content-Type", "application/vnd.org.midonet.Router-v3+json")],
        Some("{}"),
    );
    assert_error(&r, 406, "Router-v3");
    let ok = call(
        "POST",
        &bridges,
        &[("Content-Type", "application/vnd.org.midonet.Bridge-v4+json")],
        Some("{}"),
    );
    assert_eq!(ok.status, 201);
    let r = call(
        "GET",
        &bridges,
        &[("Accept", "application/vnd.org.midonet.Bridge-v4+json")],
        None,
    );
    assert_error(&r, 406, "Bridge-v4");
    let r = call(
        "GET",
        &bridges,
        &[(
            "Accept",
            "application/vnd.org.midonet.collection.Bridge-v4+json",
        )],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type,
        "application/vnd.org.midonet.collection.Bridge-v4+json"
    );
    // Strict resources refuse plain JSON.
    let r = call(
        "GET",
        &format!("{}/tenants", s.base),
        &[("Accept", "application/json")],
        None,
    );
    assert_error(&r, 406, "application/json");
}

#[test]
fn static_auth_requires_a_valid_token() {
    let users = users("admin:pw");
    let s = start(cluster::AuthMode::Static {
        users,
        ttl: std::time::Duration::from_secs(60),
    });
    assert_error(
        &get(&format!("{}/bridges", s.base)),
        401,
        "authentication required",
    );
    let r = call(
        "GET",
        &format!("{}/bridges", s.base),
        &[("X-Auth-Token", "forged")],
        None,
    );
    assert_error(&r, 401, "invalid");
    let bad = call(
        "POST",
        &format!("{}/login", s.base),
        &[("Authorization", "Basic YWRtaW46bm9wZQ==")],
        None,
    );
    assert_error(&bad, 401, "wrong user name or password");
    let none = call("POST", &format!("{}/login", s.base), &[], None);
    assert_error(&none, 401, "Basic");
    let ok = call(
        "POST",
        &format!("{}/login", s.base),
        &[("Authorization", "Basic YWRtaW46cHc=")],
        None,
    );
    assert_eq!(ok.status, 200);
    let token = ok.body["key"].as_str().unwrap().to_string();
    let r = call(
        "GET",
        &format!("{}/bridges", s.base),
        &[("X-Auth-Token", &token)],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, Value::Array(vec![]));
    // The root document stays public so clients can discover /login.
    assert_eq!(get(&format!("{}/", s.base)).status, 200);
}

#[test]
fn random_bodies_never_cause_a_server_error() {
    let s = start(cluster::AuthMode::None);
    let b = create(&format!("{}/bridges", s.base), "{}");
    let r = create(&format!("{}/routers", s.base), "{}");
    let c = create(&format!("{}/chains", s.base), "{}");
    let targets = [
        "bridges".to_string(),
        "routers".into(),
        format!("routers/{r}/ports"),
        format!("bridges/{b}/ports"),
        format!("routers/{r}/routes"),
        format!("chains/{c}/rules"),
        format!("bridges/{b}/dhcp"),
        "tunnel_zones".into(),
        "hosts".into(),
        "pools".into(),
        "vips".into(),
        "health_monitors".into(),
        "port_groups".into(),
        "ip_addr_groups".into(),
        "mirrors".into(),
        "traces".into(),
    ];
    let fields = [
        "name",
        "type",
        "id",
        "portAddress",
        "networkLength",
        "subnetLength",
        "natTargets",
        "tpDst",
        "position",
        "flowAction",
        "dlType",
        "hostId",
        "weight",
        "address",
        "poolId",
        "condition",
        "peerId",
        "subnetPrefix",
    ];
    let values = [
        "null",
        "1",
        "-1",
        "99999999999999999999",
        "\"\"",
        "\"x\"",
        "[]",
        "{}",
        "true",
        "1.5",
        "\"10.0.0.1\"",
        "[{}]",
        "{\"start\":\"a\"}",
        "\"Router\"",
        "\"accept\"",
        "\"00000000-0000-0000-0000-000000000000\"",
    ];
    // A fixed-seed walk over field/value combinations: bounded and repeatable.
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..400 {
        let t = &targets[i % targets.len()];
        let n = (next() % 4) as usize + 1;
        let body: Vec<String> = (0..n)
            .map(|_| {
                let f = fields[(next() as usize) % fields.len()];
                let v = values[(next() as usize) % values.len()];
                format!("\"{f}\":{v}")
            })
            .collect();
        let body = format!("{{{}}}", body.join(","));
        let r = post(&format!("{}/{t}", s.base), &body);
        assert!(r.status < 500, "POST /{t} {body} -> {} {}", r.status, r.raw);
        if r.status >= 400 {
            assert_eq!(r.content_type, ERR, "POST /{t} {body}");
            assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
}

/// A body over the limit is refused with 413 from its declared length,
/// before it is sent, and changes nothing (it used to be read as an empty
/// body: a PUT then wiped the object's fields).
#[test]
fn an_oversized_body_is_refused_and_changes_nothing() {
    use std::io::{Read, Write};
    let s = start(cluster::AuthMode::None);
    let id = create(
        &format!("{}/bridges", s.base),
        "{\"name\": \"keep\", \"tenantId\": \"t\"}",
    );
    let loc = format!("{}/bridges/{id}", s.base);
    let rest = loc.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let size = cluster::http::MAX_BODY + 1024 * 1024;
    write!(
        c,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/vnd.org.midonet.Bridge-v4+json\r\nContent-Length: {size}\r\n\r\n{{\"name\": \""
    )
    .unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over"), "{answer}");
    // Sent whole, it is refused once past the limit, unannounced as chunks.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(size));
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        big.len()
    )
    .unwrap();
    // The server may stop reading once past the limit.
    let _ = c.write_all(big.as_bytes());
    let _ = c.write_all(b"\r\n0\r\n\r\n");
    let mut answer = Vec::new();
    let _ = c.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let now = get(&loc);
    assert_eq!(now.body["name"], "keep", "{}", now.raw);
    assert_eq!(now.body["tenantId"], "t");
}

#[test]
fn bgp_peers_out_of_range_and_bfd_settings() {
    let s = start(cluster::AuthMode::None);
    let r = create(&format!("{}/routers", s.base), "{\"asNumber\": 64512}");
    let peers = format!("{}/routers/{r}/bgp_peers", s.base);
    for (body, field) in [
        (r#"{"asNumber": 0, "address": "192.0.2.9"}"#, "asNumber"),
        (
            r#"{"asNumber": 4294967296, "address": "192.0.2.9"}"#,
            "asNumber",
        ),
        (r#"{"asNumber": 65000}"#, "address"),
        (
            r#"{"asNumber": 65000, "address": "192.0.2.9", "holdTime": 2}"#,
            "holdTime",
        ),
        (
            r#"{"asNumber": 65000, "address": "192.0.2.9", "keepAlive": 5, "holdTime": 4}"#,
            "keepAlive",
        ),
        (
            r#"{"asNumber": 65000, "address": "192.0.2.9", "bfdEnabled": true, "bfdInterval": 5}"#,
            "bfdInterval",
        ),
        (
            r#"{"asNumber": 65000, "address": "192.0.2.9", "bfdMultiplier": 1}"#,
            "bfdMultiplier",
        ),
        (
            r#"{"asNumber": 65000, "address": "192.0.2.9", "bfdEnabled": "maybe"}"#,
            "bfdEnabled",
        ),
    ] {
        assert_error(&post(&peers, body), 400, field);
    }
    let p = create(
        &peers,
        r#"{"asNumber": 65000, "address": "192.0.2.9", "bfdEnabled": true, "bfdInterval": 100, "bfdMultiplier": 5}"#,
    );
    let got = get(&format!("{}/bgp_peers/{p}", s.base)).body;
    assert_eq!(
        (
            &got["bfdEnabled"],
            &got["bfdInterval"],
            &got["bfdMultiplier"]
        ),
        (&Value::Bool(true), &Value::from(100), &Value::from(5))
    );
    // No uplink of the router holds the address: said in the status.
    assert_eq!(got["status"]["state"], "Invalid", "{got}");
}

#[test]
fn dhcp_hosts_never_share_an_address() {
    let s = start(cluster::AuthMode::None);
    let b = create(&format!("{}/bridges", s.base), "{\"name\": \"pods\"}");
    let subnets = format!("{}/bridges/{b}/dhcp", s.base);
    create(
        &subnets,
        r#"{"subnetPrefix": "10.50.0.0", "subnetLength": 24, "defaultGateway": "10.50.0.1"}"#,
    );
    let hosts = format!("{subnets}/10.50.0.0_24/hosts");
    let host = |mac: &str, ip: &str| {
        post(
            &hosts,
            &format!(r#"{{"macAddr": "{mac}", "ipAddr": "{ip}", "name": "h"}}"#),
        )
    };
    assert_eq!(host("02:00:00:00:00:01", "10.50.0.2").status, 201);
    // Another MAC, the same address: refused, and said why.
    assert_error(
        &host("02:00:00:00:00:02", "10.50.0.2"),
        409,
        "10.50.0.2 is in use",
    );
    // Moving a host to a taken address is refused too; to a free one, fine.
    assert_eq!(host("02:00:00:00:00:03", "10.50.0.3").status, 201);
    let moved = |ip: &str| {
        call(
            "PUT",
            &format!("{hosts}/02:00:00:00:00:03"),
            &[("Content-Type", "application/json")],
            Some(&format!(r#"{{"ipAddr": "{ip}", "name": "h"}}"#)),
        )
    };
    assert_eq!(moved("10.50.0.2").status, 409);
    assert_eq!(moved("10.50.0.4").status, 204);
    // Its old address was given back; a deleted host's too.
    assert_eq!(host("02:00:00:00:00:04", "10.50.0.3").status, 201);
    let gone = call("DELETE", &format!("{hosts}/02:00:00:00:00:01"), &[], None);
    assert_eq!(gone.status, 204);
    assert_eq!(host("02:00:00:00:00:05", "10.50.0.2").status, 201);
}

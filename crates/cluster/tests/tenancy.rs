//! Projects in the MidoNet API under `--auth static`: a project's member
//! sees and changes only its project's objects; an admin sees everything.

mod common;
use base64::Engine;
use common::*;
use serde_json::Value;

fn login(base: &str, user: &str, pw: &str) -> String {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    let r = call(
        "POST",
        &format!("{base}/login"),
        &[("Authorization", &format!("Basic {basic}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.raw);
    r.body["key"].as_str().unwrap().to_string()
}

fn as_(token: &str, method: &str, url: &str, body: Option<&str>) -> Reply {
    call(
        method,
        url,
        &[
            ("X-Auth-Token", token),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

fn names(r: &Reply) -> Vec<String> {
    r.body
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .filter_map(|b| b["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_project_sees_and_changes_only_its_own() {
    let users = cluster::auth::parse_users("root:pw,alice:pa:proj-a,bob:pb:proj-b").unwrap();
    let s = start(cluster::AuthMode::Static {
        users,
        ttl: std::time::Duration::from_secs(60),
    });
    let (root, a, b) = (
        login(&s.base, "root", "pw"),
        login(&s.base, "alice", "pa"),
        login(&s.base, "bob", "pb"),
    );
    let url = |p: &str| format!("{}/{p}", s.base);

    let made = as_(&a, "POST", &url("bridges"), Some(r#"{"name": "a-br"}"#));
    assert_eq!(made.status, 201, "{}", made.raw);
    let br = get_with(&made, &a);
    assert_eq!(
        br["tenantId"], "proj-a",
        "a member's create is its project's"
    );
    let id = br["id"].as_str().unwrap().to_string();
    let chain = as_(&a, "POST", &url("chains"), Some(r#"{"name": "a-chain"}"#));
    let chain_id = get_with(&chain, &a)["id"].as_str().unwrap().to_string();

    assert_eq!(names(&as_(&a, "GET", &url("bridges"), None)), vec!["a-br"]);
    assert!(
        names(&as_(&b, "GET", &url("bridges"), None)).is_empty(),
        "B lists none of A's"
    );
    for (m, body) in [
        ("GET", None),
        ("DELETE", None),
        ("PUT", Some(r#"{"name": "mine"}"#)),
    ] {
        let r = as_(&b, m, &url(&format!("bridges/{id}")), body);
        assert_eq!(r.status, 404, "B's {m} of A's bridge: {}", r.raw);
    }
    let r = as_(&b, "POST", &url(&format!("bridges/{id}/ports")), Some("{}"));
    assert_eq!(r.status, 404, "B adds no port to A's bridge");
    let r = as_(
        &b,
        "POST",
        &url("bridges"),
        Some(r#"{"name": "x", "tenantId": "proj-a"}"#),
    );
    assert_eq!(r.status, 403, "B creates nothing in A's project");
    // B's own bridge cannot take A's chain as a filter.
    let mine = as_(&b, "POST", &url("bridges"), Some(r#"{"name": "b-br"}"#));
    let mine_id = get_with(&mine, &b)["id"].as_str().unwrap().to_string();
    let r = as_(
        &b,
        "PUT",
        &url(&format!("bridges/{mine_id}")),
        Some(&format!(
            r#"{{"name": "b-br", "inboundFilterId": "{chain_id}"}}"#
        )),
    );
    assert_eq!(r.status, 404, "A's chain is not B's to use: {}", r.raw);
    assert_eq!(
        as_(&b, "GET", &url("hosts"), None).status,
        403,
        "hosts are for operators"
    );

    let all = names(&as_(&root, "GET", &url("bridges"), None));
    assert!(all.contains(&"a-br".to_string()) && all.contains(&"b-br".to_string()));
    assert_eq!(
        as_(&a, "GET", &url(&format!("bridges/{id}")), None).status,
        200
    );
}

/// The object a create's Location names, read with `token`.
fn get_with(r: &Reply, token: &str) -> Value {
    let loc = r.location.clone().expect("Location");
    as_(token, "GET", &loc, None).body
}

#[test]
fn user_specs() {
    let u = cluster::auth::parse_users("root:pw,alice:pa:proj-a,carol:pc:proj-c:admin").unwrap();
    assert!(u["root"].admin && u["root"].project.is_none());
    assert!(!u["alice"].admin && u["alice"].project.as_deref() == Some("proj-a"));
    assert!(u["carol"].admin);
    assert!(cluster::auth::parse_users("nopassword").is_err());
}

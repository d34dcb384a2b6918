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
    let users = users("root:pw,alice:pa:proj-a,bob:pb:proj-b,rita:pr:proj-a:reader");
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
        assert_eq!(r.status, 403, "B's {m} of A's bridge: {}", r.raw);
    }
    let r = as_(&b, "POST", &url(&format!("bridges/{id}/ports")), Some("{}"));
    assert_eq!(r.status, 403, "B adds no port to A's bridge");
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
    assert_eq!(r.status, 403, "A's chain is not B's to use: {}", r.raw);
    assert_eq!(
        as_(&b, "GET", &url("hosts"), None).status,
        403,
        "hosts are for operators"
    );

    // A reader of A's project reads A's objects and changes none.
    let rita = login(&s.base, "rita", "pr");
    assert_eq!(
        names(&as_(&rita, "GET", &url("bridges"), None)),
        vec!["a-br"]
    );
    for (m, path, body) in [
        ("PUT", format!("bridges/{id}"), Some(r#"{"name": "x"}"#)),
        ("DELETE", format!("bridges/{id}"), None),
        ("POST", "bridges".to_string(), Some(r#"{"name": "r-br"}"#)),
    ] {
        let r = as_(&rita, m, &url(&path), body);
        assert_eq!(r.status, 403, "a reader's {m} {path}: {}", r.raw);
    }
    assert_eq!(
        as_(&a, "GET", &url(&format!("bridges/{id}")), None).body["name"],
        "a-br",
        "the reader changed nothing"
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
fn failed_logins_slow_the_name_down() {
    let s = start(cluster::AuthMode::Static {
        users: users("root:pw,alice:pa"),
        ttl: std::time::Duration::from_secs(60),
    });
    let try_ = |user: &str, pw: &str| {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        call(
            "POST",
            &format!("{}/login", s.base),
            &[("Authorization", &format!("Basic {basic}"))],
            None,
        )
    };
    let codes: Vec<u16> = (0..8).map(|_| try_("root", "guess").status).collect();
    assert_eq!(
        &codes[..5],
        &[401; 5],
        "the first failures are answered 401"
    );
    assert!(codes[5..].iter().all(|c| *c == 429), "then 429: {codes:?}");
    let r = try_("root", "pw");
    assert_eq!(r.status, 429, "even the right password waits: {}", r.raw);
    assert!(r.body["message"].as_str().unwrap().contains("try again"));
    assert_eq!(
        try_("alice", "pa").status,
        200,
        "another name is not slowed"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(
        try_("root", "pw").status,
        200,
        "after the wait the login works"
    );
}

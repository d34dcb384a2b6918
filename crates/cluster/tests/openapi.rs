//! The OpenAPI description matches what the server serves.

mod common;
use common::*;
use serde_json::Value;

fn fill(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{subnet}" => "10.0.0.0_24".to_string(),
            "{mac}" => "aa:bb:cc:dd:ee:ff".to_string(),
            "{addr}" => "10.0.0.1".to_string(),
            "{version}" => "4".to_string(),
            "{name}" => "eth0".to_string(),
            s if s.starts_with('{') => "6a0c3b36-0000-4000-8000-000000000001".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_documented_operation_is_served_and_every_served_route_documented() {
    let s = start(cluster::AuthMode::None);
    let doc = get(&format!("{}/openapi.json", s.base));
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.0.3");
    let paths = doc.body["paths"].as_object().unwrap();
    let mut ops = 0;
    for (path, item) in paths {
        for (method, _) in item.as_object().unwrap() {
            ops += 1;
            let url = format!("{}{}", s.base, fill(path));
            let r = call(&method.to_uppercase(), &url, &[JSON], Some("{}"));
            // Whatever the handler says about a missing object, the route itself exists.
            let msg = r.body["message"].as_str().unwrap_or_default();
            assert!(!msg.starts_with("Root resource"), "{method} {path}: {msg}");
            assert_ne!(r.status, 405, "{method} {path}");
            assert!(r.status < 500, "{method} {path}: {}", r.raw);
        }
    }
    assert_eq!(
        ops,
        cluster::routes::ROUTES.len(),
        "one operation per route"
    );
    for r in cluster::routes::ROUTES {
        let key = format!("/{}", r.path);
        assert!(
            paths[&key]
                .get(r.method.as_str().to_ascii_lowercase())
                .is_some(),
            "{} {key}",
            r.method
        );
    }
    // Every link of the root document leads to a documented path.
    let root = get(&format!("{}/", s.base)).body;
    for (k, v) in root.as_object().unwrap() {
        let Some(url) = v.as_str() else { continue };
        if k == "uri" || !url.starts_with(&s.base) {
            continue;
        }
        let p = url.trim_start_matches(&s.base);
        assert!(
            paths.contains_key(p),
            "root link {k} -> {p} is not documented"
        );
    }
}

#[test]
fn undocumented_paths_are_404_with_an_error_body() {
    let s = start(cluster::AuthMode::None);
    let r = get(&format!("{}/bogus/123", s.base));
    assert_eq!(r.status, 404);
    assert_eq!(r.body["code"], Value::from(404));
}

//! A rule is shown with its own type's fields only (midonet-cli prints
//! every field it is sent).

mod common;
use common::*;

#[test]
fn each_rule_type_shows_its_own_fields() {
    let s = start(cluster::AuthMode::None);
    let c = create(&format!("{}/chains", s.base), r#"{"name": "c"}"#);
    let j = create(&format!("{}/chains", s.base), r#"{"name": "j"}"#);
    let rules = format!("{}/chains/{c}/rules", s.base);
    let show = |body: &str| get(&format!("{}/rules/{}", s.base, create(&rules, body))).body;
    let accept = show(r#"{"type": "accept", "nwProto": 6}"#);
    for f in [
        "ingress",
        "failOpen",
        "popVlan",
        "natTargets",
        "flowAction",
        "jumpChainId",
    ] {
        assert!(accept.get(f).is_none(), "accept rule shows {f}: {accept}");
    }
    assert_eq!(accept["nwProto"], 6, "the condition is every rule's");
    let dnat = show(
        r#"{"type": "dnat", "flowAction": "accept",
            "natTargets": [{"addressFrom": "10.0.0.5", "addressTo": "10.0.0.5", "portFrom": 0, "portTo": 0}]}"#,
    );
    assert_eq!(dnat["flowAction"], "accept");
    assert_eq!(dnat["natTargets"][0]["addressFrom"], "10.0.0.5");
    for f in ["ingress", "failOpen", "popVlan", "jumpChainId", "requestId"] {
        assert!(dnat.get(f).is_none(), "dnat rule shows {f}: {dnat}");
    }
    let jump = show(&format!(r#"{{"type": "jump", "jumpChainId": "{j}"}}"#));
    assert_eq!(jump["jumpChainId"], j.as_str());
    assert!(jump.get("natTargets").is_none() && jump.get("flowAction").is_none());
    let l2 = show(r#"{"type": "l2_transform", "popVlan": true}"#);
    assert_eq!(l2["popVlan"], true);
    assert_eq!(l2["ingress"], false);
    assert!(l2.get("natTargets").is_none());
}

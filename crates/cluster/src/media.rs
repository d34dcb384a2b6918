//! MidoNet's vendor media types and the compatibility check its API applies.

pub const PREFIX: &str = "application/vnd.org.midonet.";

/// `Bridge-v4` -> `application/vnd.org.midonet.Bridge-v4+json`.
pub fn item(name: &str) -> String {
    format!("{PREFIX}{name}+json")
}

/// `Bridge-v4` -> `application/vnd.org.midonet.collection.Bridge-v4+json`.
pub fn collection(name: &str) -> String {
    format!("{PREFIX}collection.{name}+json")
}

fn essence(t: &str) -> &str {
    t.split(';').next().unwrap_or("").trim()
}

/// Is any of the (comma-separated) media types in `header` compatible with
/// `offered`? `application/json` matches unless the resource is strict;
/// `*/*` and `type/*` wildcards match.
pub fn compatible(header: &str, offered: &str, strict: bool) -> bool {
    header.split(',').map(essence).any(|t| {
        t.eq_ignore_ascii_case(offered)
            || t == "*/*"
            || t.eq_ignore_ascii_case("application/*")
            || (!strict && t.eq_ignore_ascii_case("application/json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        let b = item("Bridge-v4");
        assert!(compatible(&b, &b, false));
        assert!(compatible("application/json", &b, false));
        assert!(!compatible("application/json", &b, true));
        assert!(compatible("text/html, */*;q=0.1", &b, true));
        assert!(!compatible(&item("Router-v3"), &b, false));
        assert!(compatible(&format!("{b}; charset=UTF-8"), &b, false));
    }
}

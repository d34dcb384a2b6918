//! The server's Prometheus metrics, `GET /metrics` on the REST listener:
//! REST requests by route pattern and status with their latency, agents
//! connected and watches open on this server, and the NSDB's revision.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Request {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

struct Server {
    requests: Family<Request, Counter>,
    /// NSDB batch commits: their latency, by outcome, and the writes they held.
    commits: Family<Outcome, Histogram>,
    commit_writes: Counter,
    latency: Family<Route, Histogram>,
    sessions: Gauge,
    watches: Gauge,
}

static SERVER: LazyLock<Server> = LazyLock::new(|| Server {
    requests: Family::default(),
    // 100 µs to about 1.6 s.
    latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-4, 2.0, 15))),
    commits: Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-4, 2.0, 15))),
    commit_writes: Counter::default(),
    sessions: Gauge::default(),
    watches: Gauge::default(),
});

/// One answered REST request.
pub fn observe(method: &str, route: &str, status: u16, seconds: f64) {
    SERVER
        .requests
        .get_or_create(&Request {
            method: method.into(),
            route: route.into(),
            status: status.to_string(),
        })
        .inc();
    SERVER
        .latency
        .get_or_create(&Route {
            method: method.into(),
            route: route.into(),
        })
        .observe(seconds);
}

/// One NSDB batch commit (several writes; a refused batch's writers redo
/// theirs).
pub fn commit(seconds: f64, writes: usize, ok: bool) {
    SERVER
        .commits
        .get_or_create(&Outcome {
            outcome: if ok { "ok" } else { "refused" }.into(),
        })
        .observe(seconds);
    SERVER.commit_writes.inc_by(writes as u64);
}

/// Held while an agent's session (or a watch) is open on this server.
pub struct Open(&'static Gauge);

impl Open {
    pub fn session() -> Open {
        SERVER.sessions.inc();
        Open(&SERVER.sessions)
    }
    pub fn watch() -> Open {
        SERVER.watches.inc();
        Open(&SERVER.watches)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The text exposition, with the NSDB's revision read now.
pub fn render(revision: u64) -> String {
    let mut r = Registry::default();
    r.register(
        "midonet_server_rest_requests",
        "REST API requests answered, by route pattern and status",
        SERVER.requests.clone(),
    );
    r.register(
        "midonet_server_rest_request_seconds",
        "Time to answer a REST API request, by route pattern",
        SERVER.latency.clone(),
    );
    r.register(
        "midonet_server_nsdb_commit_seconds",
        "Time an NSDB batch commit took (durable), by outcome",
        SERVER.commits.clone(),
    );
    r.register(
        "midonet_server_nsdb_commit_writes",
        "Writes the NSDB batch commits carried",
        SERVER.commit_writes.clone(),
    );
    r.register(
        "midonet_server_agent_sessions",
        "Agents with a session open on this server",
        SERVER.sessions.clone(),
    );
    r.register(
        "midonet_server_topology_watches",
        "Topology watches (agents' views) open on this server",
        SERVER.watches.clone(),
    );
    let rev: Gauge = Gauge::default();
    rev.set(revision as i64);
    r.register(
        "midonet_server_nsdb_revision",
        "The NSDB's last committed revision",
        rev,
    );
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    /// A sample's value (the metrics are the process's: other tests in it
    /// may have moved them further).
    fn value(t: &str, sample: &str) -> f64 {
        t.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in {t}"))
    }

    #[test]
    fn requests_by_route_and_status() {
        super::observe("GET", "bridges/{id}", 200, 0.0003);
        super::observe("GET", "bridges/{id}", 404, 0.0002);
        let _s = super::Open::session();
        super::commit(0.002, 3, true);
        let t = super::render(42);
        assert!(
            value(
                &t,
                r#"midonet_server_rest_requests_total{method="GET",route="bridges/{id}",status="404"}"#
            ) >= 1.0
        );
        assert_eq!(value(&t, "midonet_server_nsdb_revision"), 42.0);
        assert!(value(&t, "midonet_server_agent_sessions") >= 1.0);
        assert!(
            value(
                &t,
                r#"midonet_server_nsdb_commit_seconds_count{outcome="ok"}"#
            ) >= 1.0
        );
        assert!(value(&t, "midonet_server_nsdb_commit_writes_total") >= 3.0);
        assert!(
            t.contains("# TYPE midonet_server_rest_request_seconds histogram"),
            "{t}"
        );
    }
}

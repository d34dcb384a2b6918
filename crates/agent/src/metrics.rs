//! The agent's Prometheus metrics (`--metrics-listen ADDR`, `GET /metrics`):
//! what each packet worker reported at its last tick (once a second),
//! encoded on each scrape in the Prometheus text format.

use datapath::{PortCounters, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// What one worker counted since it started.
#[derive(Clone, Debug, Default)]
pub struct WorkerMetrics {
    pub ports: Vec<(Uuid, PortCounters)>,
    /// Simulations: count, sampled latency, drops by class.
    pub meter: sim::meter::Meter,
    /// Packets drop flows dropped, by `sim::DROP_CLASSES`.
    pub flow_drops: [u64; sim::DROP_CLASSES.len()],
    pub flow_hits: u64,
    pub flow_misses: u64,
    /// Packets parked waiting for topology (the upcall queue).
    pub parked: u64,
    pub nat_blocks: u64,
}

/// Every worker's last report.
#[derive(Debug)]
pub struct Metrics {
    workers: Mutex<Vec<(Stats, WorkerMetrics)>>,
}

impl Metrics {
    pub fn new(workers: usize) -> Arc<Metrics> {
        Arc::new(Metrics {
            workers: Mutex::new(vec![Default::default(); workers]),
        })
    }

    pub fn set_stats(&self, i: usize, s: Stats) {
        if let Some(w) = self.lock().get_mut(i) {
            w.0 = s;
        }
    }

    /// Each worker's last datapath counters (the stats file's content).
    pub fn stats(&self) -> Vec<Stats> {
        self.lock().iter().map(|(s, _)| *s).collect()
    }

    pub fn set(&self, i: usize, m: WorkerMetrics) {
        if let Some(w) = self.lock().get_mut(i) {
            w.1 = m;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Stats, WorkerMetrics)>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The text exposition of every metric.
    pub fn render(self: &Arc<Self>) -> String {
        let mut r = Registry::default();
        r.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
        out
    }
}

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// One counter family with one label.
fn labelled(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (l, v) in values {
        let labels = [(label.to_string(), l.clone())];
        ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Metrics {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let w = self.lock().clone();
        let sum = |f: &dyn Fn(&Stats) -> u64| w.iter().map(|(s, _)| f(s)).sum::<u64>();
        let msum = |f: &dyn Fn(&WorkerMetrics) -> u64| w.iter().map(|(_, m)| f(m)).sum::<u64>();
        // Ports: a port served by several workers (fanout) is their sum.
        let mut ports: std::collections::BTreeMap<Uuid, PortCounters> = Default::default();
        for (_, m) in &w {
            for (id, c) in &m.ports {
                let p = ports.entry(*id).or_default();
                p.rx_packets += c.rx_packets;
                p.rx_bytes += c.rx_bytes;
                p.tx_packets += c.tx_packets;
                p.tx_bytes += c.tx_bytes;
            }
        }
        type Pick = fn(&PortCounters) -> u64;
        let per_port: [(&str, &str, Pick); 4] = [
            (
                "midonet_agent_port_rx_packets",
                "Frames received from a local port's interface",
                |c| c.rx_packets,
            ),
            (
                "midonet_agent_port_rx_bytes",
                "Bytes received from a local port's interface",
                |c| c.rx_bytes,
            ),
            (
                "midonet_agent_port_tx_packets",
                "Frames sent to a local port's interface",
                |c| c.tx_packets,
            ),
            (
                "midonet_agent_port_tx_bytes",
                "Bytes sent to a local port's interface",
                |c| c.tx_bytes,
            ),
        ];
        for (name, help, pick) in per_port {
            let v: Vec<(String, u64)> = ports
                .iter()
                .map(|(id, c)| (id.to_string(), pick(c)))
                .collect();
            labelled(&mut e, name, help, "port", &v)?;
        }
        // Drops: the simulation's reasons and the datapath's own.
        let mut drops: Vec<(String, u64)> = sim::DROP_CLASSES
            .iter()
            .enumerate()
            .map(|(i, c)| (c.to_string(), msum(&|m| m.meter.drops[i] + m.flow_drops[i])))
            .collect();
        drops.extend([
            ("malformed_frame".to_string(), sum(&|s| s.malformed)),
            ("bad_offload".into(), sum(&|s| s.bad_offload)),
            ("mtu".into(), sum(&|s| s.frag_needed)),
            ("no_tunnel_peer".into(), sum(&|s| s.no_route_to_host)),
            ("unknown_tunnel_key".into(), sum(&|s| s.unknown_tunnel_key)),
            ("tunnel_not_member".into(), sum(&|s| s.tunnel_not_member)),
            ("send_error".into(), sum(&|s| s.send_errors)),
        ]);
        labelled(
            &mut e,
            "midonet_agent_drops",
            "Packets dropped, by reason",
            "reason",
            &drops,
        )?;
        labelled(
            &mut e,
            "midonet_agent_flow_state_messages",
            "Flow-state messages to and from peers",
            "direction",
            &[
                ("tx".into(), sum(&|s| s.flow_state_tx)),
                ("rx".into(), sum(&|s| s.flow_state_rx)),
            ],
        )?;
        counter(
            &mut e,
            "midonet_agent_tunnel_rx_packets",
            "VXLAN datagrams received",
            sum(&|s| s.tunnel_rx),
        )?;
        counter(
            &mut e,
            "midonet_agent_tunnel_tx_packets",
            "VXLAN datagrams sent",
            sum(&|s| s.tunnel_tx),
        )?;
        counter(
            &mut e,
            "midonet_agent_nat_exhausted",
            "New connections refused: no free NAT port",
            sum(&|s| s.nat_exhausted),
        )?;
        counter(
            &mut e,
            "midonet_agent_worker_panics",
            "Panics caught in packet workers",
            sum(&|s| s.worker_panics),
        )?;
        counter(
            &mut e,
            "midonet_agent_flow_hits",
            "Packets that matched an installed flow",
            msum(&|m| m.flow_hits),
        )?;
        counter(
            &mut e,
            "midonet_agent_flow_misses",
            "Packets that matched no flow (simulated)",
            msum(&|m| m.flow_misses),
        )?;
        gauge(
            &mut e,
            "midonet_agent_flows",
            "Installed flows",
            sum(&|s| s.flows) as i64,
        )?;
        gauge(
            &mut e,
            "midonet_agent_conntrack_entries",
            "Tracked connections",
            sum(&|s| s.conntrack) as i64,
        )?;
        gauge(
            &mut e,
            "midonet_agent_nat_bindings",
            "NAT bindings held (both directions)",
            sum(&|s| s.nat) as i64,
        )?;
        gauge(
            &mut e,
            "midonet_agent_nat_blocks",
            "SNAT port blocks leased",
            msum(&|m| m.nat_blocks) as i64,
        )?;
        gauge(
            &mut e,
            "midonet_agent_upcall_queue",
            "Packets waiting for topology",
            msum(&|m| m.parked) as i64,
        )?;
        // The simulations' latency.
        // Per bucket, not cumulative: the encoder adds them up.
        let buckets: Vec<(f64, u64)> = sim::meter::BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
            .map(|(i, le)| (le, msum(&|m| m.meter.buckets[i])))
            .collect();
        counter(
            &mut e,
            "midonet_agent_simulations",
            "Packets simulated",
            msum(&|m| m.meter.simulations),
        )?;
        let count = msum(&|m| m.meter.sampled);
        let secs: f64 = w.iter().map(|(_, m)| m.meter.seconds).sum();
        let mut h = e.encode_descriptor(
            "midonet_agent_simulation_seconds",
            "Time a packet's simulation took (one in 64 timed)",
            None,
            MetricType::Histogram,
        )?;
        h.encode_histogram::<prometheus_client::encoding::NoLabelSet>(secs, count, &buckets, None)?;
        Ok(())
    }
}

/// Serves `GET /metrics` on `addr` until the task is dropped.
pub async fn serve(addr: std::net::SocketAddr, m: Arc<Metrics>) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let m = m.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    let l = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(l, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_ports_reasons_and_buckets() {
        let m = Metrics::new(2);
        let port = Uuid::from_u128(7);
        let mut w = WorkerMetrics {
            ports: vec![(
                port,
                PortCounters {
                    rx_packets: 100,
                    rx_bytes: 9800,
                    tx_packets: 3,
                    tx_bytes: 300,
                },
            )],
            ..Default::default()
        };
        w.meter.simulations = 32;
        w.meter.sampled = 2;
        w.meter.seconds = 0.00002;
        w.meter.drops[0] = 15;
        w.flow_drops[0] = 5;
        w.meter.buckets[sim::meter::bucket(8_000)] += 1;
        w.meter.buckets[sim::meter::bucket(12_000)] += 1;
        m.set(0, w.clone());
        m.set(1, w);
        let text = m.render();
        assert!(
            text.contains(&format!(
                "midonet_agent_port_rx_packets_total{{port=\"{port}\"}} 200"
            )),
            "{text}"
        );
        assert!(
            text.contains("midonet_agent_drops_total{reason=\"rule\"} 40"),
            "{text}"
        );
        assert!(
            text.contains("midonet_agent_simulation_seconds_count 4")
                && text.contains("midonet_agent_simulation_seconds_bucket{le=\"+Inf\"} 4"),
            "{text}"
        );
        assert_eq!(
            text.matches("midonet_agent_port_rx_packets_total{").count(),
            1,
            "{text}"
        );
        assert!(
            text.contains("midonet_agent_simulations_total 64"),
            "{text}"
        );
        assert!(
            text.contains("midonet_agent_simulation_seconds_bucket{le=\"1e-05\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE midonet_agent_flows gauge"), "{text}");
    }
}

/// One installed flow, as `midonet flows` shows it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowDump {
    pub worker: usize,
    /// The local port it matches packets from (None: the tunnel's).
    pub in_port: Option<Uuid>,
    /// The fields it matches (its mask), by name.
    pub matches: Vec<(String, String)>,
    pub actions: Vec<String>,
    /// A drop flow's reason (`sim::DROP_CLASSES`).
    pub drop: Option<&'static str>,
    /// None for a NAT'd connection's compact flow: it keeps no counters
    /// and no install time.
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub age_ms: Option<u64>,
    pub expires_in_ms: u64,
    pub tags: usize,
    /// A NAT'd connection's compact flow (one per direction).
    pub connection: bool,
}

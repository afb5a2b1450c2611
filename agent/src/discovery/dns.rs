//! DNS-based discovery (`dns_sd_configs`, Prometheus' `discovery/dns`):
//! every `refresh_interval`, each name is looked up (SRV by default, or A,
//! AAAA, MX, NS) and becomes one target group whose source is the name.
//!
//! As in Prometheus, a name that does not exist (NXDOMAIN) or has no
//! records of the type is an empty group, not an error: the DNS said so.
//! Any other failure (timeout, SERVFAIL, REFUSED) keeps that name's last
//! good group, since nothing is known about it, and the [`Status`] says why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use hickory_resolver::TokioResolver;
use tokio::sync::watch;

use super::{join_host_port, publish, Groups, LabelSet, Provider, Status, TargetGroup};
use crate::config::discovery::{DnsRecordType, DnsSdConfig};

pub const NAME_LABEL: &str = "__meta_dns_name";
pub const SRV_TARGET_LABEL: &str = "__meta_dns_srv_record_target";
pub const SRV_PORT_LABEL: &str = "__meta_dns_srv_record_port";
pub const MX_TARGET_LABEL: &str = "__meta_dns_mx_record_target";
pub const NS_TARGET_LABEL: &str = "__meta_dns_ns_record_target";

/// Where lookups go.
#[derive(Clone)]
pub enum Resolver {
    /// The system's resolver config (/etc/resolv.conf), re-read at every
    /// refresh as Prometheus does, so a changed resolv.conf is followed.
    System,
    /// A fixed resolver (a given nameserver, in tests).
    Fixed(Box<TokioResolver>),
}

impl Resolver {
    /// A resolver asking only `server` (UDP, then TCP on truncation), one
    /// attempt with a one-second timeout so a dead server fails a refresh
    /// quickly.
    pub fn at(server: SocketAddr) -> anyhow::Result<Resolver> {
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(vec![ns]),
            TokioRuntimeProvider::default(),
        );
        let o = b.options_mut();
        o.timeout = Duration::from_secs(1);
        o.attempts = 1;
        o.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        Ok(Resolver::Fixed(Box::new(b.build()?)))
    }

    fn get(&self) -> anyhow::Result<TokioResolver> {
        match self {
            Resolver::System => {
                let b = TokioResolver::builder_tokio()
                    .map_err(|e| anyhow::anyhow!("cannot read the system resolver config: {e}"))?;
                Ok(b.build()?)
            }
            Resolver::Fixed(r) => {
                // Every refresh asks the DNS, as Prometheus does; the
                // resolver's cache would hide changes until the TTL ends.
                r.clear_cache();
                Ok((**r).clone())
            }
        }
    }
}

fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::Srv => RecordType::SRV,
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// One answer record as a target, labelled as Prometheus does: every
/// `__meta_dns_*` label present, empty where the type does not set it;
/// SRV/MX/NS targets keep their trailing dot in the label, not in the
/// address. None for records that are not targets (CNAMEs of the chain).
pub fn record_target(name: &str, port: u16, record: &Record) -> Option<LabelSet> {
    let (mut srv_target, mut srv_port, mut mx, mut ns) =
        (String::new(), String::new(), String::new(), String::new());
    let address = match &record.data {
        RData::SRV(srv) => {
            srv_target = srv.target.to_string();
            srv_port = srv.port.to_string();
            join_host_port(srv_target.trim_end_matches('.'), srv.port)
        }
        RData::MX(r) => {
            mx = r.exchange.to_string();
            join_host_port(mx.trim_end_matches('.'), port)
        }
        RData::NS(r) => {
            ns = r.0.to_string();
            join_host_port(ns.trim_end_matches('.'), port)
        }
        RData::A(a) => join_host_port(&a.0.to_string(), port),
        RData::AAAA(a) => join_host_port(&a.0.to_string(), port),
        RData::CNAME(_) => return None,
        other => {
            tracing::warn!(name, record = ?other.record_type(), "dns_sd: ignoring a record of an unexpected type");
            return None;
        }
    };
    Some(LabelSet::from([
        ("__address__".to_string(), address),
        (NAME_LABEL.to_string(), name.to_string()),
        (SRV_TARGET_LABEL.to_string(), srv_target),
        (SRV_PORT_LABEL.to_string(), srv_port),
        (MX_TARGET_LABEL.to_string(), mx),
        (NS_TARGET_LABEL.to_string(), ns),
    ]))
}

/// Looks `name` up: Ok(targets), empty when the name does not exist or has
/// no such records; Err when the DNS gave no usable answer.
async fn lookup_one(
    resolver: &TokioResolver,
    sd: &DnsSdConfig,
    name: &str,
) -> anyhow::Result<Vec<LabelSet>> {
    let port = sd.port.unwrap_or(0);
    match resolver.lookup(name, record_type(sd.record_type)).await {
        Ok(l) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| record_target(name, port, r))
            .collect()),
        Err(e) if e.is_no_records_found() => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

/// One refresh: every name looked up at once. `last` holds each name's
/// last good group (in config order) and is updated in place; the error
/// names each name that failed.
async fn refresh(
    resolver: &Resolver,
    sd: &DnsSdConfig,
    last: &mut [Option<TargetGroup>],
) -> Option<String> {
    let r = match resolver.get() {
        Ok(r) => r,
        Err(e) => return Some(format!("{e:#}")),
    };
    let looks = sd.names.iter().map(|n| lookup_one(&r, sd, n));
    let results = futures::future::join_all(looks).await;
    let mut errors = Vec::new();
    for ((name, res), slot) in sd.names.iter().zip(results).zip(last.iter_mut()) {
        match res {
            Ok(targets) => {
                *slot = Some(TargetGroup {
                    source: name.clone(),
                    targets,
                    labels: LabelSet::new(),
                })
            }
            Err(e) => {
                tracing::warn!(name = %name, error = %e, "dns_sd: lookup failed; keeping the name's previous targets");
                errors.push(format!("lookup of {name:?} failed: {e}"));
            }
        }
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// Looks the config's names up now and every `refresh_interval`. The task
/// ends when the receiver is dropped.
pub fn start(sd: DnsSdConfig, resolver: Resolver, status: Arc<Status>) -> Provider {
    let (tx, rx) = watch::channel::<Groups>(Arc::new(Vec::new()));
    let provider = Provider {
        groups: rx,
        status: status.clone(),
    };
    tokio::spawn(async move {
        let mut last: Vec<Option<TargetGroup>> = vec![None; sd.names.len()];
        let mut tick = tokio::time::interval(sd.refresh_interval.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let error = tokio::select! {
                e = refresh(&resolver, &sd, &mut last) => e,
                _ = tx.closed() => return,
            };
            let groups: Vec<TargetGroup> = last.iter().flatten().cloned().collect();
            let targets = groups.iter().map(|g| g.targets.len()).sum();
            match error {
                Some(e) => status.failed_with(e, targets),
                None => status.succeeded(targets),
            }
            publish(&tx, groups);
        }
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SRV, TXT};
    use hickory_resolver::proto::rr::Name;

    fn rec(data: RData) -> Record {
        Record::from_rdata(Name::from_ascii("x.").unwrap(), 60, data)
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn want(addr: &str, name: &str, srv: (&str, &str), mx: &str, ns: &str) -> LabelSet {
        LabelSet::from([
            ("__address__".into(), addr.into()),
            (NAME_LABEL.into(), name.into()),
            (SRV_TARGET_LABEL.into(), srv.0.into()),
            (SRV_PORT_LABEL.into(), srv.1.into()),
            (MX_TARGET_LABEL.into(), mx.into()),
            (NS_TARGET_LABEL.into(), ns.into()),
        ])
    }

    /// Prometheus' dns_test.go cases, record by record.
    #[test]
    fn records_become_targets_as_prometheus_labels_them() {
        let name = "web.example.com.";
        let a = rec(RData::A(A::new(192, 0, 2, 2)));
        assert_eq!(
            record_target(name, 80, &a),
            Some(want("192.0.2.2:80", name, ("", ""), "", ""))
        );
        let aaaa = rec(RData::AAAA(AAAA(std::net::Ipv6Addr::LOCALHOST)));
        assert_eq!(
            record_target(name, 80, &aaaa),
            Some(want("[::1]:80", name, ("", ""), "", ""))
        );
        let srv_name = "_mysql._tcp.db.example.com.";
        let srv = rec(RData::SRV(SRV::new(0, 0, 3306, n("db1.example.com."))));
        assert_eq!(
            record_target(srv_name, 0, &srv),
            Some(want(
                "db1.example.com:3306",
                srv_name,
                ("db1.example.com.", "3306"),
                "",
                ""
            ))
        );
        let mx = rec(RData::MX(MX::new(10, n("smtp2.example.com."))));
        assert_eq!(
            record_target("example.com.", 25, &mx),
            Some(want(
                "smtp2.example.com:25",
                "example.com.",
                ("", ""),
                "smtp2.example.com.",
                ""
            ))
        );
        let ns = rec(RData::NS(NS(n("ns1.example.com."))));
        assert_eq!(
            record_target("example.com.", 53, &ns),
            Some(want(
                "ns1.example.com:53",
                "example.com.",
                ("", ""),
                "",
                "ns1.example.com."
            ))
        );
        let cname = rec(RData::CNAME(CNAME(n("other.example.com."))));
        assert_eq!(record_target(name, 80, &cname), None);
        let txt = rec(RData::TXT(TXT::new(
            vec!["this should be discarded".into()],
        )));
        assert_eq!(record_target(name, 80, &txt), None);
    }
}

//! DNS SD (`dns_sd_configs`) against a DNS server on 127.0.0.1: the groups
//! Prometheus' discovery/dns tests expect, label by label; records that
//! change; a dead or failing server (last good kept, status says why);
//! NXDOMAIN (an empty group); the config checks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, NS, SRV};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use wasmon::config::discovery::{DnsRecordType, DnsSdConfig};
use wasmon::discovery::{dns, LabelSet, Provider, Status, TargetGroup};

use crate::fixtures::dns::{Answer, FakeDns};

fn sd(names: &[&str], t: DnsRecordType, port: Option<u16>) -> DnsSdConfig {
    DnsSdConfig {
        names: names.iter().map(|n| n.to_string()).collect(),
        record_type: t,
        port,
        refresh_interval: Duration::from_secs(1),
    }
}

fn start(server: &FakeDns, c: DnsSdConfig) -> Provider {
    dns::start(
        c,
        dns::Resolver::at(server.addr).unwrap(),
        Status::new("dns", 0),
    )
}

/// Waits (bounded) until the published groups satisfy `ok`.
async fn groups_until(p: &mut Provider, ok: impl Fn(&[TargetGroup]) -> bool) -> Vec<TargetGroup> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let g = p.groups.borrow_and_update().clone();
        if ok(&g) {
            return (*g).clone();
        }
        match tokio::time::timeout_at(deadline, p.groups.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("groups never became as expected; last: {g:#?}"),
        }
    }
}

/// Waits (bounded) until the status satisfies `ok`.
async fn status_until(
    s: &Status,
    ok: impl Fn(&wasmon::discovery::StatusState) -> bool,
) -> wasmon::discovery::StatusState {
    for _ in 0..150 {
        let st = s.get();
        if ok(&st) {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("status never became as expected: {:?}", s.get());
}

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn target(addr: &str, name: &str, srv: (&str, &str), mx: &str, ns: &str) -> LabelSet {
    LabelSet::from([
        ("__address__".into(), addr.into()),
        ("__meta_dns_name".into(), name.into()),
        ("__meta_dns_srv_record_target".into(), srv.0.into()),
        ("__meta_dns_srv_record_port".into(), srv.1.into()),
        ("__meta_dns_mx_record_target".into(), mx.into()),
        ("__meta_dns_ns_record_target".into(), ns.into()),
    ])
}

fn group(source: &str, targets: Vec<LabelSet>) -> TargetGroup {
    TargetGroup {
        source: source.into(),
        targets,
        labels: LabelSet::new(),
    }
}

/// Prometheus' dns_test.go cases (A, AAAA, SRV, MX) plus NS, through a
/// real resolver and server.
#[tokio::test]
async fn answers_become_the_groups_prometheus_makes() {
    let server = FakeDns::start().await;
    let web = "web.example.com.";
    server.set(
        web,
        RecordType::A,
        Answer::Records(vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 2)))]),
    );
    server.set(
        web,
        RecordType::AAAA,
        Answer::Records(vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))]),
    );
    let db = "_mysql._tcp.db.example.com.";
    server.set(
        db,
        RecordType::SRV,
        Answer::Records(vec![
            RData::SRV(SRV::new(0, 0, 3306, n("db1.example.com."))),
            RData::SRV(SRV::new(0, 0, 3306, n("db2.example.com."))),
        ]),
    );
    server.set(
        "example.com.",
        RecordType::MX,
        Answer::Records(vec![
            RData::MX(MX::new(0, n("smtp1.example.com."))),
            RData::MX(MX::new(10, n("smtp2.example.com."))),
        ]),
    );
    server.set(
        "example.com.",
        RecordType::NS,
        Answer::Records(vec![RData::NS(NS(n("ns1.example.com.")))]),
    );

    let db_target = |host: &str| {
        target(
            &format!("{host}:3306"),
            db,
            (&format!("{host}."), "3306"),
            "",
            "",
        )
    };
    let db_group = group(
        db,
        vec![db_target("db1.example.com"), db_target("db2.example.com")],
    );
    let cases = [
        (
            sd(&[web], DnsRecordType::A, Some(80)),
            vec![group(
                web,
                vec![target("192.0.2.2:80", web, ("", ""), "", "")],
            )],
        ),
        (
            sd(&[web], DnsRecordType::Aaaa, Some(80)),
            vec![group(web, vec![target("[::1]:80", web, ("", ""), "", "")])],
        ),
        (sd(&[db], DnsRecordType::Srv, None), vec![db_group.clone()]),
        (
            sd(&["example.com."], DnsRecordType::Mx, Some(25)),
            vec![group(
                "example.com.",
                vec![
                    target(
                        "smtp1.example.com:25",
                        "example.com.",
                        ("", ""),
                        "smtp1.example.com.",
                        "",
                    ),
                    target(
                        "smtp2.example.com:25",
                        "example.com.",
                        ("", ""),
                        "smtp2.example.com.",
                        "",
                    ),
                ],
            )],
        ),
        (
            sd(&["example.com."], DnsRecordType::Ns, Some(9100)),
            vec![group(
                "example.com.",
                vec![target(
                    "ns1.example.com:9100",
                    "example.com.",
                    ("", ""),
                    "",
                    "ns1.example.com.",
                )],
            )],
        ),
        // Two names, one group each, in config order.
        (
            sd(&[db, "_other._tcp.example.com."], DnsRecordType::Srv, None),
            vec![db_group.clone(), group("_other._tcp.example.com.", vec![])],
        ),
    ];
    for (c, want) in cases {
        let what = format!("{:?} {:?}", c.record_type, c.names);
        let mut p = start(&server, c);
        let got = groups_until(&mut p, |g| g.len() == want.len()).await;
        let mut got = got;
        for g in &mut got {
            g.targets.sort();
        }
        assert_eq!(got, want, "{what}");
        let st = p.status.get();
        assert_eq!(st.last_error, None, "{what}");
        assert_eq!(
            st.targets,
            want.iter().map(|g| g.targets.len()).sum::<usize>(),
            "{what}"
        );
        assert!(st.last_success.is_some(), "{what}");
    }
}

#[tokio::test]
async fn records_that_change_are_followed_at_the_next_refresh() {
    let server = FakeDns::start().await;
    let name = "_app._tcp.example.com.";
    let srv = |host: &str, port| RData::SRV(SRV::new(0, 0, port, n(host)));
    server.set(
        name,
        RecordType::SRV,
        Answer::Records(vec![srv("a.example.com.", 80)]),
    );
    let mut p = start(&server, sd(&[name], DnsRecordType::Srv, None));
    groups_until(&mut p, |g| g.len() == 1 && g[0].targets.len() == 1).await;
    server.set(
        name,
        RecordType::SRV,
        Answer::Records(vec![srv("a.example.com.", 80), srv("b.example.com.", 81)]),
    );
    let g = groups_until(&mut p, |g| g[0].targets.len() == 2).await;
    let addrs: Vec<&str> = g[0]
        .targets
        .iter()
        .map(|t| t["__address__"].as_str())
        .collect();
    assert!(addrs.contains(&"b.example.com:81"), "{addrs:?}");
    server.set(
        name,
        RecordType::SRV,
        Answer::Records(vec![srv("b.example.com.", 81)]),
    );
    let g = groups_until(&mut p, |g| g[0].targets.len() == 1).await;
    assert_eq!(g[0].targets[0]["__address__"], "b.example.com:81");
    assert_eq!(p.status.get().last_error, None);
}

/// A server that stops answering, or answers SERVFAIL: nothing is known,
/// so the name keeps its last good targets and the status says why; the
/// other names are still refreshed.
#[tokio::test]
async fn a_failing_server_keeps_the_last_good_targets_and_says_why() {
    let server = FakeDns::start().await;
    let (a, b) = ("a.example.com.", "b.example.com.");
    let ip = |x| Answer::Records(vec![RData::A(A(Ipv4Addr::new(10, 0, 0, x)))]);
    server.set(a, RecordType::A, ip(1));
    server.set(b, RecordType::A, ip(2));
    let mut p = start(&server, sd(&[a, b], DnsRecordType::A, Some(9100)));
    let good = groups_until(&mut p, |g| g.len() == 2).await;
    status_until(&p.status, |s| s.last_success.is_some()).await;

    // SERVFAIL for one name: it keeps its target, the other one moves.
    server.set(a, RecordType::A, Answer::ServFail);
    server.set(b, RecordType::A, ip(3));
    let g = groups_until(&mut p, |g| {
        g[1].targets[0]["__address__"] == "10.0.0.3:9100"
    })
    .await;
    assert_eq!(g[0], good[0], "the failed name keeps its last good group");
    let st = status_until(&p.status, |s| s.last_error.is_some()).await;
    let err = st.last_error.clone().unwrap();
    assert!(err.contains(a) && !err.contains(b), "{err}");
    assert!(st.failures >= 1 && st.refreshes > st.failures, "{st:?}");
    assert_eq!(st.targets, 2);

    // A server that does not answer at all: everything kept.
    server.set(a, RecordType::A, ip(1));
    status_until(&p.status, |s| s.last_error.is_none()).await;
    let before = p.groups.borrow().clone();
    server.set_silent(true);
    let failures = p.status.get().failures;
    let st = status_until(&p.status, |s| s.failures > failures).await;
    let err = st.last_error.clone().unwrap();
    assert!(err.contains(a) && err.contains(b), "{err}");
    assert_eq!(*p.groups.borrow(), before, "a dead server empties nothing");
    assert_eq!(st.targets, 2);

    // Back again: healthy.
    server.set_silent(false);
    status_until(&p.status, |s| s.last_error.is_none()).await;
}

/// Prometheus: NXDOMAIN (or a name without records of the type) is the
/// DNS saying there is nothing, an empty group, not an error.
#[tokio::test]
async fn nxdomain_is_an_empty_group_not_an_error() {
    let server = FakeDns::start().await;
    let name = "_gone._tcp.example.com.";
    server.set(
        name,
        RecordType::SRV,
        Answer::Records(vec![RData::SRV(SRV::new(0, 0, 80, n("a.example.com.")))]),
    );
    let mut p = start(
        &server,
        sd(
            &[name, "_never._tcp.example.com."],
            DnsRecordType::Srv,
            None,
        ),
    );
    groups_until(&mut p, |g| g.len() == 2 && g[0].targets.len() == 1).await;
    server.remove(name);
    let g = groups_until(&mut p, |g| g[0].targets.is_empty()).await;
    assert_eq!(
        g,
        vec![
            group(name, vec![]),
            group("_never._tcp.example.com.", vec![])
        ]
    );
    let st = p.status.get();
    assert_eq!(st.last_error, None);
    assert_eq!(st.failures, 0);
    assert_eq!(st.targets, 0);
    assert!(server.queries() > 0);
}

#[test]
fn a_port_is_required_except_for_srv() {
    let cfg = |body: &str| {
        format!(
            "[[scrape_configs]]\njob_name = \"dnsjob\"\n[[scrape_configs.dns_sd_configs]]\n{body}"
        )
    };
    for (body, want) in [
        (
            "names = [\"a.example.com\"]\ntype = \"A\"\n",
            "port is required for type A",
        ),
        (
            "names = [\"a.example.com\"]\ntype = \"AAAA\"\n",
            "port is required for type AAAA",
        ),
        (
            "names = [\"a.example.com\"]\ntype = \"MX\"\n",
            "port is required for type MX",
        ),
        ("names = []\n", "names must list"),
    ] {
        let err = wasmon::config::Config::parse(&cfg(body), "a.toml").unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(want) && msg.contains("dnsjob") && msg.contains("dns_sd_configs[0]"),
            "{body}: {msg}"
        );
    }
    let err = wasmon::config::Config::parse(&cfg("names = [\"a\"]\ntype = \"PTR\"\n"), "a.toml")
        .unwrap_err();
    assert!(format!("{err:#}").contains("PTR"), "{err:#}");
    for body in [
        "names = [\"_a._tcp.example.com\"]\n",
        "names = [\"a.example.com\"]\ntype = \"A\"\nport = 9100\nrefresh_interval = \"10s\"\n",
    ] {
        wasmon::config::Config::parse(&cfg(body), "a.toml").unwrap();
    }
}

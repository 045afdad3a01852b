//! No acknowledged lease is lost when the server is killed with SIGKILL in
//! the middle of a burst: every ACK a client received is in the database
//! (and the exported lease file) after a restart.

mod netns;

use std::net::Ipv4Addr;
use std::time::Duration;

use netns::{
    load_generator, read_acks, wait_for, Lab, Proc, ServerConf, ServerKind, NETMASK, SERVER_IP,
};

const GENERATOR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

#[test]
fn kill_9_during_a_burst_loses_no_acknowledged_lease() {
    let Some(lab) = Lab::new("kill_9_during_a_burst") else {
        return;
    };
    let generator = load_generator();
    let conf = ServerConf::base()
        .line("dhcp-range=198.18.0.10,198.18.0.250,255.255.255.0,12h")
        .line("dhcp-lease-max=1000")
        .line("quiet-dhcp");
    let mut srv = lab.start_server(&conf);
    let host = lab.add_client();
    host.set_addr(GENERATOR_IP, NETMASK);

    let acks_path = lab.dir().join("acks.txt");
    let gen_log = lab.dir().join("generator.log");
    let acks_arg = acks_path.display().to_string();
    let server = SERVER_IP.to_string();
    let bind = GENERATOR_IP.to_string();
    let mut gen = Proc::spawn(
        "dhcp_load",
        &host.ns,
        &[
            generator.to_str().expect("utf-8 path"),
            "--server",
            &server,
            "--bind",
            &bind,
            "--clients",
            "235",
            "--window",
            "32",
            "--acks",
            &acks_arg,
            "--max-secs",
            "20",
        ],
        &gen_log,
    );

    // Kill the server in the middle of the burst: some ACKs out, many not.
    wait_for(Duration::from_secs(15), "the first 60 ACKs", || {
        (read_acks(&acks_path).len() >= 60).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", srv.log_text()));
    srv.kill9();
    assert!(
        gen.wait_timeout(Duration::from_secs(25)).is_some(),
        "the generator did not finish"
    );
    let acks = read_acks(&acks_path);
    assert!(acks.len() >= 60, "{} ACKs", acks.len());
    eprintln!("{} ACKs received before and around the kill", acks.len());

    // Every ACKed lease is in the lease file the restarted server exports.
    srv.start();
    let leases = srv.wait_leases("every acknowledged lease", |l| {
        acks.iter()
            .all(|(mac, ip)| l.iter().any(|x| &x.mac == mac && x.ip == *ip))
    });
    assert!(leases.len() >= acks.len());
    srv.stop();

    // And in the database itself, bound to the client that was told so.
    if srv.kind == ServerKind::Twinmasq {
        let db = twinmasq::lease::LeaseDb::open(&srv.db, Default::default())
            .expect("open the lease database");
        for (mac, ip) in &acks {
            let rec = db
                .get(*ip)
                .unwrap_or_else(|| panic!("{ip} acknowledged to {mac} is not in the database"));
            let hw: Vec<String> = rec.hwaddr.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(&hw.join(":"), mac, "{ip}");
            assert_eq!(rec.state, twinmasq_proto::LeaseState::Bound, "{ip}");
        }
        eprintln!(
            "checked {} acknowledged leases in the database after kill -9",
            acks.len()
        );
    }
}

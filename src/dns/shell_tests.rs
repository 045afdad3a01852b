//! The UDP client reference and the table of our IPv6 addresses behind it.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn udp_client_references_round_trip() {
    let conn = udp_conn(3, 17, u32::from(Ipv4Addr::new(198, 18, 0, 1)));
    assert_eq!(
        udp_conn_parts(conn),
        (3, 17, u32::from(Ipv4Addr::new(198, 18, 0, 1)))
    );
    let mut t = LocalV6::default();
    let a = t.index(ip6("2001:db8:1::1")).unwrap();
    let b = t.index(ip6("fe80::1")).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.index(ip6("2001:db8:1::1")), Some(a));
    assert_eq!(t.addr(b), ip6("fe80::1"));
    assert_eq!(t.addr(u32::MAX), Ipv6Addr::UNSPECIFIED);
    for i in 0..MAX_LOCAL_V6 as u128 {
        t.index(Ipv6Addr::from(0x2001_0db8_00ff_u128 << 80 | i));
    }
    assert_eq!(t.index(ip6("2001:db8:2::1")), None, "the table is capped");
}

/// RFC 7766 clients pipeline queries, and TCP may split a length prefix
/// anywhere. A reply that becomes ready while half a prefix has been read
/// must not cost the byte already read (the review's TCP desync).
#[tokio::test]
async fn a_length_prefix_split_around_a_reply_is_not_lost() {
    use tokio::io::AsyncWriteExt;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (events, mut rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        tcp_client(stream, peer, 1, events).await;
    });
    // The engine's stand-in: answers each query with its own bytes.
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let Event::TcpQuery { bytes, reply, .. } = ev {
                let _ = reply.send(vec![bytes]).await;
            }
        }
    });

    let frame = |body: &[u8]| {
        let mut v = (body.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    };
    let q1 = frame(b"first query");
    let q2 = frame(b"second query");
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Query 1 and the first byte of query 2's prefix in one write; the
    // reply to query 1 arrives while the server holds that byte.
    let mut first = q1.clone();
    first.push(q2[0]);
    c.write_all(&first).await.unwrap();
    let r1 = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut c))
        .await
        .expect("reply 1 in time")
        .unwrap();
    assert_eq!(r1, b"first query");
    c.write_all(&q2[1..]).await.unwrap();
    let r2 = tokio::time::timeout(Duration::from_secs(2), read_frame(&mut c)).await;
    assert!(
        matches!(&r2, Ok(Ok(b)) if b == b"second query"),
        "the pipelined query must be answered, got {r2:?}"
    );
}

async fn read_frame(c: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut l = [0u8; 2];
    c.read_exact(&mut l).await?;
    let mut b = vec![0u8; usize::from(u16::from_be_bytes(l))];
    c.read_exact(&mut b).await?;
    Ok(b)
}

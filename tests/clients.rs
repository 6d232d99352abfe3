//! The client side of "nothing lost" (issue 9): exact request ids, device numbers checked at
//! the protocol edge, monitor reference counts under pipelining and abrupt disconnects,
//! replay with `after`, slow and idle clients. Real TCP on 127.0.0.1:0 with the simulator on
//! the other side (`tests/support`).

mod support;

use support::env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_come_back_byte_for_byte() {
    let e = env().await;
    let mut c = e.client().await;
    for id in [
        "123456789012345678901234567890",
        "-7",
        "1.50",
        "\"x\\u0041\"",
    ] {
        c.send_raw(&format!("{{\"id\": {id}, \"op\": \"ping\"}}\n"))
            .await;
        assert_eq!(
            c.read_text().await.unwrap(),
            format!(r#"{{"type":"response","id":{id},"ok":true,"result":{{}}}}"#)
        );
    }
    for line in [r#"{"op":"ping"}"#, r#"{"id":null,"op":"ping"}"#] {
        c.send_raw(&format!("{line}\n")).await;
        assert_eq!(
            c.read_text().await.unwrap(),
            r#"{"type":"response","id":null,"ok":false,"error":{"kind":"request","code":"missing_field","message":"`id` (a number or a string) is required"}}"#
        );
    }
}

//! Nothing acknowledged is lost: SIGKILL at random moments under load, a
//! torn WAL, a full buffer, a full disk.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rand::Rng;
use tokio::sync::Mutex;
use tonic::Code;
use tonic_types::StatusExt;

use crate::harness::{ServerOptions, TestServer};

/// An export of `spans` spans whose ids count up from `first`; one trace.
fn export(first: u64, spans: u64) -> ExportTraceServiceRequest {
    let start = 1_764_000_000_000_000_000u64;
    let mut trace_id = vec![0xcc; 8];
    trace_id.extend(first.to_be_bytes());
    let spans = (first..first + spans)
        .map(|id| Span {
            trace_id: trace_id.clone(),
            span_id: id.to_be_bytes().to_vec(),
            name: "work".into(),
            start_time_unix_nano: start + id * 1000,
            end_time_unix_nano: start + id * 1000 + 500,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

/// Span ids stored, with how often each is stored.
async fn stored_span_ids(server: &TestServer) -> Vec<(u64, i64)> {
    let body = server.sql("SELECT span_id, count(*) FROM spans GROUP BY span_id").await;
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (u64::from_str_radix(r[0].as_str().unwrap(), 16).unwrap(), r[1].as_i64().unwrap()))
        .collect()
}

/// Sends one export: OTLP/gRPC, or OTLP/JSON over HTTP (logged in the WAL
/// as JSON). `Err` once the server is gone.
async fn send(
    client: &mut Option<TraceServiceClient<tonic::transport::Channel>>,
    url: &str,
    first: u64,
) -> Result<(), ()> {
    let request = export(first, SPANS_PER_EXPORT);
    match client {
        Some(client) => client.export(request).await.map(drop).map_err(drop),
        None => {
            let response = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&request).unwrap())
                .send()
                .await
                .map_err(drop)?;
            if response.status().is_success() { Ok(()) } else { Err(()) }
        }
    }
}

const SPANS_PER_EXPORT: u64 = 20;

/// Clients export as fast as they can, each span once, and note what was
/// acknowledged; the server is killed with SIGKILL at random moments and
/// restarted. In the end every acknowledged span is there exactly once
/// (and no unacknowledged one twice). Two clients send OTLP/gRPC, one
/// OTLP/JSON, so the WAL replays records of both formats. Rounds:
/// SPANLAKE_CRASH_ROUNDS, 20 by default; raise it for a longer run by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_spans_survive_sigkill_exactly_once() {
    let rounds: usize = std::env::var("SPANLAKE_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    // Compaction runs all the time too, so some crashes land in a merge.
    let mut server = TestServer::start_with(
        ServerOptions::default()
            .arg("--flush-interval", "150ms")
            .arg("--compaction-interval", "200ms")
            .arg("--compaction-min-files", "2"),
    )
    .await;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let next_id = Arc::new(AtomicU64::new(1));
    let json_acknowledged = Arc::new(AtomicU64::new(0));

    for round in 0..rounds {
        let (endpoint, url) = (server.grpc_endpoint(), server.otlp_http_url());
        let clients: Vec<_> = (0..3)
            .map(|i| {
                let (endpoint, url, acknowledged, next_id, json_acknowledged) = (
                    endpoint.clone(),
                    url.clone(),
                    Arc::clone(&acknowledged),
                    Arc::clone(&next_id),
                    Arc::clone(&json_acknowledged),
                );
                tokio::spawn(async move {
                    let mut client = match i {
                        2 => None,
                        _ => match TraceServiceClient::connect(endpoint).await {
                            Ok(client) => Some(client),
                            Err(_) => return,
                        },
                    };
                    loop {
                        let first = next_id.fetch_add(SPANS_PER_EXPORT, Ordering::SeqCst);
                        match send(&mut client, &url, first).await {
                            Ok(()) => {
                                acknowledged.lock().await.push(first);
                                json_acknowledged.fetch_add(u64::from(client.is_none()), Ordering::SeqCst);
                            }
                            Err(()) => return, // the server died: this export may or may not be stored
                        }
                    }
                })
            })
            .collect();
        let pause = rand::rng().random_range(100..600);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.crash_and_restart().await;
        for client in clients {
            client.await.unwrap();
        }
        eprintln!("crash round {round}: {} exports acknowledged so far", acknowledged.lock().await.len());
    }

    let stored = stored_span_ids(&server).await;
    let repeated: Vec<_> = stored.iter().filter(|(_, n)| *n != 1).collect();
    assert!(repeated.is_empty(), "spans stored more than once: {repeated:?}");
    let stored: HashSet<u64> = stored.into_iter().map(|(id, _)| id).collect();
    let acknowledged = acknowledged.lock().await;
    let lost: Vec<u64> = acknowledged
        .iter()
        .flat_map(|first| *first..first + SPANS_PER_EXPORT)
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged spans lost, e.g. {:?}\n{}",
        lost.len(),
        &lost[..lost.len().min(10)],
        server.log()
    );
    assert!(acknowledged.len() > rounds, "the clients got exports through in most rounds");
    let json = json_acknowledged.load(Ordering::SeqCst);
    assert!(json > rounds as u64, "the JSON client got exports through in most rounds: {json}");
    eprintln!(
        "{rounds} SIGKILLs, {} exports acknowledged ({json} as OTLP/JSON), all present exactly once",
        acknowledged.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_wal_tail_is_reported_and_every_intact_record_replayed() {
    let mut server = TestServer::start_with(ServerOptions::default().arg("--flush-interval", "1h")).await;
    let mut client = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    for i in 0..5 {
        client.export(export(i * 10 + 1, 10)).await.unwrap();
    }
    server.crash();
    let wal = server.data_dir().join(".wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let last = segments.pop().expect("a WAL segment");
    // A record announced but cut short, as a crash in the middle of a write leaves it.
    let mut torn = std::fs::read(&last).unwrap();
    torn.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7]);
    std::fs::write(&last, torn).unwrap();

    server.start_again().await;
    assert_eq!(server.span_count().await, 50, "{}", server.log());
    assert!(server.log().contains("torn or corrupt tail"), "{}", server.log());
    assert_eq!(server.metric("spanlake_wal_damaged_bytes_total").await, 11.0);
    // And a second start does not trip over it either.
    server.crash_and_restart().await;
    assert_eq!(server.span_count().await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_gets_retryable_refusals_bounded_memory_and_keeps_what_it_acknowledged() {
    const BUDGET: usize = 4 * 1024 * 1024;
    let server = TestServer::start_with(
        ServerOptions::default()
            .arg("--max-buffer-bytes", &BUDGET.to_string())
            .arg("--flush-interval", "1h")
            .arg("--max-request-bytes", "1048576"),
    )
    .await;
    let baseline_kib = server.peak_rss_kib();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let next_id = Arc::new(AtomicU64::new(1));
    let until = Instant::now() + Duration::from_secs(4);
    let grpc_clients = (0..4).map(|_| {
        let (endpoint, acknowledged, refused, next_id) =
            (server.grpc_endpoint(), Arc::clone(&acknowledged), Arc::clone(&refused), Arc::clone(&next_id));
        tokio::spawn(async move {
            let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
            while Instant::now() < until {
                let first = next_id.fetch_add(200, Ordering::SeqCst);
                match client.export(export(first, 200)).await {
                    Ok(_) => acknowledged.lock().await.push(first),
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        let retry = status.get_details_retry_info().expect("a RetryInfo detail");
                        assert!(retry.retry_delay.is_some_and(|d| !d.is_zero()));
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    });
    let http_client = {
        let (url, acknowledged, refused, next_id) =
            (server.otlp_http_url(), Arc::clone(&acknowledged), Arc::clone(&refused), Arc::clone(&next_id));
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            while Instant::now() < until {
                let first = next_id.fetch_add(200, Ordering::SeqCst);
                let body = serde_json::to_vec(&export(first, 200)).unwrap();
                let response =
                    http.post(&url).header("content-type", "application/json").body(body).send().await.unwrap();
                match response.status().as_u16() {
                    200 => acknowledged.lock().await.push(first),
                    status => {
                        assert!(status == 429 || status == 503, "a retryable refusal, not {status}");
                        assert!(response.headers().contains_key("retry-after"));
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    for client in grpc_clients.chain([http_client]) {
        client.await.unwrap();
    }
    let refused = refused.load(Ordering::SeqCst);
    assert!(refused > 0, "the buffer never filled");
    let grown_mib = (server.peak_rss_kib() - baseline_kib) / 1024;
    // The buffer budget, plus requests in decoding and the flush's copy.
    assert!(grown_mib < 128, "peak RSS grew by {grown_mib} MiB over a {} MiB buffer budget", BUDGET >> 20);

    let stored: HashSet<u64> = stored_span_ids(&server).await.into_iter().map(|(id, _)| id).collect();
    let acknowledged = acknowledged.lock().await;
    assert!(acknowledged.iter().all(|first| (*first..first + 200).all(|id| stored.contains(&id))));
    eprintln!("overload: {} exports acknowledged, {refused} refused, peak RSS +{grown_mib} MiB", acknowledged.len());
}

/// The data directory on a tiny tmpfs: when it fills, exports are refused
/// with a retryable error, nothing stored is damaged, and ingest resumes
/// once space returns.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_exports_retryably_and_recovers() {
    let Some(mount) = crate::harness::TmpfsMount::new(16) else { return };
    let mut server = TestServer::start_with(
        ServerOptions::default().data_dir(&mount.path().join("data")).arg("--flush-interval", "200ms"),
    )
    .await;
    let mut client = TraceServiceClient::connect(server.grpc_endpoint()).await.unwrap();
    client.export(export(1, 100)).await.unwrap();
    server.wait_until_flushed().await;

    // Leave almost no room.
    let filler = mount.path().join("filler");
    mount.fill(&filler, 256 * 1024);
    let mut acknowledged = vec![1];
    let mut refusals = 0;
    for i in 1..200u64 {
        match client.export(export(i * 100 + 1, 100)).await {
            Ok(_) => acknowledged.push(i * 100 + 1),
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "a retryable refusal: {status:?}");
                refusals += 1;
                if refusals > 5 {
                    break;
                }
            }
        }
    }
    assert!(refusals > 0, "the disk never filled");
    assert!(server.log().contains("WAL write failed"), "{}", server.log());

    std::fs::remove_file(&filler).unwrap();
    let first = 1_000_001;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.export(export(first, 100)).await {
            Ok(_) => break,
            Err(status) => assert!(Instant::now() < deadline, "ingest did not resume: {status:?}\n{}", server.log()),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acknowledged.push(first);

    server.restart().await;
    let stored = stored_span_ids(&server).await;
    assert!(stored.iter().all(|(_, n)| *n == 1), "nothing is stored twice");
    let stored: HashSet<u64> = stored.into_iter().map(|(id, _)| id).collect();
    for first in acknowledged {
        assert!((first..first + 100).all(|id| stored.contains(&id)), "export {first} was acknowledged and lost");
    }
}

//! The NATS bus against the real server: heads never move back, bodies are per version and
//! packed (plain ones from before still read), removals reach watchers, and late watchers start
//! from the latest head.

use std::time::Duration;

use futures::StreamExt;
use tollgate_bus::{packing, Bus, ConfigEvent, ConfigFilter, NatsBus, SnapshotBody};
use tollgate_model::Snapshot;
use uuid::Uuid;

fn nats_url() -> String {
    std::env::var("TOLLGATE_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn bus() -> (NatsBus, String) {
    let prefix = format!("bus{}", &Uuid::new_v4().simple().to_string()[..10]);
    let bus = NatsBus::connect(&nats_url(), &prefix)
        .await
        .expect("NATS must be reachable at TOLLGATE_TEST_NATS (default 127.0.0.1:4222)");
    (bus, prefix)
}

async fn cleanup(prefix: &str) {
    if let Ok(client) = async_nats::connect(nats_url()).await {
        let js = async_nats::jetstream::new(client);
        let _ = js.delete_stream(format!("KV_{prefix}_heads")).await;
        let _ = js.delete_stream(format!("OBJ_{prefix}_snapshots")).await;
    }
}

type Events = futures::stream::BoxStream<'static, Result<ConfigEvent, tollgate_bus::BusError>>;

async fn next(watch: &mut Events) -> Option<Result<ConfigEvent, tollgate_bus::BusError>> {
    tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("an event in time")
}

fn snapshot(cp: Uuid, version: i64, host: &str) -> Snapshot {
    Snapshot::compile(cp, Uuid::nil(), version, vec![host.into()], vec![], vec![])
}

#[tokio::test]
async fn heads_never_move_back_and_bodies_follow_heads() {
    let (bus, prefix) = bus().await;
    let cp = Uuid::now_v7();
    bus.publish_snapshot("eu", &snapshot(cp, 2, "two"))
        .await
        .unwrap();
    bus.publish_snapshot("eu", &snapshot(cp, 1, "one"))
        .await
        .unwrap();
    let heads = bus.heads().await.unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(
        heads[0].version, 2,
        "an older publish must not move the head back"
    );
    let body = bus.fetch_snapshot(&heads[0]).await.unwrap().unwrap();
    assert_eq!(
        (body.version, body.hostnames.clone()),
        (2, vec!["two".to_string()])
    );

    let mut older = heads[0].clone();
    older.version = 1;
    assert!(
        bus.fetch_snapshot(&older).await.unwrap().is_none(),
        "a body published after a newer one is dropped at once"
    );

    // A superseded body stays readable for a grace period: whoever read the old head a moment
    // ago is still fetching it.
    bus.publish_snapshot("eu", &snapshot(cp, 3, "three"))
        .await
        .unwrap();
    let superseded = bus.fetch_snapshot(&heads[0]).await.unwrap();
    assert_eq!(superseded.map(|s| s.version), Some(2));

    // Concurrent publishers of different versions end at the highest.
    let publishers = (4..12).map(|v| {
        let bus = &bus;
        async move { bus.publish_snapshot("eu", &snapshot(cp, v, "x")).await }
    });
    for result in futures::future::join_all(publishers).await {
        result.unwrap();
    }
    assert_eq!(bus.heads().await.unwrap()[0].version, 11);
    cleanup(&prefix).await;
}

#[tokio::test]
async fn bodies_travel_packed_and_plain_ones_still_read() {
    let (bus, prefix) = bus().await;
    let cp = Uuid::now_v7();
    let published = snapshot(cp, 1, "packed");
    bus.publish_snapshot("eu", &published).await.unwrap();
    let head = bus.heads().await.unwrap().remove(0);
    let Some(SnapshotBody::Packed(packed)) = bus.fetch_snapshot_body(&head).await.unwrap() else {
        panic!("NatsBus publishes bodies packed");
    };
    assert_eq!(
        packing::unpack(&packed).unwrap(),
        serde_json::to_vec(&published).unwrap()
    );
    assert_eq!(bus.fetch_snapshot(&head).await.unwrap(), Some(published));

    // A body as control planes published it before bodies were packed: plain JSON in the store.
    let plain = snapshot(cp, 2, "plain");
    let client = async_nats::connect(nats_url()).await.unwrap();
    let store = async_nats::jetstream::new(client)
        .get_object_store(format!("{prefix}_snapshots"))
        .await
        .unwrap();
    let json = serde_json::to_vec(&plain).unwrap();
    store
        .put(format!("{cp}/2").as_str(), &mut json.as_slice())
        .await
        .unwrap();
    let mut head = head;
    head.version = 2;
    let fetched = bus.fetch_snapshot_body(&head).await.unwrap();
    assert!(matches!(fetched, Some(SnapshotBody::Encoded(body)) if body == json));
    assert_eq!(bus.fetch_snapshot(&head).await.unwrap(), Some(plain));

    // A damaged packed body is an error that says so, not a snapshot.
    let mut damaged = packing::pack(&json);
    damaged.truncate(damaged.len() / 2);
    store
        .put(format!("{cp}/3").as_str(), &mut damaged.as_slice())
        .await
        .unwrap();
    head.version = 3;
    let refused = bus.fetch_snapshot(&head).await.unwrap_err().to_string();
    assert!(refused.contains("damaged LZ4 frame"), "{refused}");
    cleanup(&prefix).await;
}

#[tokio::test]
async fn watchers_see_the_latest_then_changes_and_removals() {
    let (bus, prefix) = bus().await;
    let (in_region, elsewhere) = (Uuid::now_v7(), Uuid::now_v7());
    bus.publish_snapshot("eu", &snapshot(in_region, 1, "a"))
        .await
        .unwrap();
    bus.publish_snapshot("eu", &snapshot(in_region, 2, "a"))
        .await
        .unwrap();
    bus.publish_snapshot("us", &snapshot(elsewhere, 1, "b"))
        .await
        .unwrap();

    let filter = ConfigFilter {
        region: "eu".into(),
        control_plane: None,
    };
    let mut watch = bus.watch_config(filter).await.unwrap();
    match next(&mut watch).await {
        Some(Ok(ConfigEvent::Updated(head))) => {
            assert_eq!((head.control_plane_id, head.version), (in_region, 2));
        }
        other => panic!("expected the latest head, got {other:?}"),
    }
    bus.remove_control_plane("eu", in_region).await.unwrap();
    match next(&mut watch).await {
        Some(Ok(ConfigEvent::Removed { control_plane_id })) => {
            assert_eq!(control_plane_id, in_region)
        }
        other => panic!("expected a removal, got {other:?}"),
    }
    let dedicated = ConfigFilter {
        region: "ignored".into(),
        control_plane: Some(elsewhere),
    };
    let mut watch = bus.watch_config(dedicated).await.unwrap();
    match next(&mut watch).await {
        Some(Ok(ConfigEvent::Updated(head))) => assert_eq!(head.control_plane_id, elsewhere),
        other => panic!("expected the dedicated control plane's head, got {other:?}"),
    }
    cleanup(&prefix).await;
}

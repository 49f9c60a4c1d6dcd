use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::*;

fn file(path: &str) -> DataFile {
    DataFile {
        path: path.into(),
        kind: FileKind::Spans,
        hour: 0,
        size: 1,
        rows: 1,
        min_time: 0,
        max_time: 0,
        services: vec![],
        schema_version: 1,
        level: 0,
        trace_index: None,
        covers: Vec::new(),
    }
}

fn add(path: &str) -> impl FnMut(&Manifest) -> Result<Manifest, CatalogError> + '_ {
    move |base| {
        let mut next = base.clone();
        next.files.push(file(path));
        Ok(next)
    }
}

async fn racing_writers_both_land(store: Arc<dyn ObjectStore>) {
    let tenant = TenantId::default();
    let a = Catalog::open(Arc::clone(&store), Arc::default()).await.unwrap();
    let b = Catalog::open(Arc::clone(&store), Arc::default()).await.unwrap();
    assert_eq!(a.commit(&tenant, add("one")).await.unwrap().version, 1);
    // b still believes version 0 is the newest: its put of version 1 loses,
    // it reloads and lands as version 2 with both files.
    let merged = b.commit(&tenant, add("two")).await.unwrap();
    assert_eq!(merged.version, 2);
    let paths: Vec<_> = merged.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["one", "two"]);

    let reader = Catalog::open(store, Arc::default()).await.unwrap();
    assert_eq!(reader.tenants(), std::slice::from_ref(&tenant));
    assert_eq!(*reader.manifest(&tenant), *merged);
    a.refresh(&tenant).await.unwrap();
    assert_eq!(a.manifest(&tenant).version, 2);
}

#[tokio::test]
async fn racing_writers_both_land_in_memory() {
    racing_writers_both_land(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn racing_writers_both_land_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    racing_writers_both_land(Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap())).await;
}

/// A writer whose manifest in memory is older than the versions upkeep
/// deleted: its next commit must not re-create a deleted version number
/// (put-if-absent would let it), which no reader would ever find.
#[tokio::test]
async fn a_stale_writer_commits_after_the_newest_version_not_into_a_deleted_one() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let busy = Catalog::open(Arc::clone(&store), Arc::default()).await.unwrap();
    let stale = Catalog::open(Arc::clone(&store), Arc::default()).await.unwrap();
    let tenant = TenantId::default();
    for i in 0..25 {
        busy.commit(&tenant, add(&format!("busy-{i}"))).await.unwrap();
    }
    busy.forget_old_versions(&tenant, Duration::ZERO).await.unwrap();
    assert_eq!(stale.manifest(&tenant).version, 0, "knows nothing of the busy writer's versions");
    let published = stale.commit(&tenant, add("stale")).await.unwrap();
    assert_eq!(published.version, 26);
    assert_eq!(published.files.len(), 26, "applied on top of the newest");
    let reader = Catalog::open(store, Arc::default()).await.unwrap();
    assert!(reader.manifest(&tenant).files.iter().any(|f| f.path == "stale"), "readers find it");
}

#[tokio::test]
async fn removing_a_file_that_is_gone_is_a_conflict() {
    let catalog = Catalog::open(Arc::new(InMemory::new()), Arc::default()).await.unwrap();
    let tenant = TenantId::default();
    catalog.commit(&tenant, add("one")).await.unwrap();
    let removed = catalog.commit(&tenant, |m| m.without(&["one".into()], 5)).await.unwrap();
    assert!(removed.files.is_empty());
    assert_eq!(removed.tombstones, [Tombstone { path: "one".into(), removed_at_ms: 5 }]);
    let again = catalog.commit(&tenant, |m| m.without(&["one".into()], 6)).await;
    assert!(matches!(again, Err(CatalogError::Conflict(_))), "{again:?}");
}

#[tokio::test]
async fn old_versions_are_forgotten_and_the_newest_still_found() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let catalog = Catalog::open(Arc::clone(&store), Arc::default()).await.unwrap();
    let tenant = TenantId::default();
    for _ in 0..25 {
        catalog.commit(&tenant, add("f")).await.unwrap();
    }
    assert_eq!(catalog.forget_old_versions(&tenant, VERSION_GRACE).await.unwrap(), 0, "all too young");
    assert_eq!(catalog.forget_old_versions(&tenant, Duration::ZERO).await.unwrap(), 25 - KEEP_VERSIONS as usize - 1);
    let listed = store.list_with_delimiter(Some(&tenant.catalog_prefix())).await.unwrap();
    assert_eq!(listed.objects.len(), KEEP_VERSIONS as usize + 2, "the newest, ten more, and the hint");
    let reopened = Catalog::open(store, Arc::default()).await.unwrap();
    assert_eq!(reopened.manifest(&tenant).version, 25);
}

/// Commits racing inside one process: a commit that published an older
/// version must not replace a newer one in memory when it records its own
/// late. Before, the flusher's files could vanish from queries until the
/// next commit (the crash test saw thousands of spans "lost" that way).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_in_one_process_all_stay_visible() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let catalog = Arc::new(Catalog::open(store, Arc::default()).await.unwrap());
    let tenant = TenantId::default();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (catalog, tenant) = (Arc::clone(&catalog), tenant.clone());
            tokio::spawn(async move {
                for i in 0..25 {
                    let path = format!("{w}-{i}");
                    catalog
                        .commit(&tenant, |base| {
                            let mut next = base.clone();
                            next.files.push(file(&path));
                            Ok(next)
                        })
                        .await
                        .unwrap();
                    // Every writer sees its own change once its commit returned.
                    assert!(catalog.manifest(&tenant).files.iter().any(|f| f.path == path), "{path} not visible");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    assert_eq!(catalog.manifest(&tenant).files.len(), 8 * 25);
}

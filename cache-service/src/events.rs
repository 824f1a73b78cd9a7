//! The cache's change stream: every committed change is published here, in
//! generation order, for `WatchCache`.
//!
//! A bounded ring keeps recent events so a watcher can start from a past
//! generation; a watcher asking for events the ring no longer holds, or one
//! that lags behind the live channel, is told to resync. It is never fed a
//! stream with a hole in it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use trafego_proto::cache::{CacheEventKind, DnsRecord, WatchCacheResponse};

/// Shared, immutable event.
pub type Event = Arc<WatchCacheResponse>;

struct Ring {
    events: VecDeque<Event>,
    /// Every event of a generation above this one is in `events` (or came later).
    complete_after: u64,
    /// The newest generation published (or the one the hub started at).
    latest: u64,
}

/// Publishes cache events and hands out subscriptions.
pub struct Hub {
    ring: Mutex<Ring>,
    capacity: usize,
    tx: broadcast::Sender<Event>,
}

/// What a new watcher gets: the backlog it asked for (or a resync), then live events.
pub struct Subscription {
    /// Events to send first.
    pub backlog: Vec<Event>,
    /// Live events after the backlog.
    pub live: broadcast::Receiver<Event>,
}

impl Hub {
    /// A hub keeping up to `capacity` recent events, starting at `generation`.
    pub fn new(capacity: usize, generation: u64) -> Self {
        let (tx, _) = broadcast::channel(capacity.clamp(16, 65_536));
        Hub {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                complete_after: generation,
                latest: generation,
            }),
            capacity: capacity.max(1),
            tx,
        }
    }

    /// Publishes the events of one committed change. If they are more than the
    /// ring holds, only the summary (refreshed) event is kept, and watchers
    /// behind it resync.
    pub fn publish(&self, generation: u64, events: Vec<WatchCacheResponse>) {
        if events.len() > self.capacity {
            let summary = events
                .into_iter()
                .rfind(|e| e.kind == CacheEventKind::Refreshed as i32)
                .unwrap_or_else(|| resync(generation));
            return self.publish_gap(generation, summary);
        }
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.latest = ring.latest.max(generation);
        for e in events {
            let e = Arc::new(e);
            ring.events.push_back(e.clone());
            let _ = self.tx.send(e);
        }
        while ring.events.len() > self.capacity {
            if let Some(old) = ring.events.pop_front() {
                ring.complete_after = ring.complete_after.max(old.generation);
            }
        }
    }

    /// Publishes a change too large to stream record by record: only `summary`
    /// is kept, and watchers from before `generation` are told to resync.
    pub fn publish_gap(&self, generation: u64, summary: WatchCacheResponse) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.events.clear();
        ring.complete_after = generation;
        ring.latest = ring.latest.max(generation);
        // Live watchers missed the records of this change too.
        let _ = self.tx.send(Arc::new(resync(generation)));
        if summary.kind != CacheEventKind::Resync as i32 {
            let _ = self.tx.send(Arc::new(summary));
        }
    }

    /// Starts the hub over at `generation`, the database's, when this
    /// replica takes the lead: the events it kept are forgotten (another
    /// replica committed since), so a watcher resuming from an earlier
    /// generation is told to resync, as for any generation the ring no
    /// longer holds; live watchers behind it are told so at once.
    pub fn restart(&self, generation: u64) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.events.clear();
        ring.complete_after = generation;
        if generation > ring.latest {
            let _ = self.tx.send(Arc::new(resync(generation)));
        }
        ring.latest = ring.latest.max(generation);
    }

    /// Subscribes from `from_generation` (0: live events only). The backlog and
    /// the live receiver are taken under one lock, so no event falls between them.
    pub fn subscribe(&self, from_generation: u64) -> Subscription {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let current_generation = ring.latest;
        let live = self.tx.subscribe();
        let backlog = if from_generation == 0 || from_generation >= current_generation {
            Vec::new()
        } else if from_generation < ring.complete_after {
            vec![Arc::new(resync(current_generation))]
        } else {
            ring.events
                .iter()
                .filter(|e| e.generation > from_generation)
                .cloned()
                .collect()
        };
        Subscription { backlog, live }
    }
}

/// The event telling a watcher to re-read the cache.
pub fn resync(generation: u64) -> WatchCacheResponse {
    WatchCacheResponse {
        kind: CacheEventKind::Resync as i32,
        generation,
        ..Default::default()
    }
}

/// An added or changed event.
pub fn record_event(
    kind: CacheEventKind,
    generation: u64,
    record: DnsRecord,
) -> WatchCacheResponse {
    WatchCacheResponse {
        kind: kind as i32,
        generation,
        record_id: record.record_id.clone(),
        zone: record.zone.clone(),
        record: Some(record),
        error: String::new(),
    }
}

/// A removed event of `zone`.
pub fn removed_event(generation: u64, zone: String, record_id: String) -> WatchCacheResponse {
    WatchCacheResponse {
        kind: CacheEventKind::Removed as i32,
        generation,
        record_id,
        zone,
        ..Default::default()
    }
}

/// A refreshed event of `zone` (`error` empty on success).
pub fn refreshed_event(generation: u64, zone: String, error: String) -> WatchCacheResponse {
    WatchCacheResponse {
        kind: CacheEventKind::Refreshed as i32,
        generation,
        error,
        zone,
        ..Default::default()
    }
}

/// Whether a watcher of `zone` (empty: every zone) is sent `e`: events of
/// its zone, and those of no zone (RESYNC).
pub fn for_zone(e: &WatchCacheResponse, zone: &str) -> bool {
    zone.is_empty() || e.zone.is_empty() || e.zone == zone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_and_resync() {
        let hub = Hub::new(4, 10);
        hub.publish(
            11,
            vec![
                removed_event(11, String::new(), "a".into()),
                refreshed_event(11, String::new(), String::new()),
            ],
        );
        hub.publish(12, vec![refreshed_event(12, String::new(), String::new())]);
        let s = hub.subscribe(11);
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].generation, 12);
        let s = hub.subscribe(10);
        assert_eq!(s.backlog.len(), 3);
        // Overflow the ring: generation 10 is no longer complete.
        hub.publish(
            13,
            (0..3)
                .map(|i| removed_event(13, String::new(), i.to_string()))
                .collect(),
        );
        let s = hub.subscribe(10);
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].kind, CacheEventKind::Resync as i32);
        // A change bigger than the ring keeps only its summary.
        let mut big: Vec<_> = (0..10)
            .map(|i| removed_event(14, String::new(), i.to_string()))
            .collect();
        big.push(refreshed_event(14, String::new(), String::new()));
        hub.publish(14, big);
        let s = hub.subscribe(13);
        assert_eq!(s.backlog[0].kind, CacheEventKind::Resync as i32);
        let s = hub.subscribe(0);
        assert!(s.backlog.is_empty());
    }

    /// A new leader's hub starts at the database's generation: a watcher
    /// resuming from before it resyncs (the events in between were another
    /// replica's), a live one is told at once, and one at it gets nothing
    /// old.
    #[test]
    fn a_restarted_hub_resyncs_watchers_from_before_it() {
        let hub = Hub::new(8, 5);
        hub.publish(6, vec![refreshed_event(6, String::new(), String::new())]);
        let mut live = hub.subscribe(0).live;
        hub.restart(9);
        let e = live.try_recv().unwrap();
        assert_eq!((e.kind, e.generation), (CacheEventKind::Resync as i32, 9));
        let s = hub.subscribe(6);
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].kind, CacheEventKind::Resync as i32);
        assert!(hub.subscribe(9).backlog.is_empty());
        hub.publish(10, vec![refreshed_event(10, String::new(), String::new())]);
        let s = hub.subscribe(9);
        assert_eq!(s.backlog.len(), 1);
        assert_eq!(s.backlog[0].generation, 10);
    }
}

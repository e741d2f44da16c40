//! Keeping our lease: the renewer thread.
//!
//! The key is bound to an etcd lease; the renewer sends it one keepalive when `margin` of its
//! TTL is left (flanneld renews at the same point, `--subnet-lease-renew-margin`, 1 h of 24 h).
//! A failed renewal is retried with backoff. When etcd has no such lease any more (it expired
//! while etcd was out of reach, or etcd lost its data), or the watcher saw our key change, the
//! renewer checks the key: gone, it is created again (same subnet, same value, a new etcd
//! lease, created only if absent); ours, it is left alone or bound to our lease; taken by
//! another node, [`Update::LeaseLost`] says so and the renewer stops (flanneld exits then).
//!
//! Stopping never revokes the lease: a restarted node finds it by its `PublicIP`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use super::etcd::{Client, Cond, EtcdError};
use super::Update;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(crate) struct Renewer {
    pub client: Arc<Client>,
    pub key: String,
    pub value: Vec<u8>,
    /// The etcd lease our key is bound to; 0 for a reservation (nothing to renew).
    pub lease_id: i64,
    /// The TTL asked for and the one granted last, in seconds.
    pub ttl: i64,
    pub granted: i64,
    pub margin: Duration,
    pub updates: Sender<Update>,
    pub stop: Receiver<()>,
    /// A message: the watcher saw our key written or deleted.
    pub own_touched: Receiver<()>,
}

/// What a check of our key found.
enum Check {
    Fine,
    Lost(String),
}

impl Renewer {
    /// When to renew a lease of `ttl` seconds granted now.
    fn next_renewal(&self, ttl: i64) -> Instant {
        let ttl = Duration::from_secs(ttl.max(1) as u64);
        let margin = self.margin.min(ttl / 2);
        Instant::now() + (ttl - margin)
    }

    /// Looks at our key and makes it ours again if it is gone or unbound.
    fn check(&mut self) -> Result<Check, EtcdError> {
        loop {
            let (kv, _) = self.client.get(&self.key)?;
            let cond = match &kv {
                Some(kv) if kv.value != self.value => {
                    let now = String::from_utf8_lossy(&kv.value).into_owned();
                    return Ok(Check::Lost(now));
                }
                Some(kv) if kv.lease == self.lease_id => return Ok(Check::Fine),
                Some(kv) => Cond::ModRevision(kv.mod_revision),
                None => Cond::Absent,
            };
            let (id, granted) = self.client.grant(self.ttl)?;
            let done = self.client.put_if(&self.key, &self.value, id, cond);
            if !matches!(done, Ok(true)) {
                let _ = self.client.revoke(id);
            }
            if done? {
                let was = if kv.is_some() { "unbound" } else { "gone" };
                tracing::warn!(key = %self.key, was, "our etcd lease was lost: written again");
                self.lease_id = id;
                self.granted = granted;
                return Ok(Check::Fine);
            }
            // Changed meanwhile: look again (the put raced another writer; etcd orders them).
        }
    }

    /// One renewal; whether a check is needed.
    fn renew(&mut self) -> Result<bool, EtcdError> {
        let ttl = self.client.keepalive(self.lease_id)?;
        if ttl <= 0 {
            tracing::warn!(key = %self.key, lease = self.lease_id, "etcd no longer has our lease");
            return Ok(true);
        }
        self.granted = ttl;
        tracing::debug!(key = %self.key, ttl, "etcd lease renewed");
        Ok(false)
    }
}

/// The renewer thread.
pub(crate) fn run(mut r: Renewer) {
    let mut renew_at = (r.lease_id != 0).then(|| r.next_renewal(r.granted));
    let mut check = false;
    let mut backoff = BACKOFF_MIN;
    loop {
        if !check {
            let wait = renew_at.map_or(Duration::from_secs(3600), |at| {
                at.saturating_duration_since(Instant::now())
            });
            select! {
                recv(r.stop) -> _ => return,
                recv(r.own_touched) -> msg => {
                    if msg.is_err() {
                        return;
                    }
                    check = true;
                }
                default(wait) => {}
            }
        }
        let due = renew_at.is_some_and(|at| at <= Instant::now());
        let result = if check {
            r.check().map(Some)
        } else if due {
            r.renew().map(|needs_check| {
                check = needs_check;
                None
            })
        } else {
            continue;
        };
        match result {
            Ok(Some(Check::Lost(now))) => {
                tracing::error!(key = %r.key, %now, "our subnet was taken by another node");
                let _ = r.updates.send(Update::LeaseLost {
                    key: r.key.clone(),
                    reason: format!("the key holds another node's lease: {now}"),
                });
                return;
            }
            Ok(Some(Check::Fine)) => {
                check = false;
                renew_at = (r.lease_id != 0).then(|| r.next_renewal(r.granted));
                backoff = BACKOFF_MIN;
            }
            Ok(None) => {
                if !check {
                    renew_at = Some(r.next_renewal(r.granted));
                }
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                if matches!(
                    r.stop.try_recv(),
                    Err(crossbeam_channel::TryRecvError::Disconnected)
                ) {
                    return;
                }
                tracing::warn!(key = %r.key, error = %e, retry_in = ?backoff,
                    "cannot renew our etcd lease");
                if r.stop
                    .recv_timeout(backoff)
                    .is_err_and(|e| e.is_disconnected())
                {
                    return;
                }
                if !check {
                    renew_at = Some(Instant::now());
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

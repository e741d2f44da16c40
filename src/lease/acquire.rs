//! Taking a subnet, with flanneld's semantics (its `LocalManager.tryAcquireLease`, etcd v3):
//!
//! 1. a lease that already carries our `PublicIP` is ours from an earlier run: reuse it (its
//!    value rewritten with our attributes, bound to a fresh etcd lease), or delete it if it no
//!    longer fits the network configuration;
//! 2. else the subnet of the previous run's subnet file, if it fits and nobody holds it;
//! 3. else a random free subnet among the first 100 free ones from `SubnetMin` up.
//!
//! A new lease is created in one transaction that fails if the key exists; a lost race (or a
//! lease that changed under us while we reused it) starts over from a fresh list, ten times at
//! most, as flanneld does.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::etcd::{Client, Cond, EtcdError, Kv};
use super::format::{parse_subnet_key, subnet_key, LeaseAttrs, NetworkConfig};
use super::Error;

/// flanneld's `raceRetries`.
const ATTEMPTS: usize = 10;
/// flanneld picks at random among this many free subnets, from the lowest up.
const CANDIDATES: usize = 100;

/// How a lease was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// It carried our `PublicIP` already.
    SamePublicIp,
    /// The subnet of the previous run's subnet file.
    SubnetFile,
    /// A free subnet picked at random.
    Allocated,
}

/// A subnet taken in etcd.
#[derive(Debug)]
pub(crate) struct Acquired {
    pub subnet: Ipv4Net,
    pub ipv6_subnet: Option<Ipv6Net>,
    pub key: String,
    /// The etcd lease the key is bound to (0: a reservation without a TTL, kept as such).
    pub lease_id: i64,
    /// Its TTL as granted, in seconds (0 for a reservation).
    pub ttl: i64,
    pub origin: Origin,
}

/// A key under `<prefix>/subnets/` that parses as a subnet key.
struct Held {
    v4: Ipv4Net,
    v6: Option<Ipv6Net>,
    attrs: Option<LeaseAttrs>,
    kv: Kv,
}

/// Takes a subnet for a node publishing `attrs`, under `subnets` (`<prefix>/subnets/`).
///
/// # Errors
/// An etcd error (the caller retries [`EtcdError::Unreachable`] until its deadline), no free
/// subnet left, or [`ATTEMPTS`] lost races in a row.
pub(crate) fn acquire(
    client: &Client,
    subnets: &str,
    network: &NetworkConfig,
    attrs: &LeaseAttrs,
    previous: Option<(Ipv4Net, Option<Ipv6Net>)>,
    ttl: i64,
) -> Result<Acquired, Error> {
    let value = attrs.to_json();
    for attempt in 1..=ATTEMPTS {
        let (kvs, _) = client.list(subnets)?;
        let held: Vec<Held> = kvs
            .into_iter()
            .filter_map(|kv| {
                let (v4, v6) = parse_subnet_key(kv.key.strip_prefix(subnets)?).ok()?;
                let attrs = LeaseAttrs::parse(&kv.value).ok();
                Some(Held { v4, v6, attrs, kv })
            })
            .collect();

        if let Some(h) = held
            .iter()
            .find(|h| h.attrs.as_ref().map(|a| a.public_ip) == Some(attrs.public_ip))
        {
            let key = &h.kv.key;
            if !network.fits(h.v4, h.v6) {
                tracing::info!(%key, public_ip = %attrs.public_ip,
                    "the lease of our PublicIP does not fit the network config: deleting it");
                client.delete_if(key, h.kv.mod_revision)?;
                continue;
            }
            tracing::info!(%key, public_ip = %attrs.public_ip, "found the lease of our PublicIP: reusing it");
            // A reservation (a key without an etcd lease) stays one, as flannel's are.
            let (lease_id, granted) = if h.kv.lease == 0 {
                (0, 0)
            } else {
                client.grant(ttl)?
            };
            let cond = Cond::ModRevision(h.kv.mod_revision);
            if put(client, key, &value, lease_id, cond)? {
                return Ok(Acquired {
                    subnet: h.v4,
                    ipv6_subnet: h.v6,
                    key: key.clone(),
                    lease_id,
                    ttl: granted,
                    origin: Origin::SamePublicIp,
                });
            }
            tracing::debug!(%key, attempt, "our lease changed while we reused it: again");
            continue;
        }

        let mut chosen = None;
        if let Some((p4, p6)) = previous {
            if held.iter().any(|h| h.v4 == p4) {
                tracing::info!(subnet = %p4, "the previous run's subnet is held by another node");
            } else if network.fits(p4, p6) {
                tracing::info!(subnet = %p4, "asking for the previous run's subnet again");
                chosen = Some((p4, p6, Origin::SubnetFile));
            } else {
                tracing::warn!(subnet = %p4,
                    "the previous run's subnet does not fit the network config: ignored");
            }
        }
        let (v4, v6, origin) = match chosen {
            Some(c) => c,
            None => {
                let taken4: Vec<Ipv4Net> = held.iter().map(|h| h.v4).collect();
                let taken6: Vec<Ipv6Net> = held.iter().filter_map(|h| h.v6).collect();
                let (v4, v6) = allocate(network, &taken4, &taken6, random())?;
                (v4, v6, Origin::Allocated)
            }
        };
        let key = format!("{subnets}{}", subnet_key(v4, v6));
        let (lease_id, granted) = client.grant(ttl)?;
        if put(client, &key, &value, lease_id, Cond::Absent)? {
            return Ok(Acquired {
                subnet: v4,
                ipv6_subnet: v6,
                key,
                lease_id,
                ttl: granted,
                origin,
            });
        }
        tracing::debug!(%key, attempt, "subnet taken by another node meanwhile: again");
    }
    Err(Error::Conflicts(ATTEMPTS))
}

/// [`Client::put_if`]; the granted etcd lease is revoked again if the put did not happen.
fn put(client: &Client, key: &str, value: &str, lease: i64, cond: Cond) -> Result<bool, EtcdError> {
    let result = client.put_if(key, value.as_bytes(), lease, cond);
    if !matches!(result, Ok(true)) && lease != 0 {
        if let Err(e) = client.revoke(lease) {
            tracing::debug!(error = %e, "could not revoke an unused etcd lease (it expires)");
        }
    }
    result
}

/// A random number for the pick among free subnets.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// flanneld's `allocateSubnet`: the first [`CANDIDATES`] subnets from `SubnetMin` to
/// `SubnetMax` that overlap no held subnet, and the one `pick` selects among them (for each
/// family in dual stack).
pub(crate) fn allocate(
    network: &NetworkConfig,
    taken4: &[Ipv4Net],
    taken6: &[Ipv6Net],
    pick: u64,
) -> Result<(Ipv4Net, Option<Ipv6Net>), Error> {
    let len = network.subnet_len;
    let step = 1u64 << (32 - len);
    let mut free4 = Vec::new();
    let mut ip = u64::from(u32::from(network.subnet_min));
    while ip <= u64::from(u32::from(network.subnet_max)) && free4.len() < CANDIDATES {
        let sn = Ipv4Net::new(Ipv4Addr::from(ip as u32), len).expect("length checked at parse");
        if !taken4.iter().any(|t| t.contains(&sn) || sn.contains(t)) {
            free4.push(sn);
        }
        ip += step;
    }
    let out = || Error::OutOfSubnets {
        range: match &network.ipv6 {
            None => format!("{}..={}", network.subnet_min, network.subnet_max),
            Some(v6) => format!(
                "{}..={} and {}..={}",
                network.subnet_min, network.subnet_max, v6.subnet_min, v6.subnet_max
            ),
        },
    };
    if free4.is_empty() {
        return Err(out());
    }
    let v4 = free4[(pick % free4.len() as u64) as usize];
    let Some(v6net) = &network.ipv6 else {
        return Ok((v4, None));
    };
    let len = v6net.subnet_len;
    let step = 1u128 << (128 - len);
    let mut free6 = Vec::new();
    let mut ip = u128::from(v6net.subnet_min);
    while ip <= u128::from(v6net.subnet_max) && free6.len() < CANDIDATES {
        let sn = Ipv6Net::new(Ipv6Addr::from(ip), len).expect("length checked at parse");
        if !taken6.iter().any(|t| t.contains(&sn) || sn.contains(t)) {
            free6.push(sn);
        }
        match ip.checked_add(step) {
            Some(next) => ip = next,
            None => break,
        }
    }
    if free6.is_empty() {
        return Err(out());
    }
    let v6 = free6[((pick >> 17) % free6.len() as u64) as usize];
    Ok((v4, Some(v6)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(json: &str) -> NetworkConfig {
        NetworkConfig::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn allocation_skips_taken_and_stays_in_range() {
        let n = network(
            r#"{"Network": "10.0.0.0/16", "SubnetMin": "10.0.5.0", "SubnetMax": "10.0.7.0"}"#,
        );
        let taken = [
            "10.0.5.0/24".parse().unwrap(),
            "10.0.6.128/25".parse().unwrap(),
        ];
        for pick in 0..10 {
            let (v4, v6) = allocate(&n, &taken, &[], pick).unwrap();
            assert_eq!(v4, "10.0.7.0/24".parse::<Ipv4Net>().unwrap());
            assert_eq!(v6, None);
        }
        let all = ["10.0.0.0/16".parse().unwrap()];
        let err = allocate(&n, &all, &[], 0).unwrap_err().to_string();
        assert!(err.contains("10.0.5.0..=10.0.7.0"), "{err}");
    }

    #[test]
    fn allocation_picks_among_the_first_hundred() {
        let n = network(r#"{"Network": "10.0.0.0/8"}"#);
        let picks: std::collections::BTreeSet<_> = (0..1000)
            .map(|p| allocate(&n, &[], &[], p).unwrap().0)
            .collect();
        assert_eq!(picks.len(), CANDIDATES);
        assert_eq!(picks.first(), Some(&"10.0.1.0/24".parse().unwrap()));
        assert_eq!(picks.last(), Some(&"10.0.100.0/24".parse().unwrap()));
    }

    #[test]
    fn allocation_dual_stack() {
        let n = network(
            r#"{"Network": "10.0.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/62"}"#,
        );
        // /62 gives /64 subnets: min fd00:0:0:1::, max fd00:0:0:3::.
        let taken6 = ["fd00:0:0:1::/64".parse().unwrap()];
        let (_, v6) = allocate(&n, &[], &taken6, 3).unwrap();
        assert_eq!(v6, Some("fd00:0:0:2::/64".parse().unwrap()));
        let taken6 = ["fd00::/62".parse().unwrap()];
        assert!(allocate(&n, &[], &taken6, 3).is_err());
    }
}

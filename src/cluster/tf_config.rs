//! A cluster named by `TF_CONFIG`, TensorFlow's JSON cluster spec:
//!
//! ```json
//! {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
//!  "task": {"type": "worker", "index": 0}}
//! ```
//!
//! The workers are the chief (if any) then the workers, in order (as
//! `MultiWorkerMirroredStrategy` numbers them); other task types (`ps`, `evaluator`) take no
//! part. Before the first step every worker meets the chief at the chief's address: it sends
//! its replica count and whether it can take NCCL; once all have come, the chief answers each
//! with every worker's count and the NCCL id it made (or the reason there is none). This
//! rendezvous only bootstraps NCCL, as NCCL's own examples do over MPI; the gradients then go
//! over NCCL. Its waits are bounded (`KERASC_RENDEZVOUS_TIMEOUT` seconds, 300 by default).

use super::plan::{Offer, Plan};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// This process's place in the cluster `TF_CONFIG` names.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TfConfig {
    pub(super) rank: usize,
    pub(super) size: usize,
    /// Workers before this one on the same host.
    pub(super) local_rank: usize,
    /// Where the chief listens for the rendezvous (`host:port`).
    chief: String,
    timeout: Duration,
}

const MAGIC: &[u8; 8] = b"KRSCRV01";
/// The longest reason a worker may send.
const MAX_TEXT: u32 = 4096;

impl TfConfig {
    /// Parses `TF_CONFIG`'s JSON.
    pub(super) fn parse(text: &str) -> Result<TfConfig, String> {
        let j: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let tasks = |kind: &str| -> Result<Vec<String>, String> {
            match j.pointer(&format!("/cluster/{kind}")) {
                None => Ok(Vec::new()),
                Some(serde_json::Value::Array(a)) => a
                    .iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("cluster.{kind} holds a non-string")))
                    .collect(),
                Some(_) => Err(format!("cluster.{kind} is not a list of addresses")),
            }
        };
        let (chief, workers) = (tasks("chief")?, tasks("worker")?);
        if chief.len() > 1 {
            return Err(format!("a cluster has one chief, this one names {}", chief.len()));
        }
        let all: Vec<String> = chief.iter().chain(&workers).cloned().collect();
        if all.is_empty() {
            return Err("cluster names no chief and no worker".into());
        }
        let kind = j.pointer("/task/type").and_then(|v| v.as_str()).ok_or("no task.type")?;
        let index = j.pointer("/task/index").and_then(serde_json::Value::as_u64).ok_or("no task.index")? as usize;
        let rank = match kind {
            "chief" if index < chief.len() => 0,
            "worker" if index < workers.len() => chief.len() + index,
            "chief" | "worker" => return Err(format!("task {kind} {index} is not in the cluster")),
            other => {
                return Err(format!(
                    "a '{other}' task has no part in kerasc's multi-worker training (its workers are the chief and the workers)"
                ))
            }
        };
        let host = |a: &str| a.rsplit_once(':').map_or(a, |(h, _)| h).to_string();
        for a in &all {
            let port = a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
            if port.is_none() {
                return Err(format!("address '{a}' is not host:port"));
            }
        }
        let me = host(&all[rank]);
        let local_rank = all[..rank].iter().filter(|a| host(a) == me).count();
        Ok(TfConfig {
            rank,
            size: all.len(),
            local_rank,
            chief: all[0].clone(),
            timeout: super::plan::seconds("KERASC_RENDEZVOUS_TIMEOUT", 300),
        })
    }

    /// Meets the other workers at the chief: every worker's offer in, the plan out (the chief
    /// makes the NCCL id, with `make_id`, when every worker can take NCCL).
    pub(super) fn rendezvous(
        &self,
        offer: &Offer,
        make_id: &dyn Fn() -> Result<[u8; 128], String>,
    ) -> Result<Plan, String> {
        let deadline = Instant::now() + self.timeout;
        if self.rank == 0 {
            self.chief(offer, make_id, deadline)
        } else {
            self.join_chief(offer, deadline)
        }
    }

    fn chief(
        &self,
        offer: &Offer,
        make_id: &dyn Fn() -> Result<[u8; 128], String>,
        deadline: Instant,
    ) -> Result<Plan, String> {
        let port = self.chief.rsplit_once(':').map_or("", |(_, p)| p);
        let listener = TcpListener::bind(format!("0.0.0.0:{port}"))
            .map_err(|e| format!("the chief cannot listen on port {port} ({}): {e}", self.chief))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        // Each other worker's connection and offer, by rank.
        let mut joined: Vec<Option<(TcpStream, Offer)>> = (0..self.size).map(|_| None).collect();
        let mut waiting = self.size - 1;
        let fail = |joined: &mut Vec<Option<(TcpStream, Offer)>>, why: String| {
            for (s, _) in joined.iter_mut().flatten() {
                let _ = send_error(s, &why);
            }
            Err(why)
        };
        while waiting > 0 {
            let (mut s, from) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> =
                            (1..self.size).filter(|&r| joined[r].is_none()).map(|r| r.to_string()).collect();
                        let why = format!(
                            "worker(s) {} did not reach the chief within {} s",
                            missing.join(", "),
                            self.timeout.as_secs()
                        );
                        return fail(&mut joined, why);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                Err(e) => return fail(&mut joined, format!("accepting a worker: {e}")),
            };
            let read = s
                .set_nonblocking(false)
                .and_then(|_| s.set_read_timeout(Some(remaining(deadline))))
                .map_err(|e| e.to_string())
                .and_then(|_| read_offer(&mut s));
            let (rank, size, theirs) = match read {
                Ok(r) => r,
                // Not a worker (a port scan, a stray client): not counted.
                Err(_) => continue,
            };
            let bad = if size != self.size {
                Some(format!("worker {rank} ({from}) counts {size} workers, the chief {}", self.size))
            } else if rank == 0 || rank >= self.size {
                Some(format!("a worker ({from}) claims rank {rank} of {}", self.size))
            } else if joined[rank].is_some() {
                Some(format!("two workers claim rank {rank}"))
            } else {
                None
            };
            if let Some(why) = bad {
                let _ = send_error(&mut s, &why);
                return fail(&mut joined, why);
            }
            joined[rank] = Some((s, theirs));
            waiting -= 1;
        }
        let mut counts = vec![offer.local];
        let mut nccl = offer.nccl.clone().map_err(|why| format!("worker 0: {why}"));
        for (k, (_, o)) in joined.iter().enumerate().skip(1).filter_map(|(k, j)| j.as_ref().map(|j| (k, j))) {
            counts.push(o.local);
            if let (Ok(()), Err(why)) = (&nccl, &o.nccl) {
                nccl = Err(format!("worker {k}: {why}"));
            }
        }
        let nccl = nccl.and_then(|()| make_id().map_err(|why| format!("the chief could not make an NCCL id: {why}")));
        let plan = Plan { counts, nccl };
        let msg = encode_plan(&plan);
        for (s, _) in joined.iter_mut().flatten() {
            s.write_all(&msg).map_err(|e| format!("answering a worker: {e}"))?;
        }
        Ok(plan)
    }

    fn join_chief(&self, offer: &Offer, deadline: Instant) -> Result<Plan, String> {
        let mut s = loop {
            let addrs: Vec<std::net::SocketAddr> =
                self.chief.to_socket_addrs().map_err(|e| format!("the chief's address {}: {e}", self.chief))?.collect();
            let tried = addrs.iter().find_map(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).ok());
            if let Some(s) = tried {
                break s;
            }
            if Instant::now() > deadline {
                return Err(format!("the chief ({}) did not answer within {} s", self.chief, self.timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut hello = MAGIC.to_vec();
        for v in [self.rank as u32, self.size as u32, offer.local as u32] {
            hello.extend_from_slice(&v.to_le_bytes());
        }
        let why = offer.nccl.as_ref().err().map(String::as_bytes).unwrap_or_default();
        let why = &why[..why.len().min(MAX_TEXT as usize)];
        hello.push(u8::from(offer.nccl.is_ok()));
        hello.extend_from_slice(&(why.len() as u32).to_le_bytes());
        hello.extend_from_slice(why);
        s.write_all(&hello).map_err(|e| format!("writing to the chief: {e}"))?;
        s.set_read_timeout(Some(remaining(deadline))).map_err(|e| e.to_string())?;
        let lost = |e: std::io::Error| {
            format!("the chief did not answer within {} s ({e}): a worker is missing or died", self.timeout.as_secs())
        };
        match byte(&mut s).map_err(lost)? {
            0 => decode_plan(&mut s, self.size).map_err(lost),
            _ => Err(format!("the chief stopped the run: {}", text(&mut s).map_err(lost)?)),
        }
    }
}

/// The time left until `deadline` (at least a moment: a zero timeout means none).
fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10))
}

fn byte(s: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}

fn word(s: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// A length, then that many bytes of UTF-8 (at most [`MAX_TEXT`]).
fn text(s: &mut impl Read) -> std::io::Result<String> {
    let n = word(s)?;
    if n > MAX_TEXT {
        return Err(std::io::Error::other(format!("a message of {n} bytes")));
    }
    let mut b = vec![0u8; n as usize];
    s.read_exact(&mut b)?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

/// A worker's hello: its rank, the size it counts, its offer.
fn read_offer(s: &mut impl Read) -> Result<(usize, usize, Offer), String> {
    let mut magic = [0u8; 8];
    s.read_exact(&mut magic).map_err(|e| e.to_string())?;
    if &magic != MAGIC {
        return Err("not a kerasc worker".into());
    }
    let (rank, size, local) = (word(s), word(s), word(s));
    let (rank, size, local) = (
        rank.map_err(|e| e.to_string())? as usize,
        size.map_err(|e| e.to_string())? as usize,
        local.map_err(|e| e.to_string())? as usize,
    );
    let ok = byte(s).map_err(|e| e.to_string())? != 0;
    let why = text(s).map_err(|e| e.to_string())?;
    Ok((rank, size, Offer { local, nccl: if ok { Ok(()) } else { Err(why) } }))
}

fn send_error(s: &mut TcpStream, why: &str) -> std::io::Result<()> {
    let b = &why.as_bytes()[..why.len().min(MAX_TEXT as usize)];
    let mut msg = vec![1u8];
    msg.extend_from_slice(&(b.len() as u32).to_le_bytes());
    msg.extend_from_slice(b);
    s.write_all(&msg)
}

/// The chief's answer: 0, every worker's replica count, then 0 and the NCCL id or 1 and why not.
fn encode_plan(plan: &Plan) -> Vec<u8> {
    let mut msg = vec![0u8];
    for &c in &plan.counts {
        msg.extend_from_slice(&(c as u32).to_le_bytes());
    }
    match &plan.nccl {
        Ok(id) => {
            msg.push(0);
            msg.extend_from_slice(id);
        }
        Err(why) => {
            let b = &why.as_bytes()[..why.len().min(MAX_TEXT as usize)];
            msg.push(1);
            msg.extend_from_slice(&(b.len() as u32).to_le_bytes());
            msg.extend_from_slice(b);
        }
    }
    msg
}

fn decode_plan(s: &mut impl Read, size: usize) -> std::io::Result<Plan> {
    let counts = (0..size).map(|_| word(s).map(|c| c as usize)).collect::<std::io::Result<Vec<_>>>()?;
    let nccl = match byte(s)? {
        0 => {
            let mut id = [0u8; 128];
            s.read_exact(&mut id)?;
            Ok(id)
        }
        _ => Err(text(s)?),
    };
    Ok(Plan { counts, nccl })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rank: usize, size: usize, port: u16, timeout: u64) -> TfConfig {
        TfConfig {
            rank,
            size,
            local_rank: rank,
            chief: format!("127.0.0.1:{port}"),
            timeout: Duration::from_secs(timeout),
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn tf_config_numbers_the_chief_then_the_workers() {
        let spec = |kind: &str, index: usize| {
            format!(
                r#"{{"cluster": {{"chief": ["a:1"], "worker": ["b:2", "a:3", "b:4"], "ps": ["c:5"]}}, "task": {{"type": "{kind}", "index": {index}}}}}"#
            )
        };
        let c = TfConfig::parse(&spec("worker", 2)).unwrap();
        assert_eq!((c.rank, c.size, c.local_rank, c.chief.as_str()), (3, 4, 1, "a:1"));
        let c = TfConfig::parse(&spec("chief", 0)).unwrap();
        assert_eq!((c.rank, c.local_rank), (0, 0));
        assert_eq!(TfConfig::parse(&spec("worker", 1)).unwrap().local_rank, 1);
        for (bad, says) in [
            (spec("worker", 3), "not in the cluster"),
            (spec("ps", 0), "no part"),
            (r#"{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker", "index": 0}}"#.into(), "host:port"),
            (r#"{"cluster": {}, "task": {"type": "worker", "index": 0}}"#.into(), "no chief and no worker"),
            (r#"{"cluster": {"worker": ["a:1"]}}"#.into(), "task.type"),
            ("{".into(), "not JSON"),
        ] {
            let e = TfConfig::parse(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_chief_hands_every_worker_the_same_plan() {
        let port = free_port();
        let id = [7u8; 128];
        let handles: Vec<_> = (0..3)
            .map(|r| {
                std::thread::spawn(move || {
                    let offer = Offer { local: r + 1, nccl: Ok(()) };
                    config(r, 3, port, 20).rendezvous(&offer, &|| Ok(id))
                })
            })
            .collect();
        for h in handles {
            let plan = h.join().unwrap().unwrap();
            assert_eq!(plan.counts, vec![1, 2, 3]);
            assert_eq!(plan.nccl.unwrap(), id);
        }
    }

    #[test]
    fn a_worker_without_nccl_is_named_to_all_and_a_missing_one_ends_the_wait() {
        let port = free_port();
        let handles: Vec<_> = (0..2)
            .map(|r| {
                std::thread::spawn(move || {
                    let nccl = if r == 1 { Err("no GPU here".to_string()) } else { Ok(()) };
                    config(r, 2, port, 20).rendezvous(&Offer { local: 1, nccl }, &|| Ok([0; 128]))
                })
            })
            .collect();
        for h in handles {
            let plan = h.join().unwrap().unwrap();
            assert!(plan.nccl.unwrap_err().contains("worker 1: no GPU here"));
        }
        // A chief waiting for a worker that never comes, and a worker whose chief never comes:
        // both stop within their bound.
        let start = Instant::now();
        let e = config(0, 2, free_port(), 1).rendezvous(&Offer { local: 1, nccl: Ok(()) }, &|| Ok([0; 128]));
        assert!(e.err().unwrap().contains("worker(s) 1 did not reach the chief"));
        let e = config(1, 2, free_port(), 1).rendezvous(&Offer { local: 1, nccl: Ok(()) }, &|| Ok([0; 128]));
        assert!(e.err().unwrap().contains("did not answer"));
        assert!(start.elapsed() < Duration::from_secs(10));
        // Two workers claiming one rank: the chief stops the run and says why.
        let port = free_port();
        let handles: Vec<_> = [0, 1, 1]
            .into_iter()
            .map(|r| {
                std::thread::spawn(move || {
                    config(r, 3, port, 5).rendezvous(&Offer { local: 1, nccl: Ok(()) }, &|| Ok([0; 128]))
                })
            })
            .collect();
        let errors: Vec<String> = handles.into_iter().filter_map(|h| h.join().unwrap().err()).collect();
        assert!(errors.iter().any(|e| e.contains("two workers claim rank 1")), "{errors:?}");
    }
}

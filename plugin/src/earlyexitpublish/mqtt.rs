//! The MQTT output of `earlyexitpublish`: records go to a broker through `rumqttc`, from a
//! thread of their own, so that a slow or absent broker never holds up the stream.
//!
//! Every record is accounted for: it is published (the broker acknowledged it, or for QoS 0
//! it was written to the socket), or it is dropped (the buffer was full, or it was still
//! unacknowledged when the element stopped). While the broker is away, records wait in a
//! queue of `max-buffered`, and the session is resumed by publishing again every record the
//! broker had not acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS, RecvTimeoutError};

/// Where the broker is: `host`, `host:port`, `mqtt://host[:port]` or `tcp://host[:port]`;
/// an IPv6 host goes in brackets, `[::1]:1883`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
}

/// MQTT's registered port.
const DEFAULT_PORT: u16 = 1883;

impl std::str::FromStr for Broker {
    type Err = String;

    fn from_str(text: &str) -> Result<Broker, String> {
        let rest = match text.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some((scheme, _)) => {
                return Err(format!(
                    "'{text}': scheme '{scheme}' is not supported (use mqtt:// or tcp://)"
                ));
            }
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("'{text}': an IPv6 host needs its closing ']'"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(format!("'{text}' names no host"));
        }
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| format!("'{text}': port '{port}' is not a number from 0 to 65535"))?,
            None => DEFAULT_PORT,
        };
        Ok(Broker {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What the publisher is asked to do.
#[derive(Debug, Clone)]
pub struct MqttSettings {
    pub broker: Broker,
    pub topic: String,
    pub client_id: String,
    pub qos: QoS,
    /// Records that may wait for the broker; more are dropped.
    pub max_buffered: usize,
}

/// What the publisher tells the element, to post on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Connected,
    /// The connection failed or was lost, with the client's reason.
    Lost(String),
}

/// Counts shared between the element and the publishing thread.
#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    dropped: AtomicU64,
    /// Accepted and neither published nor dropped yet.
    outstanding: AtomicU64,
}

impl Counters {
    fn published(&self, records: u64) {
        self.published.fetch_add(records, Ordering::Relaxed);
        self.outstanding.fetch_sub(records, Ordering::Relaxed);
    }

    fn lost(&self, records: u64) {
        self.dropped.fetch_add(records, Ordering::Relaxed);
        self.outstanding.fetch_sub(records, Ordering::Relaxed);
    }
}

/// Records the broker has not acknowledged at once, besides those queued.
const IN_FLIGHT: u16 = 100;
/// How long the thread waits for the network before it looks at its queue again.
const TICK: Duration = Duration::from_millis(20);
/// The pause between connection attempts: rumqttc tries again on every poll and has no
/// backoff of its own, so without it a missing broker would be asked hundreds of times a second.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// A running MQTT output.
pub struct Publisher {
    queue: Sender<Record>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    /// Numbers records in the order they were accepted, to resend them in that order.
    next: u64,
}

/// One record on its way.
#[derive(Debug, Clone)]
struct Record {
    sequence: u64,
    payload: Vec<u8>,
}

impl Publisher {
    /// Starts the publishing thread, which connects (and reconnects) to the broker on its own;
    /// `on_status` hears of every connection and loss.
    pub fn start(
        settings: MqttSettings,
        on_status: impl Fn(Status) + Send + 'static,
    ) -> std::io::Result<Publisher> {
        let (queue, records) = crossbeam_channel::bounded(settings.max_buffered.max(1));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut options = MqttOptions::new(
            settings.client_id.clone(),
            settings.broker.host.clone(),
            settings.broker.port,
        );
        // A clean session every time: the broker then keeps nothing of an earlier connection,
        // and the records it never acknowledged are exactly the ones to publish again.
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(10))
            .set_inflight(IN_FLIGHT);
        let (client, connection) = Client::new(options, usize::from(IN_FLIGHT));
        let worker = Worker {
            client,
            connection,
            records,
            counters: Arc::clone(&counters),
            stop: Arc::clone(&stop),
            settings,
            on_status: Box::new(on_status),
            waiting: VecDeque::new(),
            handed: VecDeque::new(),
            unacknowledged: BTreeMap::new(),
            connected: false,
            told_lost: false,
        };
        let worker = std::thread::Builder::new()
            .name("earlyexitpublish-mqtt".into())
            .spawn(move || worker.run())?;
        Ok(Publisher {
            queue,
            counters,
            stop,
            worker: Some(worker),
            next: 0,
        })
    }

    /// Queues a record; when `max-buffered` records already wait, it is dropped and counted.
    pub fn send(&mut self, payload: Vec<u8>) {
        let record = Record {
            sequence: self.next,
            payload,
        };
        self.next += 1;
        self.counters.outstanding.fetch_add(1, Ordering::Relaxed);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(record)
        {
            self.counters.lost(1);
        }
    }

    /// Waits until every record accepted so far is published or dropped, or `timeout` passes;
    /// says whether nothing is left.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.outstanding() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(TICK);
        }
        true
    }

    pub fn published(&self) -> u64 {
        self.counters.published.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn outstanding(&self) -> u64 {
        self.counters.outstanding.load(Ordering::Relaxed)
    }

    /// A handle on the counts that outlives the publisher, for the element's properties.
    pub fn counts(&self) -> Counts {
        Counts(Arc::clone(&self.counters))
    }
}

impl Drop for Publisher {
    /// Stops the thread at once: what is still unpublished is counted as dropped.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The published and dropped counts of a publisher, readable after it has stopped.
#[derive(Debug, Clone, Default)]
pub struct Counts(Arc<Counters>);

impl Counts {
    pub fn published(&self) -> u64 {
        self.0.published.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// The publishing thread's state.
struct Worker {
    client: Client,
    connection: Connection,
    records: Receiver<Record>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    settings: MqttSettings,
    on_status: Box<dyn Fn(Status) + Send>,
    /// Taken from the queue and to be handed to the client: first the ones to publish again.
    waiting: VecDeque<Record>,
    /// Handed to the client, in order, not yet written out (no packet id yet).
    handed: VecDeque<Record>,
    /// Written out under a packet id and not yet acknowledged.
    unacknowledged: BTreeMap<u16, Record>,
    connected: bool,
    /// Whether the element has heard of the current outage.
    told_lost: bool,
}

impl Worker {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            self.hand_over();
            match self.connection.recv_timeout(TICK) {
                Ok(Ok(event)) => self.on_event(event),
                Ok(Err(error)) => {
                    // Once per outage, not on every attempt to reconnect.
                    if !self.told_lost {
                        (self.on_status)(Status::Lost(error.to_string()));
                        self.told_lost = true;
                    }
                    self.connected = false;
                    self.take_back();
                    self.pause();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.client.try_disconnect();
        self.take_back();
        let left = self.waiting.len() + self.records.try_iter().count();
        self.counters.lost(left as u64);
    }

    /// Hands queued records to the client while connected and below the in-flight limit.
    fn hand_over(&mut self) {
        if !self.connected {
            return;
        }
        while self.handed.len() + self.unacknowledged.len() < usize::from(IN_FLIGHT) {
            let Some(record) = self
                .waiting
                .pop_front()
                .or_else(|| self.records.try_recv().ok())
            else {
                return;
            };
            let sent = self.client.try_publish(
                self.settings.topic.as_str(),
                self.settings.qos,
                false,
                record.payload.clone(),
            );
            if sent.is_err() {
                self.waiting.push_front(record);
                return;
            }
            self.handed.push_back(record);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                self.connected = true;
                self.told_lost = false;
                (self.on_status)(Status::Connected);
            }
            // Publishes are written out in the order they were handed over.
            Event::Outgoing(Outgoing::Publish(id)) => {
                if let Some(record) = self.handed.pop_front() {
                    if self.settings.qos == QoS::AtMostOnce {
                        self.counters.published(1);
                    } else {
                        self.unacknowledged.insert(id, record);
                    }
                }
            }
            Event::Incoming(Packet::PubAck(ack)) if self.settings.qos == QoS::AtLeastOnce => {
                self.acknowledged(ack.pkid)
            }
            Event::Incoming(Packet::PubComp(done)) if self.settings.qos == QoS::ExactlyOnce => {
                self.acknowledged(done.pkid)
            }
            _ => {}
        }
    }

    fn acknowledged(&mut self, id: u16) {
        if self.unacknowledged.remove(&id).is_some() {
            self.counters.published(1);
        }
    }

    /// After a lost connection: everything the broker did not acknowledge goes back to the
    /// front of the queue, in its first order, since the new clean session forgets it.
    fn take_back(&mut self) {
        let mut again: Vec<Record> = std::mem::take(&mut self.unacknowledged)
            .into_values()
            .chain(self.handed.drain(..))
            .collect();
        again.sort_by_key(|record| record.sequence);
        for record in again.into_iter().rev() {
            self.waiting.push_front(record);
        }
    }

    /// Waits before the next connection attempt, but stops waiting when asked to stop.
    fn pause(&self) {
        let until = Instant::now() + RECONNECT_PAUSE;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_are_read_in_every_usual_spelling() {
        let read = |text: &str| text.parse::<Broker>().map(|b| b.to_string());
        assert_eq!(read("localhost").as_deref(), Ok("localhost:1883"));
        assert_eq!(read("127.0.0.1:11883").as_deref(), Ok("127.0.0.1:11883"));
        assert_eq!(read("mqtt://broker.lan").as_deref(), Ok("broker.lan:1883"));
        assert_eq!(
            read("tcp://broker.lan:8883/").as_deref(),
            Ok("broker.lan:8883")
        );
        assert_eq!(read("[::1]:1884").as_deref(), Ok("[::1]:1884"));
        assert_eq!(read("mqtt://[::1]").as_deref(), Ok("[::1]:1883"));
    }

    #[test]
    fn a_broker_that_cannot_be_read_is_refused_with_the_reason() {
        let error = |text: &str| text.parse::<Broker>().unwrap_err();
        assert!(error("ws://host").contains("scheme 'ws'"));
        assert!(error("host:http").contains("port 'http'"));
        assert!(error("host:70000").contains("port '70000'"));
        assert!(error("mqtt://:1883").contains("names no host"));
        assert!(error("[::1:1883").contains("closing ']'"));
    }

    #[test]
    fn records_beyond_the_buffer_are_dropped_and_counted_while_no_broker_answers() {
        // A port that nothing listens on: the publisher keeps trying and buffers meanwhile.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port");
        let settings = MqttSettings {
            broker: Broker {
                host: "127.0.0.1".into(),
                port,
            },
            topic: "t".into(),
            client_id: "buffer-test".into(),
            qos: QoS::AtLeastOnce,
            max_buffered: 5,
        };
        let (told, heard) = crossbeam_channel::unbounded();
        let mut publisher = Publisher::start(settings, move |status| {
            let _ = told.send(status);
        })
        .expect("the thread starts");
        for n in 0..12u8 {
            publisher.send(vec![n]);
        }
        assert_eq!(publisher.dropped(), 7, "12 records, room for 5");
        assert!(!publisher.drain(Duration::from_millis(100)));
        assert!(matches!(
            heard.recv_timeout(Duration::from_secs(5)),
            Ok(Status::Lost(_))
        ));
        let counts = publisher.counts();
        drop(publisher);
        assert_eq!((counts.published(), counts.dropped()), (0, 12));
    }
}

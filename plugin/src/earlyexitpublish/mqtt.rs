//! The MQTT output of `earlyexitpublish`: records go to a broker through `rumqttc`.
//!
//! Every record is accounted for: it is published (the broker acknowledged it; for QoS 0, it
//! was handed to the connection's writer), or it is dropped (too large, the buffer was full,
//! or it was still unpublished when the element stopped). While the broker is away, records
//! wait in a queue of `max-buffered`, and each new (clean) session starts by publishing again
//! every record the broker had not acknowledged.
//!
//! Two threads share the queue: the streaming thread queues a record and hands it to the
//! client when the connection has room; the connection's own thread runs rumqttc's event loop
//! (never cut short, so a slow connect or write completes), counts acknowledgements and hands
//! over more. Acknowledgements are matched to records by order: a broker acknowledges a
//! session's QoS 1 and 2 publishes in the order it received them (MQTT 3.1.1, section 4.6).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Connection, Event, MqttOptions, Outgoing, Packet, QoS};

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

/// Why a topic cannot be published to: an empty one, or one with MQTT's wildcards.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        Err("a topic cannot be empty".into())
    } else if topic.contains(['+', '#', '\0']) {
        Err(format!(
            "'{topic}': a topic to publish to cannot hold the wildcards '+' or '#'"
        ))
    } else {
        Ok(())
    }
}

/// What the publisher tells the element, to post on the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    Connected,
    /// The connection failed or was lost, with the client's reason.
    Lost(String),
}

/// Counts shared between the element and the connection's thread.
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

/// Records handed to the client and not yet acknowledged, at most.
const IN_FLIGHT: usize = 100;
/// The largest record published, in bytes: larger ones are dropped (rumqttc would refuse the
/// packet and drop the connection with it).
pub const MAX_RECORD: usize = 256 * 1024;
/// The pause between connection attempts: rumqttc tries again on every poll and has no
/// backoff of its own, so without it a missing broker would be asked hundreds of times a second.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
/// How often waits look at whether to stop.
const TICK: Duration = Duration::from_millis(20);

/// The queue both threads share.
#[derive(Debug, Default)]
struct Queue {
    connected: bool,
    /// Waiting to be handed to the client: first the ones to publish again.
    waiting: VecDeque<Vec<u8>>,
    /// Handed to the client in this session, in order, not yet acknowledged.
    handed: VecDeque<Vec<u8>>,
}

/// The state shared by the element's side and the connection's thread.
struct Shared {
    queue: Mutex<Queue>,
    client: Client,
    counters: Counters,
    stop: AtomicBool,
    settings: MqttSettings,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands waiting records to the client while connected and below the in-flight limit.
    fn hand_over(&self, queue: &mut Queue) {
        while queue.connected && queue.handed.len() < IN_FLIGHT {
            let Some(record) = queue.waiting.pop_front() else {
                return;
            };
            let sent = self.client.try_publish(
                self.settings.topic.as_str(),
                self.settings.qos,
                false,
                record.clone(),
            );
            if sent.is_err() {
                queue.waiting.push_front(record);
                return;
            }
            queue.handed.push_back(record);
        }
    }
}

/// A running MQTT output.
pub struct Publisher {
    shared: Arc<Shared>,
    connection: Option<JoinHandle<()>>,
}

/// What became of a record given to [`Publisher::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// Dropped: `max-buffered` records already wait.
    Full,
    /// Dropped: larger than [`MAX_RECORD`].
    TooLarge,
}

impl Publisher {
    /// Starts the connection's thread, which connects (and reconnects) to the broker on its
    /// own; `on_status` hears of every connection and of each outage once.
    pub fn start(
        settings: MqttSettings,
        on_status: impl Fn(Status) + Send + 'static,
    ) -> std::io::Result<Publisher> {
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
            .set_inflight(IN_FLIGHT as u16)
            .set_max_packet_size(64 * 1024, MAX_RECORD + settings.topic.len() + 64);
        // Room for a full flight and the final DISCONNECT.
        let (client, connection) = Client::new(options, IN_FLIGHT + 2);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            client,
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            settings,
        });
        let thread = Arc::clone(&shared);
        let connection = std::thread::Builder::new()
            .name("earlyexitpublish-mqtt".into())
            .spawn(move || run(&thread, connection, &on_status))?;
        Ok(Publisher {
            shared,
            connection: Some(connection),
        })
    }

    /// Queues a record, or drops and counts it.
    pub fn send(&self, payload: Vec<u8>) -> Sent {
        let counters = &self.shared.counters;
        counters.outstanding.fetch_add(1, Ordering::Relaxed);
        if payload.len() > MAX_RECORD {
            counters.lost(1);
            return Sent::TooLarge;
        }
        let mut queue = self.shared.queue();
        if queue.waiting.len() >= self.shared.settings.max_buffered.max(1) {
            counters.lost(1);
            return Sent::Full;
        }
        queue.waiting.push_back(payload);
        self.shared.hand_over(&mut queue);
        Sent::Queued
    }

    /// Waits until every record accepted so far is published or dropped, `timeout` passes, or
    /// `interrupted` says to stop waiting; says whether nothing is left.
    pub fn drain(&self, timeout: Duration, interrupted: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while self.outstanding() > 0 {
            if Instant::now() >= deadline || interrupted() {
                return false;
            }
            std::thread::sleep(TICK);
        }
        true
    }

    pub fn published(&self) -> u64 {
        self.shared.counters.published.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.shared.counters.dropped.load(Ordering::Relaxed)
    }

    pub fn outstanding(&self) -> u64 {
        self.shared.counters.outstanding.load(Ordering::Relaxed)
    }

    /// A handle on the counts that outlives the publisher, for the element's properties.
    pub fn counts(&self) -> Counts {
        Counts(Arc::clone(&self.shared))
    }
}

impl Drop for Publisher {
    /// Says goodbye to the broker and stops the thread: what is still unpublished is counted
    /// as dropped.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Also wakes the event loop when it waits on an idle connection.
        let _ = self.shared.client.try_disconnect();
        if let Some(connection) = self.connection.take() {
            let _ = connection.join();
        }
        let mut queue = self.shared.queue();
        let left = queue.waiting.len() + queue.handed.len();
        queue.waiting.clear();
        queue.handed.clear();
        self.shared.counters.lost(left as u64);
    }
}

/// The published and dropped counts of a publisher, readable after it has stopped.
#[derive(Clone)]
pub struct Counts(Arc<Shared>);

impl Counts {
    pub fn published(&self) -> u64 {
        self.0.counters.published.load(Ordering::Relaxed)
    }

    pub fn dropped(&self) -> u64 {
        self.0.counters.dropped.load(Ordering::Relaxed)
    }
}

/// The connection's thread: rumqttc's event loop, each poll run to its end.
fn run(shared: &Shared, mut connection: Connection, on_status: &dyn Fn(Status)) {
    // Whether the element has heard of the current outage.
    let mut told_lost = false;
    // Runs until the DISCONNECT asked for on stopping has left, or, when there is no
    // connection to say it on, until the next failed attempt.
    loop {
        let event = match connection.recv() {
            Ok(event) => event,
            // Every client is gone.
            Err(_) => return,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                told_lost = false;
                let mut queue = shared.queue();
                queue.connected = true;
                shared.hand_over(&mut queue);
                drop(queue);
                on_status(Status::Connected);
            }
            Ok(event) if is_acknowledgement(&event, shared.settings.qos) => {
                let mut queue = shared.queue();
                if queue.handed.pop_front().is_some() {
                    shared.counters.published(1);
                }
                shared.hand_over(&mut queue);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if shared.stop.load(Ordering::Relaxed) => {
                return;
            }
            Ok(_) => {}
            Err(_) if shared.stop.load(Ordering::Relaxed) => return,
            Err(error) => {
                let mut queue = shared.queue();
                queue.connected = false;
                // The next session is a clean one: what rumqttc still holds of this one (in
                // flight, queued, or announced) is gone, and every record not acknowledged
                // goes back to the front of the queue, in its first order.
                let eventloop = &mut connection.eventloop;
                eventloop.clean();
                eventloop.pending.clear();
                eventloop.state.events.clear();
                let again: Vec<Vec<u8>> = queue.handed.drain(..).collect();
                for record in again.into_iter().rev() {
                    queue.waiting.push_front(record);
                }
                drop(queue);
                if !told_lost {
                    on_status(Status::Lost(error.to_string()));
                    told_lost = true;
                }
                pause(&shared.stop);
            }
        }
    }
}

/// Whether `event` tells that the broker has the oldest record handed over: its PUBACK for
/// QoS 1, its PUBCOMP for QoS 2; for QoS 0, the publish leaving for the socket.
fn is_acknowledgement(event: &Event, qos: QoS) -> bool {
    matches!(
        (event, qos),
        (Event::Outgoing(Outgoing::Publish(_)), QoS::AtMostOnce)
            | (Event::Incoming(Packet::PubAck(_)), QoS::AtLeastOnce)
            | (Event::Incoming(Packet::PubComp(_)), QoS::ExactlyOnce)
    )
}

/// Waits before the next connection attempt, but stops waiting when asked to stop.
fn pause(stop: &AtomicBool) {
    let until = Instant::now() + RECONNECT_PAUSE;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_with_wildcards_or_nothing_are_refused() {
        assert!(check_topic("cameras/gate-2").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("cameras/+").unwrap_err().contains("wildcards"));
        assert!(check_topic("cameras/#").unwrap_err().contains("wildcards"));
    }

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
        let (told, heard) = std::sync::mpsc::channel();
        let publisher = Publisher::start(settings, move |status| {
            let _ = told.send(status);
        })
        .expect("the thread starts");
        let sent: Vec<Sent> = (0..12u8).map(|n| publisher.send(vec![n])).collect();
        assert_eq!(sent.iter().filter(|s| **s == Sent::Full).count(), 7);
        assert_eq!(publisher.send(vec![0; MAX_RECORD + 1]), Sent::TooLarge);
        assert_eq!(
            publisher.dropped(),
            8,
            "12 records, room for 5, and one too large"
        );
        assert!(!publisher.drain(Duration::from_millis(100), || false));
        assert!(matches!(
            heard.recv_timeout(Duration::from_secs(5)),
            Ok(Status::Lost(_))
        ));
        let counts = publisher.counts();
        drop(publisher);
        assert_eq!((counts.published(), counts.dropped()), (0, 13));
    }
}

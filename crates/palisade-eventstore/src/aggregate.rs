//! [`Aggregate`] and [`DomainEvent`]: the pure model — state rebuilt from past-tense events,
//! commands decided against it. No I/O, no runtime.

use serde::{Serialize, de::DeserializeOwned};

/// An event of a domain, stored as JSON with its type name and schema version.
///
/// ```
/// use palisade_eventstore::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// enum AccountEvent {
///     Deposited { amount_cents: i64 },
///     Withdrawn { amount_cents: i64 },
/// }
///
/// impl DomainEvent for AccountEvent {
///     fn event_type(&self) -> &'static str {
///         match self {
///             AccountEvent::Deposited { .. } => "account.deposited",
///             AccountEvent::Withdrawn { .. } => "account.withdrawn",
///         }
///     }
/// }
/// assert_eq!(AccountEvent::Deposited { amount_cents: 5 }.event_type(), "account.deposited");
/// ```
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The version of the payload's shape written today; stored with each event. Bump it when
    /// the shape changes and register an [`Upcaster`](crate::Upcasters) from the old one.
    const SCHEMA_VERSION: u32 = 1;

    /// The event's type name (past tense: `account.deposited`).
    fn event_type(&self) -> &'static str;
}

/// An aggregate: the consistency boundary whose state is the fold of its events.
///
/// `apply` is used both for replay and for events just decided, so state can only change
/// through events (it is serialized for snapshots, hence `Serialize`); `handle` decides a command against the current state and answers the new
/// events (possibly none) or a domain error. The version starts at 0 (no events) and each
/// event adds one.
///
/// ```
/// use palisade_eventstore::{Aggregate, DomainEvent, Loaded};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize)]
/// # enum Event { Deposited { amount_cents: i64 } }
/// # impl DomainEvent for Event { fn event_type(&self) -> &'static str { "account.deposited" } }
///
/// #[derive(Debug, Default, Clone, Serialize, Deserialize)]
/// struct Account { balance_cents: i64 }
///
/// impl Aggregate for Account {
///     const TYPE: &'static str = "account";
///     type Event = Event;
///     type Command = i64; // deposit this much
///     type Error = String;
///
///     fn apply(&mut self, event: &Event) {
///         match event { Event::Deposited { amount_cents } => self.balance_cents += amount_cents }
///     }
///
///     fn handle(&self, amount: i64) -> Result<Vec<Event>, String> {
///         if amount <= 0 { return Err("amount must be positive".into()) }
///         Ok(vec![Event::Deposited { amount_cents: amount }])
///     }
/// }
///
/// let mut account = Loaded::<Account>::default();
/// let events = account.state.handle(500).unwrap();
/// account.apply_all(&events);
/// assert_eq!((account.state.balance_cents, account.version), (500, 1));
/// ```
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The aggregate type (`account`): the outbox's aggregate type for its events.
    const TYPE: &'static str;
    /// The version of the state's serialized shape in snapshots; a snapshot of another version
    /// is ignored (the aggregate is replayed from its events).
    const SNAPSHOT_VERSION: u32 = 1;
    /// Its events.
    type Event: DomainEvent;
    /// The commands it decides.
    type Command: Send + 'static;
    /// Why it refuses a command.
    type Error: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;

    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);

    /// Decides `command`: the events it causes, or why not.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

/// An aggregate's state and the version it was rebuilt to (the number of events folded in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// Events folded into it: the expected version of the next append.
    pub version: u64,
}

impl<A: Aggregate> Loaded<A> {
    /// Folds `events` in, one version each.
    pub fn apply_all(&mut self, events: &[A::Event]) {
        for event in events {
            self.state.apply(event);
            self.version += 1;
        }
    }
}

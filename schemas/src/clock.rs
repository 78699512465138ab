//! Test clocks (`semantics.md` §12): a frozen time that customers attached to it live by, moved
//! forward on request. Test environment only.

use crate::ids::TestClockId;
use crate::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestClockStatus {
    /// Every due change of its customers up to `frozen_time` is applied.
    Ready,
    /// An advance is being applied.
    Advancing,
}

/// A test clock (`Table::TestClocks`, key: its id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestClock {
    pub id: TestClockId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub frozen_time: Timestamp,
    pub status: TestClockStatus,
    pub created_at: Timestamp,
    /// The customers attached to it (at their creation), in attachment order. Stored, not
    /// shown: see [`TestClock::view`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customers: Vec<String>,
}

impl TestClock {
    /// The clock as the API shows it (without its customer list).
    pub fn view(&self) -> TestClock {
        TestClock { customers: Vec::new(), ..self.clone() }
    }
}

/// `POST /test-clocks`.
#[derive(Clone, Debug, Deserialize)]
pub struct CreateTestClockRequest {
    pub frozen_time: Timestamp,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /test-clocks/{id}/advance`.
#[derive(Clone, Debug, Deserialize)]
pub struct AdvanceTestClockRequest {
    pub frozen_time: Timestamp,
}

/// The one source of "now" for everything time-driven: the server's clock in production,
/// a test clock's frozen time for the customers attached to it.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}

/// A customer's time: the frozen time of the test clock it is attached to, else `wall`.
pub fn customer_time(clock: Option<&TestClock>, wall: Timestamp) -> Timestamp {
    clock.map_or(wall, |c| c.frozen_time)
}

//! Sobot's pushes as data: the four kinds, their bodies (plain or encrypted), their
//! signatures and their tables. Pure, so the receiver and the simulator's sender share
//! one reading of the wire format.

pub mod body;
pub mod cipher;
pub mod sign;
pub mod tables;

/// The four pushes, their paths (`/push/<path>`) and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushKind {
    Talk,
    Party,
    AgentStatus,
    CallEvent,
}

impl PushKind {
    pub const ALL: [PushKind; 4] = [
        PushKind::Talk,
        PushKind::Party,
        PushKind::AgentStatus,
        PushKind::CallEvent,
    ];

    pub fn path(self) -> &'static str {
        match self {
            PushKind::Talk => "talks",
            PushKind::Party => "parties",
            PushKind::AgentStatus => "agent-status",
            PushKind::CallEvent => "call-events",
        }
    }

    pub fn table(self) -> &'static str {
        match self {
            PushKind::Talk => "push_talks",
            PushKind::Party => "push_parties",
            PushKind::AgentStatus => "agent_status_events",
            PushKind::CallEvent => "call_events",
        }
    }

    /// The byte that names it in the WAL (stable: changing it breaks replay).
    pub fn code(self) -> u8 {
        match self {
            PushKind::Talk => 1,
            PushKind::Party => 2,
            PushKind::AgentStatus => 3,
            PushKind::CallEvent => 4,
        }
    }

    pub fn from_code(c: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == c)
    }
}

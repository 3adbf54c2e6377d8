//! The engine's typed states and outcomes. Each is stored as text and parsed at the
//! store boundary, so a state the code does not know is an error there, not a silent
//! string comparison elsewhere.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and printed form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the stored form.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

text_enum! {
    /// A model's place in the registry: trained → approved → active → retired.
    ModelState {
        /// Registered after training; may be approved by someone else if its gate passed.
        Trained = "trained",
        /// Approved for production by a second person.
        Approved = "approved",
        /// The one model scoring uses.
        Active = "active",
        /// Never used for scoring again.
        Retired = "retired",
    }
}

text_enum! {
    /// Where a suggestion stands.
    SuggestionStatus {
        /// Waiting for a caseworker's decision.
        Open = "open",
        /// Replaced by a later scoring run of the same date.
        Superseded = "superseded",
        /// A caseworker decided on it.
        Decided = "decided",
        /// Passed its expiry date without a decision.
        Expired = "expired",
        /// Withdrawn because the person objected.
        Withdrawn = "withdrawn",
    }
}

text_enum! {
    /// The score band a suggestion is in.
    Band {
        Elevated = "elevated",
        High = "high",
    }
}

text_enum! {
    /// A caseworker's decision on a suggestion: the only way it leaves `open`.
    DecisionOutcome {
        Accepted = "accepted",
        Declined = "declined",
        AlreadyKnown = "already_known",
        NotRelevant = "not_relevant",
    }
}

text_enum! {
    /// What happened to one input file.
    FileStatus {
        Loaded = "loaded",
        Unchanged = "unchanged",
        Failed = "failed",
        NotRecognised = "not-recognised",
        Ignored = "ignored",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_stored_form() {
        for s in ModelState::ALL {
            assert_eq!(ModelState::parse(s.as_str()), Some(*s));
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::json!(s.as_str()))
            );
        }
        for s in SuggestionStatus::ALL {
            assert_eq!(SuggestionStatus::parse(s.as_str()), Some(*s));
        }
        for s in Band::ALL {
            assert_eq!(Band::parse(s.as_str()), Some(*s));
        }
        for s in DecisionOutcome::ALL {
            assert_eq!(DecisionOutcome::parse(s.as_str()), Some(*s));
        }
        for s in FileStatus::ALL {
            assert_eq!(FileStatus::parse(s.as_str()), Some(*s));
        }
        assert_eq!(ModelState::parse("Active"), None);
    }
}

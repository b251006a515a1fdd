//! The persisted model: tasks, their results and messages, build data, boot actions and the
//! leader lease.
//!
//! A task's JSON form is the one Drydock's API clients read (`kind: Task`, `apiVersion: v1`,
//! `task_id`, `result.details.errorCount`, ...).
//!
//! One file per entity: [`Task`] with its ids, statuses, results, filters and reports
//! (`task.rs`), what writes a task ([`NewTask`], [`TaskUpdate`]: `write.rs`), a claimant's
//! [`Claim`] and [`ClaimRequest`] (`claim.rs`), result messages (`message.rs`), build data
//! (`build_data.rs`), boot actions (`boot_action.rs`), the [`Lease`] (`lease.rs`) and the
//! rows of an [`ImportBatch`] (`import.rs`);
//! `drydock_json.rs` reads the looser forms of Drydock's own JSON.

use crate::backend::{json_no_nul, no_nul, now, validate_instance_id};

// An enum stored and serialized as a lowercase name: `ALL`, `as_str`, `Display`, and `FromStr`
// whose error names the field.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialized name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                // `pad` so that width and alignment in format strings apply.
                f.pad(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::error::Error::invalid(
                        $field,
                        format!(
                            "unknown value {:?}; expected one of: {}",
                            s,
                            [$($text),+].join(", ")
                        ),
                    )),
                }
            }
        }
    };
}

mod boot_action;
mod build_data;
mod claim;
pub(crate) mod drydock_json;
mod import;
mod lease;
mod message;
mod task;
mod write;

pub use boot_action::*;
pub use build_data::*;
pub use claim::*;
pub use import::*;
pub use lease::*;
pub use message::*;
pub use task::*;
pub use write::*;

//! `lease`: claim, renew, release and show the leader lease.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Claim the lease (exit 3 if another instance holds it).
    Claim {
        /// The claiming instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Renew the lease (exit 3 if this instance does not hold it).
    Renew {
        /// The holding instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Release the lease.
    Release {
        /// The holding instance.
        #[arg(long, value_name = "ID")]
        instance: String,
    },
    /// Show the current holder.
    Show,
}

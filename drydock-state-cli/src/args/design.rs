//! `design`: fetch design documents and list the schemes served.

use std::path::PathBuf;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum DesignCommand {
    /// Fetch a design document and print it (or write it to a file).
    Fetch {
        /// The design URI.
        uri: String,
        /// Write the document here instead of standard output.
        #[arg(long, value_name = "PATH")]
        output_file: Option<PathBuf>,
    },
    /// List the design schemes this build serves.
    Schemes,
}

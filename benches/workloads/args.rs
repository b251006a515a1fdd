//! The benchmark's command line.

use std::path::PathBuf;

const USAGE: &str =
    "usage: cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick]";

/// What the command line asks for.
pub struct Args {
    pub database_url: String,
    pub json: Option<PathBuf>,
    pub scale: usize,
}

/// Parses the command line; exits with status 2 on a usage error.
pub fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let (mut database_url, mut json, mut scale) = (None, None, 1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => database_url = args.next(),
            "--json" => json = args.next().map(PathBuf::from),
            "--quick" => scale = 10,
            "--bench" => {}
            other => {
                eprintln!("workloads: unknown argument {other}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let database_url = database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .unwrap_or_else(|| {
            eprintln!("workloads: give --database-url URL (postgres://..., sqlite://..., memory://)\n{USAGE}");
            std::process::exit(2);
        });
    Args {
        database_url,
        json,
        scale,
    }
}

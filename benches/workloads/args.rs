//! The benchmark's command line.

use std::path::PathBuf;

const USAGE: &str =
    "usage: cargo bench --bench workloads -- --database-url URL [--json FILE] [--quick] \
     [--scale N[,N...] [--claims N]]";

/// What the command line asks for.
pub struct Args {
    pub database_url: String,
    pub json: Option<PathBuf>,
    pub scale: usize,
    /// `--scale`: the history sizes of the scale workloads (none: the W workloads run).
    pub scales: Vec<u64>,
    /// `--claims`: the claims of S6 (default 200,000, a tenth with `--quick`).
    pub claims: Option<u64>,
}

/// Parses the command line; exits with status 2 on a usage error.
pub fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let (mut database_url, mut json, mut scale) = (None, None, 1);
    let (mut scales, mut claims) = (Vec::new(), None);
    let bad = |what: &str| -> ! {
        eprintln!("workloads: {what}\n{USAGE}");
        std::process::exit(2);
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => database_url = args.next(),
            "--json" => json = args.next().map(PathBuf::from),
            "--quick" => scale = 10,
            "--scale" => {
                let list = args.next().unwrap_or_default();
                for n in list.split(',') {
                    match n.trim().replace('_', "").parse::<u64>() {
                        Ok(n) if n > 0 => scales.push(n),
                        _ => bad("--scale takes sizes such as 10000,1000000"),
                    }
                }
            }
            "--claims" => match args.next().and_then(|n| n.replace('_', "").parse().ok()) {
                Some(n) => claims = Some(n),
                None => bad("--claims takes a count"),
            },
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
        scales,
        claims,
    }
}

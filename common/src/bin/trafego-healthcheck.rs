//! `trafego-healthcheck`: asks a TrafegoDNS service `grpc.health.v1.Health/Check`
//! and exits 0 when the answer is SERVING, 1 otherwise (not serving, unknown
//! service, unreachable, timed out, TLS failure, bad arguments), printing one
//! line either way. Made for container health checks (`HEALTHCHECK`, Compose
//! `healthcheck.test`), where no shell and no grpcurl are at hand.
//!
//! TLS is used when the address is `https://` or `--ca-file` is given; add
//! `--cert-file`/`--key-file` where the service requires client certificates,
//! and `--tls-domain` when the certificate names the service rather than the
//! address dialled (e.g. `127.0.0.1` inside the container). Health is exempt
//! from token authentication, so no token is needed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Checks a gRPC service's health (grpc.health.v1): exit 0 when SERVING, 1 otherwise.
#[derive(Debug, Parser)]
#[command(name = "trafego-healthcheck", version)]
struct Args {
    /// Address of the service: http://host:port, https://host:port, or host:port.
    #[arg(
        long,
        env = "HEALTHCHECK_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    addr: String,

    /// Service name to check, e.g. trafego.cache.v1.CacheService; empty asks about the whole server.
    #[arg(long, env = "HEALTHCHECK_SERVICE", default_value = "")]
    service: String,

    /// Time allowed for connecting and answering (e.g. 3s, 500ms; a bare number is seconds).
    #[arg(long, env = "HEALTHCHECK_TIMEOUT", default_value = "3s",
          value_parser = trafego_common::duration::parse_seconds)]
    timeout: Duration,

    /// PEM file of the CA that signed the service's certificate (turns TLS on).
    #[arg(long, env = "HEALTHCHECK_CA_FILE")]
    ca_file: Option<PathBuf>,

    /// PEM client certificate, for services that require one (mTLS); needs --key-file.
    #[arg(long, env = "HEALTHCHECK_CERT_FILE", requires = "key_file")]
    cert_file: Option<PathBuf>,

    /// PEM private key of --cert-file.
    #[arg(long, env = "HEALTHCHECK_KEY_FILE", requires = "cert_file")]
    key_file: Option<PathBuf>,

    /// Name to verify the service's certificate against, when it differs from the address's host.
    #[arg(long, env = "HEALTHCHECK_TLS_DOMAIN")]
    tls_domain: Option<String>,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // --help and --version succeed; any other argument error is a failed
            // check (exit 1), never clap's 2, which Docker reserves.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("UNHEALTHY: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let target = describe(&args);
    match runtime.block_on(check(&args)) {
        Ok(ServingStatus::Serving) => {
            println!("SERVING: {target}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{}: {target}", status.as_str_name());
            ExitCode::from(1)
        }
        Err(e) => {
            let hint = if args.ca_file.is_none() && format!("{e:#}").contains("UnknownIssuer") {
                " (give the CA with --ca-file)"
            } else {
                ""
            };
            println!("UNHEALTHY: {target}: {e:#}{hint}");
            ExitCode::from(1)
        }
    }
}

/// "service at addr", or "server at addr" for the empty service name.
fn describe(args: &Args) -> String {
    if args.service.is_empty() {
        format!("server at {}", args.addr)
    } else {
        format!("{} at {}", args.service, args.addr)
    }
}

/// Connects (within the timeout) and asks Health/Check.
async fn check(args: &Args) -> anyhow::Result<ServingStatus> {
    let endpoint = endpoint(args)?;
    let call = async {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow::anyhow!("connect: {}", error_chain(&e)))?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .map_err(|status| {
                let mut line = format!("{:?}: {}", status.code(), status.message());
                if let Some(source) = std::error::Error::source(&status) {
                    let chain = error_chain(source);
                    let chain = chain
                        .strip_prefix(&format!("{}: ", status.message()))
                        .unwrap_or(&chain);
                    line.push_str(": ");
                    line.push_str(chain);
                }
                anyhow::anyhow!(line)
            })?;
        Ok::<_, anyhow::Error>(response.into_inner().status())
    };
    match tokio::time::timeout(args.timeout, call).await {
        Ok(result) => result,
        Err(_) => bail!(
            "no answer within {}",
            humantime::format_duration(args.timeout)
        ),
    }
}

/// The endpoint for `args.addr`, with TLS when asked for.
fn endpoint(args: &Args) -> anyhow::Result<Endpoint> {
    let tls = args.ca_file.is_some() || args.addr.starts_with("https://");
    let uri = if args.addr.contains("://") {
        if tls {
            args.addr.replacen("http://", "https://", 1)
        } else {
            args.addr.clone()
        }
    } else if tls {
        format!("https://{}", args.addr)
    } else {
        format!("http://{}", args.addr)
    };
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("bad address {uri:?}"))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    if tls {
        let mut config = ClientTlsConfig::new();
        config = match &args.ca_file {
            Some(path) => config.ca_certificate(Certificate::from_pem(read(path)?)),
            None => config.with_enabled_roots(),
        };
        if let (Some(cert), Some(key)) = (&args.cert_file, &args.key_file) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &args.tls_domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| anyhow::anyhow!("TLS configuration: {}", error_chain(&e)))?;
    }
    Ok(endpoint)
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// An error and its sources on one line (tonic's transport errors say little
/// at the top level: "transport error").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
